"""Video ladders: the main ABR ladder and the vertical (cropped) ladder, one fresh x264 encoder per
segment and rendition, encoded in parallel (x264 runs outside the GIL).

``VideoLadder`` is both: the main ladder applies bitrate hints (it ``needs`` bitrate hints); the vertical
one crops every frame to the window the crop path gives (it ``needs`` crops). Each rendition keeps a
live playlist (the window) and a full VOD playlist, and the peak and average bit rates the master
playlist declares.

Two ways to encode, chosen when the stream starts:
- **streaming** (a ladder no running sidecar has results for: the main ladder without a bitrate
  sidecar): every rendition has an encoder thread fed frame by frame as the ingest reads them, so
  encoding runs continuously, a segment is ready moments after its last frame, and no decoded picture is
  kept longer than the encoders' look-ahead — memory does not grow with segment length or frame rate;
- **buffered** (the ladder waits for sidecar results: hints, crops): the segment's frames are kept
  until the decision window closes, then every rendition encodes them in parallel.
"""

from __future__ import annotations

import logging
import queue
import threading
from concurrent.futures import Executor
from dataclasses import dataclass
from pathlib import Path

import av

from sidecast.contract.records import ResultKind
from sidecast.hls import Part
from sidecast.hls.live import LivePlaylist, atomic_write

from .. import fmp4, media
from ..croppath import CropPath
from ..ladder import RateControl, Rung, segment_settings, segment_size
from .base import JsonLines, Output, SegmentJob, StreamContext
from .parts import PartEncoder, PartReady, part_name

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
    fragmenter: fmp4.Fragmenter | None = None  # low latency: numbers the rendition's fragments
    init_done: bool = False


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
        self.essential = kind == "main"
        prefix = "video" if kind == "main" else "vertical"
        # Low latency (the main ladder): CMAF parts as frames are encoded; otherwise MPEG-TS segments.
        self.low_latency = ctx.part_target is not None and kind == "main"
        self.ext = "m4s" if self.low_latency else "ts"
        init = "init.mp4" if self.low_latency else None
        self.renditions: list[Rendition] = []
        for r in rungs:
            d = ctx.outdir / prefix / r.name
            d.mkdir(parents=True, exist_ok=True)
            self.renditions.append(Rendition(
                rung=r, dir=d,
                playlist=ctx.playlist(d / "index.m3u8", init_uri=init, parts=self.low_latency),
                full=ctx.playlist(d / "vod.m3u8", 0, init_uri=init),
                fragmenter=fmp4.Fragmenter() if self.low_latency else None))
        self.published = 0
        self.streaming: _Streaming | None = None
        # crops.jsonl: the window the vertical followed, per analysed crop (tools and tests read it)
        self.crops_log = JsonLines(ctx.outdir / "crops.jsonl") if crop_path is not None else None

    # ------------------------------------------------------------ streaming

    def stream(self) -> None:
        """Encode frames as they arrive (no sidecar result will change how): call before the first frame."""
        if self.streaming is None and self.crop_path is None:
            self.streaming = _Streaming(self)

    @property
    def buffers_frames(self) -> bool:
        return self.streaming is None

    def frame(self, frame: av.VideoFrame, t: float, segment: int) -> None:
        if self.streaming is not None:
            self.streaming.frame(frame, t, segment)

    def segment_closed(self, job: SegmentJob) -> None:
        if self.streaming is not None:
            self.streaming.close_segment(job.index, job.duration)

    # ------------------------------------------------------------ publishing

    def publish(self, job: SegmentJob) -> None:
        if self.streaming is not None:
            stats = self.streaming.wait(job.index)
            settings = [(*segment_settings(self.rate_control, rs.rung.crf, rs.rung.max_bitrate, None, None),
                         False, rs.rung.width, rs.rung.height) for rs in self.renditions]
            # parts are encoded as frames arrive, before any hint could exist: hints do not apply here
            self._list(job, stats, settings,
                       "low latency" if self.kind == "main" and self.hint_producers else None)
            return
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
        self._list(job, stats, settings, fallback)

    def _list(self, job: SegmentJob, stats: list[media.SegmentStats],
              settings: list[tuple[float | None, int, bool, int, int]], fallback: str | None) -> None:
        """Log and list one encoded segment in every rendition's playlists."""
        # rate_control is what this segment used: "crf" (crf under max_bitrate) or "vbr" (ABR at
        # max_bitrate, crf null); a hint with a CRF makes its segment "crf". width/height: the encoded size.
        # fallback: why a segment that should have had a hint used the static settings ("late": no hint
        # within the decision window; "sidecar down": no bitrate sidecar running any more; "low latency":
        # parts are encoded before a hint can exist); null otherwise.
        self.ctx.log.write([
            {"segment": job.index, "rendition": rs.rung.name, "start": round(job.start, 3),
             "duration": job.duration, "bytes": st.bytes, "rate_control": "vbr" if crf is None else "crf",
             "crf": crf, "max_bitrate": cap, "hinted": hinted, "width": w, "height": ht, "fallback": fallback}
            for rs, st, (crf, cap, hinted, w, ht) in zip(self.renditions, stats, settings, strict=True)])
        for rs, st in zip(self.renditions, stats, strict=True):
            if self.published == 0:
                rs.codecs = st.codecs
            seg = job.segment(f"{job.name}.{self.ext}")
            rs.peak_bps = max(rs.peak_bps, st.bytes * 8 / job.duration)
            rs.total_bytes += st.bytes
            rs.total_seconds += job.duration
            rs.playlist.add(seg, next_part_uri=part_name(job.index + 1, 0), index=job.index)
            rs.full.add(seg)
        if self.crop_path is not None and self.crops_log is not None:
            self.crops_log.write(self.crop_path.jsonl_records(job.start, job.end))
        self.published += 1

    # ------------------------------------------------------------ low latency

    def new_encoder(self, rs: Rendition, index: int, segment: int, crf: float | None, cap: int,
                    keyint: int) -> media.SegmentEncoder | PartEncoder:
        """The encoder of one segment of one rendition: MPEG-TS, or CMAF parts in low-latency mode."""
        if not self.low_latency:
            return media.SegmentEncoder(rs.dir / f"seg_{segment:06d}.ts", rs.rung.width, rs.rung.height,
                                        self.ctx.fps, crf, cap, keyint)
        assert self.ctx.part_target is not None and rs.fragmenter is not None
        part_frames = max(1, round(self.ctx.part_target * float(self.ctx.fps)))

        def write_init(data: bytes) -> None:
            atomic_write(rs.dir / "init.mp4", data)
            rs.init_done = True

        def on_part(p: PartReady) -> None:
            rs.playlist.add_part(Part.of(p.uri, p.duration, independent=p.independent),
                                 next_uri=part_name(p.segment, p.part + 1), segment=p.segment)

        return PartEncoder(rs.dir, segment, rs.rung.width, rs.rung.height, self.ctx.fps, crf, cap, keyint,
                           part_frames, rs.fragmenter, lambda: rs.init_done, write_init, on_part)

    def _fallback_reason(self) -> str | None:
        if self.kind != "main" or not self.hint_producers:
            return None  # no bitrate sidecar in this stream: the static ladder is the plan, not a fallback
        live = set(self.ctx.timeline.live_sidecars())
        return "late" if live.intersection(self.hint_producers) else "sidecar down"

    def finish(self, complete: bool) -> None:
        if self.streaming is not None:
            self.streaming.stop()
        if self.crops_log is not None:
            self.crops_log.close()
        if not complete:
            return
        for rs in self.renditions:
            rs.playlist.end()
            rs.full.end()


