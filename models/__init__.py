"""The model files sidecast ships (``sidecast.models``): ONNX graphs with their model cards and licences.

Only the data files are installed; the scripts beside them (``*/train.py``, ``*/build_corpus.py``,
``*/make_dynamic.py``, ``*/fetch_model.sh``, ``shots/export.py``) rebuild the models from a checkout and are not part of the
package. Sidecars find the files with ``importlib.resources`` (``model_path``), so an installed wheel
and a checkout behave the same.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path


def model_path(*parts: str) -> Path:
    """The path of a shipped model file, e.g. ``model_path("bitrate", "bitrate.onnx")``."""
    return Path(str(resources.files(__name__).joinpath(*parts)))
