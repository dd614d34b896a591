"""1 fps JPEG snapshots for downstream AI: ``snapshots/NNNNNN.jpg``, ``snapshots/latest.jpg`` and an index
(``snapshots/index.jsonl``: file, media time, PDT). Fed frame by frame by the ingest, not per segment."""

from __future__ import annotations

import json
import shutil
from datetime import datetime
from pathlib import Path
from typing import IO

import av

from .. import media


class Snapshots:
    def __init__(self, outdir: Path, fps: float, width: int) -> None:
        self.dir = outdir / "snapshots"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.fps = fps
        self.width = width
        self.next_t = 0.0
        self.count = 0
        self._index: IO[str] | None = None

    def frame(self, frame: av.VideoFrame, t: float, pdt: datetime) -> None:
        """Write a snapshot when one is due at media time ``t``."""
        if t + 1e-6 < self.next_t:
            return
        path = self.dir / f"{self.count:06d}.jpg"
        media.write_snapshot(frame, min(self.width, frame.width), path)
        shutil.copyfile(path, self.dir / ".latest.jpg")
        (self.dir / ".latest.jpg").replace(self.dir / "latest.jpg")
        if self._index is None:
            self._index = open(self.dir / "index.jsonl", "a")  # noqa: SIM115 (closed in close())
        self._index.write(json.dumps({"file": path.name, "t": round(t, 3),
                                      "pdt": pdt.isoformat(timespec="milliseconds")}) + "\n")
        self._index.flush()
        self.count += 1
        self.next_t = max(self.next_t + 1 / self.fps, t)

    def close(self) -> None:
        if self._index is not None:
            self._index.close()
            self._index = None


__all__ = ["Snapshots"]
