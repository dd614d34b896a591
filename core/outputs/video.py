"""Video ladders: the main ABR ladder and the vertical (cropped) ladder, one fresh x264 encoder per
segment and rendition, encoded in parallel (x264 runs outside the GIL).

``VideoLadder`` is both: the main ladder applies bitrate hints (it ``needs`` bitrate hints); the vertical
one crops every frame to the window the crop path gives (it ``needs`` crops). Each rendition keeps a
live playlist (the window) and a full VOD playlist, and the peak and average bit rates the master
playlist declares.

Three ways to encode, chosen when the stream starts:
- **streaming** (a ladder no running sidecar has results for: the main ladder without a bitrate
  sidecar): every rendition has an encoder thread fed frame by frame as the ingest reads them, so
  encoding runs continuously, a segment is ready moments after its last frame, and no decoded picture is
  kept longer than the encoders' look-ahead — memory does not grow with segment length or frame rate;
- **streaming behind the crops** (the vertical ladder): the same encoder threads, but each frame waits in
  a ``_CropGate`` until its crop is final — the crop sidecars' watermark has passed the frame's time, so
  the crop path will not change around it — and is then cropped and encoded at once. Only the frames of
  the sidecar's last look-ahead are left to encode when a segment's crops are complete, so the vertical
  is published about one look-ahead after the main ladder instead of a look-ahead plus a whole segment's
  encode. When the decision window closes first (a late or dead sidecar) the packager's ``publish``
  releases the rest of the segment with the crops that arrived, as before;
- **buffered** (the main ladder waits for bitrate hints, which set the encoder's settings per segment):
  the segment's frames are kept until the decision window closes, then every rendition encodes them in
  parallel.

Segment boundaries, the closed GOP (a fresh encoder per segment, its first frame an IDR) and the
playlists are the same in every mode: the vertical's segments line up with the main ladder's.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor, Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av

from sidecast.contract.records import ResultKind
from sidecast.hls import Part
from sidecast.hls.live import LivePlaylist, atomic_write

from .. import fmp4, media
from ..anchor import SizeAnchor, TargetAnchor
from ..croppath import CropPath, Window
from ..ladder import RateControl, Rung, segment_settings, segment_size
from ..timeline import Timeline
from .base import JsonLines, Output, SegmentJob, StreamContext
from .parts import PartEncoder, PartReady, encoder_threads, part_name

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
    # The most a segment may spend, bit/s, when above the rung's cap (``--target-ceiling K``: K x the cap); 0:
    # the rung's cap. The master playlist declares BANDWIDTH from it.
    declared_cap: int = 0


class VideoLadder(Output):
    """The renditions of one ladder: ``kind`` "main" (``video/<rung>/``) or "vertical" (``vertical/<rung>/``)."""

    def __init__(self, ctx: StreamContext, rungs: list[Rung], pool: Executor, *, kind: str = "main",
                 rate_control: RateControl = "crf", crop_path: CropPath | None = None,
                 hint_producers: tuple[str, ...] = (), anchor: TargetAnchor | None = None,
                 size_anchor: SizeAnchor | None = None) -> None:
        self.ctx = ctx
        # --target-anchor: hinted segments are measured and, when they miss the target, re-encoded (anchor.py)
        self.anchor = anchor
        # --size-anchor: each segment also encoded smaller, measured, and published small when as good (anchor.py)
        self.size_anchor = size_anchor
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
        # Low latency: CMAF parts as frames are encoded (the vertical's as their crops become final, see
        # _CropGate); otherwise MPEG-TS segments.
        self.low_latency = ctx.part_target is not None
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
                fragmenter=fmp4.Fragmenter() if self.low_latency else None,
                declared_cap=int(round(r.max_bitrate * anchor.ceiling)) if anchor is not None and anchor.ceiling > 1
                else 0))
        # low latency: this ladder's renditions encode in parallel, each with its share of the cores
        self.encoder_threads = encoder_threads(len(os.sched_getaffinity(0)), len(self.renditions))
        self.published = 0
        self.streaming: _Streaming | None = None
        self.gate: _CropGate | None = None
        # crops.jsonl: the window the vertical followed, per analysed crop (tools and tests read it)
        self.crops_log = JsonLines(ctx.outdir / "crops.jsonl") if crop_path is not None else None

    # ------------------------------------------------------------ streaming

    def stream(self, producers: Callable[[], list[str]] | None = None) -> None:
        """Encode frames as they arrive: call before the first frame. The main ladder: when no sidecar
        result will change how. The vertical ladder: ``producers`` names the sidecars whose crops it
        follows (asked again for every frame, so a sidecar that fails is no longer waited for); each frame
        is encoded as soon as their watermark has passed it."""
        if self.streaming is not None:
            return
        if self.crop_path is None:
            self.streaming = _Streaming(self)
        elif producers is not None:
            self.streaming = _Streaming(self)
            self.gate = _CropGate(self.streaming, self.crop_path, self.ctx.timeline, producers)

    @property
    def buffers_frames(self) -> bool:
        return self.streaming is None

    def frame(self, frame: av.VideoFrame, t: float, segment: int) -> None:
        if self.gate is not None:
            self.gate.frame(frame, t, segment)
        elif self.streaming is not None:
            self.streaming.frame(frame, t, segment)

    def segment_closed(self, job: SegmentJob) -> None:
        if self.gate is not None:
            self.gate.close_segment(job.index, job.duration)
        elif self.streaming is not None:
            self.streaming.close_segment(job.index, job.duration)

    # ------------------------------------------------------------ publishing

    def publish(self, job: SegmentJob) -> None:
        if self.gate is not None:
            # The packager waited for the crops as long as the decision window allows: whatever of this
            # segment still waits for its crop is encoded now, with the crops there are.
            self.gate.release(job.index)
            try:
                self._publish_streamed(job)
            except BaseException:
                self.gate.stop()  # the packager switches this output off: stop encoding for it
                raise
            return
        if self.streaming is not None:
            self._publish_streamed(job)
            return
        self._publish_buffered(job)

    def _publish_streamed(self, job: SegmentJob) -> None:
        assert self.streaming is not None
        stats = self.streaming.wait(job.index)
        settings = [(*segment_settings(self.rate_control, rs.rung.crf, rs.rung.max_bitrate, None, None),
                     False, rs.rung.width, rs.rung.height) for rs in self.renditions]
        # parts are encoded as frames arrive, before any hint could exist: hints do not apply here
        self._list(job, stats, settings, "low latency" if self.kind == "main" and self.hint_producers else None)

    def _publish_buffered(self, job: SegmentJob) -> None:
        hint = self.ctx.timeline.hint_for(job.index) if self.kind == "main" else None
        hints = {h.rendition: h for h in hint.renditions} if hint else {}
        crops = [self.crop_path.window_at(t) for t in job.times] if self.crop_path is not None else None
        fallback = self._fallback_reason() if hint is None else None
        # a plain encode gives SegmentStats; an anchored one (SegmentStats, CRF used, size, its record)
        futures: list[Future[Any]] = []
        settings = []
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
            if self.anchor is not None and h is not None and crf is not None and crops is None:
                futures.append(self.pool.submit(
                    self.anchor.encode, rs.rung.name, job.frames, job.times, rs.dir / f"{job.name}.ts", w, ht,
                    (rs.rung.width, rs.rung.height), self.ctx.fps, crf, cap, job.duration))
                continue
            if self.anchor is not None:
                self.anchor.reset(rs.rung.name)  # no hinted CRF to correct: the next segment starts afresh
            if self.size_anchor is not None and crf is not None and crops is None:
                futures.append(self.pool.submit(
                    self.size_anchor.encode, rs.rung.name, job.frames, job.times, rs.dir / f"{job.name}.ts", w,
                    ht, (rs.rung.width, rs.rung.height), self.ctx.fps, crf, cap, job.duration))
                continue
            futures.append(self.pool.submit(
                media.encode_video_segment, job.frames, job.times, rs.dir / f"{job.name}.ts",
                w, ht, self.ctx.fps, crf, cap, job.duration, crops))
        results = [f.result() for f in futures]
        stats: list[media.SegmentStats] = []
        extra: list[dict[str, object]] = []
        for i, res in enumerate(results):
            if isinstance(res, tuple):  # anchored (either anchor): the CRF and size published, and their record
                st, used, (w, ht), record = res
                settings[i] = (used, settings[i][1], settings[i][2], w, ht)
                stats.append(st)
                extra.append(record)
            else:
                stats.append(res)
                extra.append({})
        self._list(job, stats, settings, fallback, extra)

    def _list(self, job: SegmentJob, stats: list[media.SegmentStats],
              settings: list[tuple[float | None, int, bool, int, int]], fallback: str | None,
              extra: list[dict[str, object]] | None = None) -> None:
        """Log and list one encoded segment in every rendition's playlists."""
        # rate_control is what this segment used: "crf" (crf under max_bitrate) or "vbr" (ABR at
        # max_bitrate, crf null); a hint with a CRF makes its segment "crf". width/height: the encoded size.
        # fallback: why a segment that should have had a hint used the static settings ("late": no hint
        # within the decision window; "sidecar down": no bitrate sidecar running any more; "low latency":
        # parts are encoded before a hint can exist); null otherwise. --target-anchor adds, to each
        # anchored segment, target_vmaf, hint_crf, anchor_crf, anchor_vmaf, correction, passes, vmaf_cpu_s;
        # --size-anchor: size_vmaf, size_psnr, size_candidates, size_chosen, size_capped, size_cpu_s,
        # size_preset (and size_error).
        self.ctx.log.write([
            {"segment": job.index, "rendition": rs.rung.name, "start": round(job.start, 3),
             "duration": job.duration, "bytes": st.bytes, "rate_control": "vbr" if crf is None else "crf",
             "crf": crf, "max_bitrate": cap, "hinted": hinted, "width": w, "height": ht, "fallback": fallback,
             **more}
            for rs, st, (crf, cap, hinted, w, ht), more in zip(self.renditions, stats, settings,
                                                               extra or [{}] * len(stats), strict=True)])
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
                           part_frames, rs.fragmenter, lambda: rs.init_done, write_init, on_part,
                           threads=self.encoder_threads)

    def _fallback_reason(self) -> str | None:
        if self.kind != "main" or not self.hint_producers:
            return None  # no bitrate sidecar in this stream: the static ladder is the plan, not a fallback
        live = set(self.ctx.timeline.live_sidecars())
        return "late" if live.intersection(self.hint_producers) else "sidecar down"

    def finish(self, complete: bool) -> None:
        if self.gate is not None:
            self.gate.stop()
        if self.streaming is not None:
            self.streaming.stop()
        if self.crops_log is not None:
            self.crops_log.close()
        if not complete:
            return
        for rs in self.renditions:
            rs.playlist.end()
            rs.full.end()