class _Streaming:
    """One encoder thread per rendition, fed frames and segment ends in order through a bounded queue (the
    ingest waits when encoders fall behind: that bounds memory)."""

    QUEUE_FRAMES = 8

    def __init__(self, ladder: VideoLadder) -> None:
        self.ladder = ladder
        keyint = int(ladder.ctx.segment_duration * float(ladder.ctx.fps) * 2) + 2
        self.keyint = max(keyint, 4)
        self.cond = threading.Condition()
        self.done: dict[tuple[int, int], media.SegmentStats | BaseException] = {}
        self.queues: list[queue.Queue[tuple[av.VideoFrame, float, int] | tuple[None, float, int] | None]] = []
        self.threads = []
        for i, rs in enumerate(ladder.renditions):
            q: queue.Queue[tuple[av.VideoFrame, float, int] | tuple[None, float, int] | None] = \
                queue.Queue(maxsize=self.QUEUE_FRAMES)
            self.queues.append(q)
            t = threading.Thread(target=self._run, args=(i, rs, q), name=f"enc-{rs.rung.name}", daemon=True)
            t.start()
            self.threads.append(t)

    def frame(self, frame: av.VideoFrame, t: float, segment: int) -> None:
        for q in self.queues:
            q.put((frame, t, segment))

    def close_segment(self, index: int, duration: float) -> None:
        for q in self.queues:
            q.put((None, duration, index))

    def _run(self, i: int, rs: Rendition, q: queue.Queue[tuple[av.VideoFrame, float, int] | tuple[None, float, int]
                                                          | None]) -> None:
        ladder = self.ladder
        crf, cap = segment_settings(ladder.rate_control, rs.rung.crf, rs.rung.max_bitrate, None, None)
        enc: media.SegmentEncoder | PartEncoder | None = None
        failed: BaseException | None = None
        while True:
            item = q.get()
            if item is None:
                if enc is not None:
                    enc.abort()
                return
            frame, t, segment = item
            if frame is None:  # the segment ended: t is its duration
                result: media.SegmentStats | BaseException
                if failed is not None:
                    result, failed = failed, None
                elif enc is None:
                    result = RuntimeError(f"segment {segment} of {rs.rung.name} has no frames")
                else:
                    try:
                        result = enc.close(t)
                    except Exception as exc:  # reported by publish(), in the packager
                        result = exc
                enc = None
                with self.cond:
                    self.done[(i, segment)] = result
                    self.cond.notify_all()
                continue
            if failed is not None:
                continue
            try:
                if enc is None:
                    enc = ladder.new_encoder(rs, i, segment, crf, cap, self.keyint)
                enc.encode(frame, t)
            except Exception as exc:
                failed = exc
                if enc is not None:
                    enc.abort()
                    enc = None

    def wait(self, index: int) -> list[media.SegmentStats]:
        keys = [(i, index) for i in range(len(self.queues))]
        with self.cond:
            self.cond.wait_for(lambda: all(k in self.done for k in keys))
            results = [self.done.pop(k) for k in keys]
        for r in results:
            if isinstance(r, BaseException):
                raise r
        return [r for r in results if isinstance(r, media.SegmentStats)]

    def stop(self) -> None:
        for q in self.queues:
            q.put(None)
        for t in self.threads:
            t.join(timeout=10)


__all__ = ["Rendition", "VideoLadder"]
