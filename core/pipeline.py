"""One stream's pipeline: ingest → decode → fan-out to sidecars → segment → decision window → encode →
publish.

Threads: the caller's thread reads the source, decodes, feeds sidecars and cuts segments; a packager
thread takes finished segments in order, waits for sidecar results under the decision window, encodes
every rendition of the segment in parallel (x264 runs outside the GIL) and publishes all playlists.
A bounded queue between the two keeps memory flat when encoding is slower than decoding.
"""

from __future__ import annotations

import json
import logging
import math
import queue
import shutil
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from pathlib import Path
from typing import Any

import av

from sidecast.contract.records import Crop, RenditionInfo, StreamInfo
from sidecast.contract.shm import sweep_stale
from sidecast.hls import MasterPlaylist, Rendition, Segment, Variant, timebase
from sidecast.hls.breaks import Break
from sidecast.hls.live import LivePlaylist, atomic_write
from sidecast.hls.scte35 import try_decode_cue
from sidecast.hls.tags import EXT_X_INDEPENDENT_SEGMENTS

from . import media
from .breaks import BreakSchedule
from .errors import ConfigError, SidecastError
from .fanout import FanOut
from .ladder import (
    AUDIO_BITRATE,
    DEFAULT_LADDER,
    RATE_CONTROLS,
    RateControl,
    Rung,
    build_ladder,
    declared_bandwidth,
    segment_settings,
)
from .links import LocalSidecar, SidecarLink
from .sources import AudioEvent, CueEvent, Discontinuity, Dropped, Opened, Source, VideoEvent, redact
from .timeline import Timeline

log = logging.getLogger("sidecast.pipeline")

LANGUAGE_NAMES = {"en": "English", "de": "Deutsch", "fr": "Français", "es": "Español", "it": "Italiano",
                  "pt": "Português", "nl": "Nederlands", "ja": "日本語", "zh": "中文", "ar": "العربية"}


@dataclass
class RunConfig:
    source: str
    outdir: Path
    realtime: bool = False
    segment_duration: float = 2.0
    window: int | None = None
    ladder: tuple[Rung, ...] = DEFAULT_LADDER
    rate_control: RateControl = "crf"  # static ladder: capped CRF, or "vbr" (each rung at its bitrate)
    audio: bool = True
    sidecars: list[str] = field(default_factory=list)          # local processes
    sidecar_addrs: dict[str, str] = field(default_factory=dict)  # name -> target
    sidecar_args: dict[str, list[str]] = field(default_factory=dict)
    decision_window: float | None = None  # None: the longest max_latency_ms the sidecars declare (≤ 5 s)
    transport: str = "auto"
    snapshots_fps: float = 1.0
    snapshots_width: int = 640
    vertical: str = "auto"
    aspect: str = "9:16"
    safe_margin: float = 0.05
    max_pan_speed: float = 0.5
    keep_centered: bool = False
    stream_keys: set[str] = field(default_factory=set)
    reconnect_timeout: float = 30.0
    progress: bool = True
    describe_timeout: float = 60.0
    drain_timeout: float = 5.0
    breaks: list[tuple[float, float]] = field(default_factory=list)  # (media start, duration)
    captions_language: str = "en"
    captions_translation: bool = False


@dataclass
class SegmentJob:
    index: int
    start: float
    end: float
    frames: list[av.VideoFrame]
    times: list[float]
    discontinuity: bool
    pdt: datetime
    closed_at: float
    final: bool = False


@dataclass
class RenditionState:
    rung: Rung
    kind: str                 # "main" or "vertical"
    playlist: LivePlaylist
    full: LivePlaylist
    dir: Path
    peak_bps: float = 0.0
    total_bytes: int = 0
    total_seconds: float = 0.0
    codecs: str = "avc1.64001f"


@dataclass
class RunSummary:
    segments: int
    frames: int
    media_seconds: float
    wall_seconds: float
    renditions: list[str]
    corrupt_packets: int
    discontinuities: int
    sidecar_results: dict[str, int]
    outdir: Path

    @property
    def speed(self) -> float:
        return self.media_seconds / self.wall_seconds if self.wall_seconds > 0 else 0.0


