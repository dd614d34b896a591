"""Video ladders: the main ABR ladder and the vertical (cropped) ladder, one fresh x264 encoder per
segment and rendition, encoded in parallel (x264 runs outside the GIL).

``VideoLadder`` is both: the main ladder applies bitrate hints (it ``needs`` bitrate hints); the vertical
one crops every frame to the window the crop path gives (it ``needs`` crops). Each rendition keeps a
live playlist (the window) and a full VOD playlist, and the peak and average bit rates the master
playlist declares.
"""

from __future__ import annotations

import logging
from concurrent.futures import Executor
from dataclasses import dataclass
from pathlib import Path

from sidecast.contract.records import ResultKind
from sidecast.hls.live import LivePlaylist

from .. import media
from ..croppath import CropPath
from ..ladder import RateControl, Rung, segment_settings, segment_size
from .base import JsonLines, Output, SegmentJob, StreamContext

log = logging.getLogger("sidecast.outputs.video")


@dataclass
class Rendition:
    """One video rendition's playlists and measured rates."""

    rung: Rung
    dir: Path
    playlist: LivePlaylist
    full: LivePlaylist
    peak_bps: float = 0.0
    total_bytes: int = 0
    total_seconds: float = 0.0
    codecs: str = "avc1.64001f"


class VideoLadder(Output):
    """The renditions of one ladder: ``kind`` "main" (``video/<rung>/``) or "vertical" (``vertical/<rung>/``)."""

    def __init__(self, ctx: StreamContext, rungs: list[Rung], pool: Executor, *, kind: str = "main",
                 rate_control: RateControl = "crf", crop_path: CropPath | None = None,
                 hint_producers: tuple[str, ...] = ()) -> None:
        self.ctx = ctx
        self.kind = kind
        self.name = f"video-{kind}"
        self.pool = pool
        self.rate_control: RateControl = rate_control
        self.crop_path = crop_path
        # The sidecars that declared bitrate hints when the stream opened: a segment without a hint then
        # fell back to the static settings, and segments.jsonl says why ("late" or "sidecar down").
        self.hint_producers = hint_producers
        self.needs: frozenset[ResultKind] = frozenset({"crops"} if kind == "vertical" else {"bitrate_hints"})
        prefix = "video" if kind == "main" else "vertical"
        self.renditions: list[Rendition] = []
        for r in rungs:
            d = ctx.outdir / prefix / r.name
            d.mkdir(parents=True, exist_ok=True)
            self.renditions.append(Rendition(
                rung=r, dir=d,
                playlist=LivePlaylist(d / "index.m3u8", ctx.segment_duration, ctx.window),
                full=LivePlaylist(d / "vod.m3u8", ctx.segment_duration, 0)))
        self.published = 0
        # crops.jsonl: the window the vertical followed, per analysed crop (tools and tests read it)
        self.crops_log = JsonLines(ctx.outdir / "crops.jsonl") if crop_path is not None else None

    def publish(self, job: SegmentJob) -> None:
        hint = self.ctx.timeline.hint_for(job.index) if self.kind == "main" else None
        hints = {h.rendition: h for h in hint.renditions} if hint else {}
        crops = [self.crop_path.window_at(t) for t in job.times] if self.crop_path is not None else None
        fallback = self._fallback_reason() if hint is None else None
        futures, settings = [], []
        for rs in self.renditions:
            h = hints.get(rs.rung.name)
            # A hint's CRF makes the segment capped CRF in either static mode; a hint never raises the cap.
            crf, cap = segment_settings(self.rate_control, rs.rung.crf, rs.rung.max_bitrate,
                                        h.crf if h is not None else None, h.max_bitrate if h is not None else None)
            # A hint may also encode the segment smaller than the rung (the player scales it up); the master
            # playlist keeps declaring the rung's size, its maximum.
            w, ht = (segment_size(rs.rung.width, rs.rung.height, h.width, h.height) if h is not None
                     else (rs.rung.width, rs.rung.height))
            settings.append((crf, cap, h is not None, w, ht))
            futures.append(self.pool.submit(
                media.encode_video_segment, job.frames, job.times, rs.dir / f"{job.name}.ts",
                w, ht, self.ctx.fps, crf, cap, job.duration, crops))
        stats = [f.result() for f in futures]
        # rate_control is what this segment used: "crf" (crf under max_bitrate) or "vbr" (ABR at
        # max_bitrate, crf null); a hint with a CRF makes its segment "crf". width/height: the encoded size.
        # fallback: why a segment that should have had a hint used the static settings ("late": no hint
        # within the decision window; "sidecar down": no bitrate sidecar running any more); null otherwise.
        self.ctx.log.write([
            {"segment": job.index, "rendition": rs.rung.name, "start": round(job.start, 3),
             "duration": job.duration, "bytes": st.bytes, "rate_control": "vbr" if crf is None else "crf",
             "crf": crf, "max_bitrate": cap, "hinted": hinted, "width": w, "height": ht, "fallback": fallback}
            for rs, st, (crf, cap, hinted, w, ht) in zip(self.renditions, stats, settings, strict=True)])
        for rs, st in zip(self.renditions, stats, strict=True):
            if self.published == 0:
                rs.codecs = st.codecs
            seg = job.segment(f"{job.name}.ts")
            rs.peak_bps = max(rs.peak_bps, st.bytes * 8 / job.duration)
            rs.total_bytes += st.bytes
            rs.total_seconds += job.duration
            rs.playlist.add(seg)
            rs.full.add(seg)
        if self.crop_path is not None and self.crops_log is not None:
            self.crops_log.write(self.crop_path.jsonl_records(job.start, job.end))
        self.published += 1

    def _fallback_reason(self) -> str | None:
        if self.kind != "main" or not self.hint_producers:
            return None  # no bitrate sidecar in this stream: the static ladder is the plan, not a fallback
        live = set(self.ctx.timeline.live_sidecars())
        return "late" if live.intersection(self.hint_producers) else "sidecar down"

    def finish(self, complete: bool) -> None:
        if self.crops_log is not None:
            self.crops_log.close()
        if not complete:
            return
        for rs in self.renditions:
            rs.playlist.end()
            rs.full.end()


__all__ = ["Rendition", "VideoLadder"]