# What an encoder thread is handed: a frame (its media time, segment, and the window to crop, for the
# vertical), or the end of a segment (None, its duration, its index, None).
_Item = tuple[av.VideoFrame, float, int, Window | None] | tuple[None, float, int, None]


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
        self.queues: list[queue.Queue[_Item | None]] = []
        self.threads = []
        for i, rs in enumerate(ladder.renditions):
            q: queue.Queue[_Item | None] = queue.Queue(maxsize=self.QUEUE_FRAMES)
            self.queues.append(q)
            t = threading.Thread(target=self._run, args=(i, rs, q), name=f"enc-{rs.rung.name}", daemon=True)
            t.start()
            self.threads.append(t)

    def frame(self, frame: av.VideoFrame, t: float, segment: int, crop: Window | None = None) -> None:
        for q in self.queues:
            q.put((frame, t, segment, crop))

    def close_segment(self, index: int, duration: float) -> None:
        for q in self.queues:
            q.put((None, duration, index, None))

    def _run(self, i: int, rs: Rendition, q: queue.Queue[_Item | None]) -> None:
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
            frame, t, segment, crop = item
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
                enc.encode(frame, t, crop)
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


class _CropGate:
    """Holds the vertical ladder's frames until their crop is final, then hands them, cropped, to the
    encoder threads in order (frames and segment ends alike).

    The frame at media time t is final once every live sidecar producing crops has a watermark >= t: the
    autocrop sidecar publishes its crops in time order and its watermark is the time of the last one, so
    the crops on both sides of t are known and ``CropPath.window_at(t)`` will not change any more. With no
    crop sidecar running (or failed, or stalled), or with the operator's keep-centred override on, every
    frame is final at once. ``release(index)`` (the packager's decision window for that segment closed)
    makes the segment's frames final with whatever crops arrived, as the buffered encode did.

    One thread, woken by the ingest (a frame, a segment end), by the timeline (a crop, a watermark, a
    sidecar going down) and by ``release``. It blocks on the encoders' bounded queues when they fall
    behind; the packager's bounded job queue then holds the ingest back, so the frames waiting here stay
    bounded as they were in the buffered encode (the segments in flight).
    """

    def __init__(self, streaming: _Streaming, crop_path: CropPath, timeline: Timeline,
                 producers: Callable[[], list[str]]) -> None:
        self.streaming = streaming
        self.crop_path = crop_path
        self.timeline = timeline
        self.producers = producers
        self._items: deque[tuple[av.VideoFrame | None, float, int]] = deque()
        self._cond = threading.Condition()
        self._released = -1
        self._stopped = False
        self.encoded_final = 0     # frames handed over because their crop was final
        self.encoded_released = 0  # frames handed over because the decision window closed first
        self.thread = threading.Thread(target=self._run, name="vertical-crops", daemon=True)
        self.thread.start()

    def frame(self, frame: av.VideoFrame, t: float, segment: int) -> None:
        with self._cond:
            if not self._stopped:
                self._items.append((frame, t, segment))
                self._cond.notify_all()

    def close_segment(self, index: int, duration: float) -> None:
        with self._cond:
            if not self._stopped:
                self._items.append((None, duration, index))
                self._cond.notify_all()

    def release(self, index: int) -> None:
        """Segments up to ``index`` are encoded now, whether or not their crops are final."""
        with self._cond:
            self._released = max(self._released, index)
            self._cond.notify_all()
        self.timeline.poke()

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._items.clear()
            self._cond.notify_all()
        self.timeline.poke()
        if self.thread is not threading.current_thread():
            self.thread.join(timeout=10)

    def pending(self) -> int:
        """Frames waiting for their crop."""
        with self._cond:
            return sum(1 for f, _t, _s in self._items if f is not None)

    def _final(self, t: float) -> bool:
        if self.crop_path.centered:
            return True
        names = self.producers()
        return not names or self.timeline.covered(t, names)

    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: bool(self._items) or self._stopped)
                if self._stopped:
                    return
            # Read the timeline's version before looking, so a crop or a release that lands between the
            # look and the wait ends the wait at once.
            version = self.timeline.version()
            with self._cond:
                if self._stopped:
                    return
                frame, t, segment = self._items[0]
                released = segment <= self._released
            final = frame is None or released or self._final(t)
            if not final:
                self.timeline.wait_change(version, timeout=1.0)
                continue
            with self._cond:
                if self._stopped:
                    return
                self._items.popleft()
            if frame is None:
                self.streaming.close_segment(segment, t)
                continue
            if released and not self._final(t):
                self.encoded_released += 1
            else:
                self.encoded_final += 1
            self.streaming.frame(frame, t, segment, self.crop_path.window_at(t))


__all__ = ["Rendition", "VideoLadder"]