def parse_aspect(spec: str) -> tuple[int, int]:
    try:
        a, b = (int(x) for x in spec.split(":"))
        if a <= 0 or b <= 0:
            raise ValueError
        return a, b
    except ValueError as exc:
        raise ConfigError(f"bad aspect {spec!r}: expected W:H such as 9:16, 4:5 or 1:1") from exc


class Pipeline:
    def __init__(self, config: RunConfig) -> None:
        self.cfg = config
        if not (0.5 <= config.segment_duration <= 30):
            raise ConfigError("--segment-duration must be between 0.5 and 30 seconds")
        if config.decision_window is not None and not (0 <= config.decision_window <= 30):
            raise ConfigError("--decision-window must be between 0 and 30 seconds")
        if config.rate_control not in RATE_CONTROLS:
            raise ConfigError(f"bad rate control {config.rate_control!r}: expected one of {', '.join(RATE_CONTROLS)}")
        self.aspect = parse_aspect(config.aspect)
        self.out = config.outdir
        self.source = Source(config.source, realtime=config.realtime, stream_keys=config.stream_keys,
                             reconnect_timeout=config.reconnect_timeout, audio=config.audio)
        self.live = self.source.live
        self.window = config.window if config.window is not None else (6 if self.live else 0)
        self.timeline = Timeline()
        self.links: list[SidecarLink] = []
        self.local: list[LocalSidecar] = []
        self.fanout: FanOut | None = None
        self.socket_dir: Path | None = None
        self.renditions: list[RenditionState] = []
        self.audio_playlist: LivePlaylist | None = None
        self.audio_full: LivePlaylist | None = None
        self.audio_enc: media.AudioEncoder | None = None
        self.audio_lock = threading.Lock()
        self.subs: Any = None
        self.subs_translation: Any = None
        self.crop_path: Any = None
        self.jobs: queue.Queue[SegmentJob | None] = queue.Queue(maxsize=3)
        self.segments_done = 0
        self.frames_in = 0
        self.media_time = 0.0
        self.fps = Fraction(30)
        self.discontinuities = 0
        self.error: BaseException | None = None
        self.master_written = False
        self.audio_peak_bps = 0.0
        self.audio_bytes = 0
        self.started = time.monotonic()
        self.result_waits: list[float] = []  # seconds each segment waited for sidecar results
        self._packager = threading.Thread(target=self._package_loop, name="packager", daemon=True)
        self._pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="encode")
        self.stop_requested = threading.Event()
        self.schedule = BreakSchedule()
        for i, (start, duration) in enumerate(config.breaks):
            self.schedule.add(Break(id=f"break-{i + 1}", start=start, duration=duration, source="cli"))
        self._cue_count = 0
        self.window_s = config.decision_window if config.decision_window is not None else 0.0

    # ------------------------------------------------------------------ set-up

    def _start_sidecars(self) -> None:
        names = list(self.cfg.sidecars)
        if names:
            sweep_stale()
            self.socket_dir = Path(tempfile.mkdtemp(prefix="sidecast-sock-"))
            log_dir = self.out / "logs"
            log_dir.mkdir(parents=True, exist_ok=True)
            for name in names:
                proc = LocalSidecar(name, self.socket_dir, self.cfg.sidecar_args.get(name), log_dir=log_dir)
                proc.start()
                self.local.append(proc)
                self.cfg.sidecar_addrs.setdefault(name, proc.target)
        lossless = not self.live and not self.cfg.realtime
        for name, target in self.cfg.sidecar_addrs.items():
            link = SidecarLink(name, target, self.timeline, lossless=lossless,
                               allow_shm=self.cfg.transport != "bytes",
                               stall_timeout=max(5.0, (self.cfg.decision_window or 1.5) * 3))
            link.start()
            self.links.append(link)

    def _wait_described(self) -> None:
        """Wait for every sidecar's Describe; a local one that exits before describing is disabled with
        the error it printed, instead of being waited for."""
        deadline = time.monotonic() + self.cfg.describe_timeout
        procs = {p.name: p for p in self.local}
        for link in self.links:
            proc = procs.get(link.name)
            while not link.wait_described(0.2):
                if proc is not None and proc.exits >= 1:
                    link.fail(f"the {link.name} sidecar exited at start: {proc.last_error() or 'see its log'} "
                              f"(log: {proc.log_path})")
                    proc.stop()
                    break
                if time.monotonic() > deadline:
                    link.fail(f"no answer to Describe within {self.cfg.describe_timeout:g} s from {link.target}")
                    break
        if self.cfg.decision_window is None:
            # Each sidecar declares how late its answers may be: wait that long for the slowest, at most 5 s.
            declared = [lk.description.max_latency_ms / 1000 for lk in self.links
                        if lk.description is not None and lk.failed is None]
            self.window_s = min(5.0, max(declared, default=0.0))
        if self.links:
            log.info("decision window", extra={"seconds": self.window_s,
                                               "from": "option" if self.cfg.decision_window is not None
                                               else "sidecars' declared latency"})

    def _stream_info(self, opened: Opened, rungs: list[Rung]) -> StreamInfo:
        return StreamInfo(
            stream_id=self.out.name,
            source_width=opened.width,
            source_height=opened.height,
            source_fps=float(opened.fps),
            segment_duration=self.cfg.segment_duration,
            renditions=tuple(RenditionInfo(r.name, r.width, r.height, r.max_bitrate, r.crf, self.cfg.rate_control)
                             for r in rungs),
            params={
                "vertical.aspect": self.cfg.aspect,
                "vertical.safe_margin": str(self.cfg.safe_margin),
                "vertical.max_pan_speed": str(self.cfg.max_pan_speed),
            },
        )

    def _want_vertical(self) -> bool:
        if self.cfg.vertical == "on":
            return True
        if self.cfg.vertical == "off":
            return False
        return self._produced("crops")

    def _want_subs(self) -> bool:
        return self._produced("cues")

    def _produced(self, kind: str) -> bool:
        """Whether a running sidecar declares results of this kind (outputs follow capability, not name)."""
        return any(lk.description is not None and lk.failed is None and kind in lk.description.produces
                   for lk in self.links)

    def _vertical_rungs(self) -> list[Rung]:
        """The vertical ladder: 1920/1280/854 tall at the target aspect, never above the crop window."""
        caps = {1920: 4_500_000, 1280: 2_500_000, 854: 1_200_000, 640: 800_000}
        sizes = self.crop_path.ladder(heights=(1920, 1280, 854))
        out = []
        for w, h in sizes:
            cap = next((c for hh, c in sorted(caps.items()) if h <= hh), 4_500_000)
            out.append(Rung(f"v{h}p", h, cap, 23.0, width=w))
        return out

    def _add_rendition(self, rung: Rung, kind: str, directory: Path) -> None:
        """A video rendition: its live playlist (window) and its full VOD playlist."""
        directory.mkdir(parents=True, exist_ok=True)
        seg = self.cfg.segment_duration
        self.renditions.append(RenditionState(
            rung=rung, kind=kind, dir=directory,
            playlist=LivePlaylist(directory / "index.m3u8", seg, self.window),
            full=LivePlaylist(directory / "vod.m3u8", seg, 0)))

    def _setup_outputs(self, opened: Opened) -> list[Rung]:
        self.out.mkdir(parents=True, exist_ok=True)
        rungs = build_ladder(opened.width, opened.height, self.cfg.ladder)
        seg = self.cfg.segment_duration
        for r in rungs:
            self._add_rendition(r, "main", self.out / "video" / r.name)
        if self._want_vertical():
            from .croppath import CropPath  # provided with the autocrop sidecar

            self.crop_path = CropPath(opened.width, opened.height, aspect=self.aspect)
            if self.cfg.keep_centered:
                self.crop_path.keep_centered(True)
            self.timeline.listeners.append(self._on_result)
            for r in self._vertical_rungs():
                self._add_rendition(r, "vertical", self.out / "vertical" / r.name)
        if opened.has_audio:
            d = self.out / "audio"
            d.mkdir(parents=True, exist_ok=True)
            self.audio_playlist = LivePlaylist(d / "index.m3u8", seg, self.window)
            self.audio_full = LivePlaylist(d / "vod.m3u8", seg, 0)
            self.audio_enc = media.AudioEncoder()
        if self._want_subs():
            from .subtitles import SubtitleTrack

            lang = self.cfg.captions_language
            self.subs = SubtitleTrack(self.out / "subs" / lang, seg, self.window, language=lang)
            if self.cfg.captions_translation:
                self.subs_translation = SubtitleTrack(self.out / "subs" / "en-translation", seg, self.window,
                                                      language="en", track="translation")
        if self.cfg.snapshots_fps > 0:
            (self.out / "snapshots").mkdir(parents=True, exist_ok=True)
        if self.links:
            self.timeline.open_results(self.out / "results.jsonl")
        return rungs

    def _on_result(self, name: str, result: Any) -> None:
        if isinstance(result, Crop) and self.crop_path is not None:
            self.crop_path.add(result)

    # ------------------------------------------------------------------ run

    def run(self) -> RunSummary:
        self._start_sidecars()
        self._packager.start()
        try:
            self._ingest()
        except BaseException as exc:
            self.error = exc
            raise
        finally:
            self._finish()
        if isinstance(self.error, BaseException):
            raise self.error
        return self.summary()

    def summary(self) -> RunSummary:
        return RunSummary(
            segments=self.segments_done,
            frames=self.frames_in,
            media_seconds=self.media_time,
            wall_seconds=time.monotonic() - self.started,
            renditions=[r.rung.name for r in self.renditions],
            corrupt_packets=self.source.corrupt_packets,
            discontinuities=self.discontinuities,
            sidecar_results={lk.name: lk.stats.results for lk in self.links},
            outdir=self.out,
        )

    def request_stop(self) -> None:
        """Graceful shutdown: stop reading, finish and publish the segment in progress."""
        self.stop_requested.set()
        self.source.stop()

    def _ingest(self) -> None:
        seg_d = self.cfg.segment_duration
        frames: list[av.VideoFrame] = []
        times: list[float] = []
        seg_start = 0.0
        seg_index = 0
        discontinuity_pending = False
        pdt_anchor = (datetime.now(UTC), 0.0)
        next_snap = 0.0
        snap_index = 0
        snap_log = None
        frame_dur = 1 / 30
        last_progress = 0.0

        def close_segment(end: float, final: bool = False) -> None:
            nonlocal frames, times, seg_index, discontinuity_pending
            if not frames:
                if final and self.fanout is not None:
                    self.fanout.end()
                return
            start = times[0]
            pdt = pdt_anchor[0] + timedelta(seconds=start - pdt_anchor[1])
            job = SegmentJob(index=seg_index, start=start, end=end, frames=frames, times=times,
                             discontinuity=discontinuity_pending, pdt=pdt, closed_at=time.monotonic(), final=final)
            if self.fanout is not None:
                self.fanout.segment(seg_index, start, end)
                if final:
                    # Everything has been sent: sidecars flush now. Waiting for the last segment's turn
                    # would deadlock when earlier segments wait for results that only the flush brings
                    # (a caption still open at the end of the file), broken only by the stall timeout.
                    self.fanout.end()
            frames, times = [], []
            seg_index += 1
            discontinuity_pending = False
            self._put_job(job)

        for ev in self.source.events():
            if self.error is not None:
                raise self.error
            if isinstance(ev, VideoEvent):
                t = ev.t
                forced = self.schedule.cut_due(t, frame_dur / 2)  # an ad break starts or ends here
                if frames and (forced or t >= seg_start + seg_d - frame_dur / 2):
                    close_segment(t)
                if not frames:
                    seg_start = t
                frames.append(ev.frame)
                times.append(t)
                self.frames_in += 1
                self.media_time = t + frame_dur
                if self.fanout is not None:
                    self.fanout.video(ev.frame, t, seg_index)
                if self.cfg.snapshots_fps > 0 and t + 1e-6 >= next_snap:
                    path = self.out / "snapshots" / f"{snap_index:06d}.jpg"
                    media.write_snapshot(ev.frame, min(self.cfg.snapshots_width, ev.frame.width), path)
                    shutil.copyfile(path, self.out / "snapshots" / ".latest.jpg")
                    (self.out / "snapshots" / ".latest.jpg").replace(self.out / "snapshots" / "latest.jpg")
                    if snap_log is None:
                        snap_log = open(self.out / "snapshots" / "index.jsonl", "a")  # noqa: SIM115
                    pdt = pdt_anchor[0] + timedelta(seconds=t - pdt_anchor[1])
                    snap_log.write(json.dumps({"file": path.name, "t": round(t, 3),
                                               "pdt": pdt.isoformat(timespec="milliseconds")}) + "\n")
                    snap_log.flush()
                    snap_index += 1
                    next_snap = max(next_snap + 1 / self.cfg.snapshots_fps, t)
                now = time.monotonic()
                if now - last_progress >= 1.0:
                    last_progress = now
                    self._progress()
            elif isinstance(ev, AudioEvent):
                if self.audio_enc is not None:
                    with self.audio_lock:
                        self.audio_enc.push(ev.frame, ev.t)
                if self.fanout is not None:
                    self.fanout.audio(ev.frame, ev.t)
            elif isinstance(ev, CueEvent):
                self._on_cue(ev)
            elif isinstance(ev, Dropped):
                close_segment(self.media_time)  # publish what arrived before the drop right away
            elif isinstance(ev, Discontinuity):
                close_segment(self.media_time)
                self.discontinuities += 1
                discontinuity_pending = True
                pdt_anchor = (datetime.now(UTC), ev.t)
                if self.audio_enc is not None:
                    with self.audio_lock:
                        self.audio_enc.rebase(ev.t)
                if self.fanout is not None:
                    self.fanout.discontinuity(ev.t)
            elif isinstance(ev, Opened):
                self.fps = ev.fps
                frame_dur = float(1 / ev.fps)
                log.info("source opened", extra={"source": redact(self.cfg.source), "stream": ev.description})
                rungs = build_ladder(ev.width, ev.height, self.cfg.ladder)
                self._wait_described()
                info = self._stream_info(ev, rungs)
                self.fanout = FanOut(self.links, self.cfg.transport)
                self.fanout.negotiate(info)
                # Sidecars that described themselves get the stream from its first frame.
                deadline = time.monotonic() + 10.0
                for link in self.links:
                    if link.failed is None:
                        link.connected.wait(max(0.0, deadline - time.monotonic()))
                self._setup_outputs(ev)
                pdt_anchor = (datetime.now(UTC), 0.0)
        close_segment(self.media_time, final=True)

    def _on_cue(self, ev: CueEvent) -> None:
        """SCTE-35 from the source: schedule the break (a forced boundary) or close the open one."""
        splice = try_decode_cue(ev.data, "in the source")
        if splice is None:
            return
        now = self.media_time
        t = ev.t if splice.pts_time is None else timebase.unwrap_seconds(splice.pts_time + ev.offset, ev.t)
        if t < now:
            log.warning("SCTE-35 cue arrived after its splice time; the break starts at the next frame",
                        extra={"splice_t": round(t, 3), "now": round(now, 3)})
            t = now
        if splice.kind == "out":
            self._cue_count += 1
            brk_id = f"scte35-{splice.event_id}" if splice.event_id is not None else f"scte35-{self._cue_count}"
            self.schedule.add(Break(id=brk_id, start=t, duration=splice.duration, source="scte35",
                                    scte35=splice.raw))
        else:
            self.schedule.end_open_break(t)

    def schedule_break(self, start: float | None, duration: float, delay: float | None = None) -> Break:
        """Schedule a break at media time ``start``, or ``delay`` seconds after the live edge (API)."""
        if start is None:
            start = self.media_time + (delay if delay is not None else 0.0)
        if start < self.media_time:
            raise ValueError(f"break at {start:.3f} s is in the past (live edge {self.media_time:.3f} s)")
        self._cue_count += 1
        brk = Break(id=f"api-{self._cue_count}", start=start, duration=duration, source="api")
        self.schedule.add(brk)
        return brk

    def _put_job(self, job: SegmentJob) -> None:
        while True:
            if self.error is not None:
                raise self.error
            try:
                self.jobs.put(job, timeout=0.5)
                return
            except queue.Full:
                continue

    def _progress(self) -> None:
        if not self.cfg.progress:
            return
        wall = time.monotonic() - self.started
        speed = self.media_time / wall if wall > 0 else 0.0
        parts = [f"frames {self.frames_in}", f"t={self.media_time:7.1f}s", f"speed {speed:4.2f}x",
                 f"segments {self.segments_done}", f"renditions {len(self.renditions)}"]
        live = self.timeline.live_sidecars()
        if self.links:
            parts.append("sidecars " + ",".join(f"{lk.name}{'' if lk.name in live else '(down)'}" for lk in self.links))
        line = "  ".join(parts)
        if sys.stderr.isatty():
            sys.stderr.write("\r\033[K" + line)
            sys.stderr.flush()
        else:
            log.info(line)

    # ------------------------------------------------------------------ packaging

    def _package_loop(self) -> None:
        while True:
            job = self.jobs.get()
            if job is None:
                return
            try:
                self._package(job)
            except BaseException as exc:  # surface in the ingest thread; never die silently
                log.exception("packaging segment %d failed", job.index)
                self.error = exc
                return

    def _wait_results(self, job: SegmentJob) -> None:
        if not self.links:
            return
        if job.final:
            # The ingest sent the end of stream; the last segment waits for the flush (drain timeout).
            deadline = time.monotonic() + max(self.cfg.drain_timeout, self.window_s)
        else:
            deadline = job.closed_at + self.window_s
        began = time.monotonic()
        # Files processed faster than real time wait for complete results while sidecars progress;
        # live sources (and --realtime) hold a segment no longer than the decision window.
        vod = not self.live and not self.cfg.realtime
        covered = self.timeline.wait_covered(job.end, deadline, stall=max(10.0, 3 * self.window_s) if vod
                                             else None)
        self.result_waits.append(time.monotonic() - began)
        if not covered:
            late = [lk.name for lk in self.links if lk.live and self.timeline.watermark_of(lk.name) < job.end]
            log.info("decision window closed without all results", extra={"segment": job.index, "late": ",".join(late)})

    def _package(self, job: SegmentJob) -> None:
        self._wait_results(job)
        duration = round(max(job.end - job.start, 1e-3), 5)  # as written in EXTINF, so peaks match readers
        name = f"seg_{job.index:06d}"
        hint = self.timeline.hint_for(job.index)
        hints = {h.rendition: h for h in hint.renditions} if hint else {}
        futures = []
        crops = None
        if self.crop_path is not None:
            crops = [self.crop_path.window_at(t) for t in job.times]
        settings = []
        for rs in self.renditions:
            h = hints.get(rs.rung.name) if rs.kind == "main" else None
            # A hint's CRF makes the segment capped CRF in either static mode; a hint never raises the cap.
            crf, cap = segment_settings(self.cfg.rate_control, rs.rung.crf, rs.rung.max_bitrate,
                                        h.crf if h is not None else None, h.max_bitrate if h is not None else None)
            settings.append((crf, cap, h is not None))
            futures.append(self._pool.submit(
                media.encode_video_segment, job.frames, job.times, rs.dir / f"{name}.ts",
                rs.rung.width, rs.rung.height, self.fps, crf, cap, duration,
                crops if rs.kind == "vertical" else None))
        audio_bytes = 0
        if self.audio_enc is not None:
            with self.audio_lock:
                if job.final:
                    self.audio_enc.push(None)
                packets = self.audio_enc.take_until(None if job.final else job.end)
            audio_bytes = self.audio_enc.write_segment(packets, self.out / "audio" / f"{name}.ts")
            self.audio_peak_bps = max(self.audio_peak_bps, audio_bytes * 8 / duration)
            self.audio_bytes += audio_bytes
        stats = [f.result() for f in futures]
        signal = self.schedule.signal_for(job.start, job.pdt)
        if not self.master_written:
            for rs, st in zip(self.renditions, stats, strict=True):
                rs.codecs = st.codecs
            self._write_masters(final=False)
        with open(self.out / "segments.jsonl", "a") as log_f:
            for rs, st, (crf, cap, hinted) in zip(self.renditions, stats, settings, strict=True):
                # rate_control is what this segment used: "crf" (crf under max_bitrate) or "vbr" (ABR at
                # max_bitrate, crf null); a hint with a CRF makes its segment "crf".
                log_f.write(json.dumps({"segment": job.index, "rendition": rs.rung.name, "start": round(job.start, 3),
                                        "duration": duration, "bytes": st.bytes,
                                        "rate_control": "vbr" if crf is None else "crf", "crf": crf,
                                        "max_bitrate": cap, "hinted": hinted}) + "\n")
        for rs, st in zip(self.renditions, stats, strict=True):
            seg = Segment(uri=f"{name}.ts", duration=duration, program_date_time=job.pdt,
                          discontinuity=job.discontinuity, tags=signal.tags, dateranges=signal.dateranges)
            rs.peak_bps = max(rs.peak_bps, st.bytes * 8 / duration)
            rs.total_bytes += st.bytes
            rs.total_seconds += duration
            rs.playlist.add(seg)
            rs.full.add(seg)
        if self.audio_playlist is not None and self.audio_full is not None:
            seg = Segment(uri=f"{name}.ts", duration=duration, program_date_time=job.pdt,
                          discontinuity=job.discontinuity, tags=signal.tags, dateranges=signal.dateranges)
            self.audio_playlist.add(seg)
            self.audio_full.add(seg)
        cues = self.timeline.cues_between(job.start - 30.0, job.end, final_only=True)  # carrier's lookback
        for track in (self.subs, self.subs_translation):
            if track is not None:
                track.add_segment(job.index, job.start, job.end, timebase.media_to_pts(job.start), job.pdt,
                                  [c for c in cues if c.track == track.track], job.discontinuity, signal)
        if self.crop_path is not None:
            self._write_crops(job)
        self.segments_done += 1
        job.frames.clear()

    def _write_crops(self, job: SegmentJob) -> None:
        with open(self.out / "crops.jsonl", "a") as f:
            for rec in self.crop_path.jsonl_records(job.start, job.end):
                f.write(json.dumps(rec) + "\n")

    def _variants(self, kind: str, final: bool) -> list[Variant]:
        out = []
        # BANDWIDTH is the peak of the sum of renditions played together (RFC 8216bis §4.4.6.2): video +
        # audio. Live: AAC's cap plus MPEG-TS overhead (~50% at 128 kb/s) or what was measured, if higher.
        audio = audio_avg = 0.0
        if self.audio_playlist is not None:
            seconds = max((rs.total_seconds for rs in self.renditions), default=0.0)
            measured_avg = self.audio_bytes * 8 / seconds if seconds else 0.0
            if final and seconds:
                audio, audio_avg = self.audio_peak_bps, measured_avg
            else:
                audio = max(AUDIO_BITRATE * 1.7, self.audio_peak_bps)
                audio_avg = max(AUDIO_BITRATE * 1.5, measured_avg)
        for rs in self.renditions:
            if rs.kind != kind:
                continue
            declared = declared_bandwidth(rs.rung.max_bitrate, self.cfg.segment_duration)
            if final and rs.total_seconds > 0:
                peak = rs.peak_bps
                avg = rs.total_bytes * 8 / rs.total_seconds
            else:
                peak = max(declared, rs.peak_bps)
                avg = min(rs.rung.max_bitrate, declared)
            codecs = rs.codecs + (f",{media.AUDIO_CODECS}" if self.audio_playlist is not None else "")
            prefix = "video" if kind == "main" else "vertical"
            out.append(Variant.of(
                f"{prefix}/{rs.rung.name}/{'vod' if final and self.window else 'index'}.m3u8",
                bandwidth=int(math.ceil(peak + audio)), average_bandwidth=int(math.ceil(avg + audio_avg)),
                resolution=(rs.rung.width, rs.rung.height), codecs=codecs, frame_rate=float(self.fps),
                audio="aud" if self.audio_playlist is not None else None,
                subtitles="subs" if self.subs is not None else None))
        return out

    def _media(self, final: bool) -> list[Rendition]:
        pl = "vod" if final and self.window else "index"
        media_list = []
        if self.audio_playlist is not None:
            media_list.append(Rendition.of("AUDIO", "aud", "Main", f"audio/{pl}.m3u8", language="und", default=True,
                                           autoselect=True, channels="2"))
        if self.subs is not None:
            lang = self.cfg.captions_language
            media_list.append(Rendition.of("SUBTITLES", "subs", LANGUAGE_NAMES.get(lang, lang),
                                           f"subs/{lang}/{pl}.m3u8", language=lang, default=True, autoselect=True))
        if self.subs_translation is not None:
            media_list.append(Rendition.of("SUBTITLES", "subs", "English (translation)",
                                           f"subs/en-translation/{pl}.m3u8", language="en", autoselect=True))
        return media_list

    def _write_masters(self, final: bool) -> None:
        """Live: declared caps. End of stream: measured peaks (and, for windowed live, the VOD set)."""
        def render_master(variants: list[Variant], renditions: list[Rendition]) -> str:
            return MasterPlaylist(variants, renditions, tags=[EXT_X_INDEPENDENT_SEGMENTS], version=4).dumps()

        targets = [("master.m3u8", "main"), ("vertical.m3u8", "vertical")]
        for fname, kind in targets:
            variants = self._variants(kind, final=False)
            if not variants:
                continue
            if final and self.window == 0:
                variants = self._variants(kind, final=True)
            atomic_write(self.out / fname, render_master(variants, self._media(False)))
            if final and self.window:
                vod = fname.replace(".m3u8", "-vod.m3u8")
                atomic_write(self.out / vod, render_master(self._variants(kind, final=True), self._media(True)))
        self.master_written = True

    # ------------------------------------------------------------------ shutdown

    def _finish(self) -> None:
        try:
            self.jobs.put(None)
        except Exception:
            pass
        self._packager.join()
        self._pool.shutdown(wait=True)
        if self.error is None and self.segments_done:
            for rs in self.renditions:
                rs.playlist.end()
                rs.full.end()
            if self.audio_playlist is not None and self.audio_full is not None:
                self.audio_playlist.end()
                self.audio_full.end()
            if self.subs is not None:
                self.subs.finish()
                self.subs.write_transcript([c for c in self.timeline.all_cues() if c.track == ""], self.out)
            if self.subs_translation is not None:
                self.subs_translation.finish()
            self._write_masters(final=True)
            if self.schedule.breaks:
                self.schedule.write_log(self.out / "breaks.jsonl")
        for link in self.links:
            link.close()
        for proc in self.local:
            proc.stop()
        if self.fanout is not None:
            self.fanout.close()
        if self.audio_enc is not None:
            self.audio_enc.close()
        self.timeline.close()
        self.source.close()
        if self.socket_dir is not None:
            shutil.rmtree(self.socket_dir, ignore_errors=True)
        if self.cfg.progress and sys.stderr.isatty():
            sys.stderr.write("\n")


__all__ = ["Pipeline", "RunConfig", "RunSummary", "SidecastError"]
