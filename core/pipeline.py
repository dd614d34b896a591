"""One stream's pipeline: sidecars, ingest, packager and outputs, wired together.

    source ─► Ingest ─┬─► FanOut ─► sidecars (gRPC) ─► Timeline (results, watermarks)
                      │                                      │
                      └─► Packager ─► outputs ◄──────────────┘  each waits only for the result kinds it needs
                                     (main ladder, vertical ladder, audio, one rendition per caption track)

Which outputs exist is decided when the source opens, from what the stream has (audio) and from what the
running sidecars declare in Describe (``Description.produces``): a sidecar that produces cues gets caption
renditions, one that produces crops gets the vertical ladder, whatever its name. ``Pipeline`` owns the
lifecycle: start sidecars, run the ingest on the caller's thread, close the packager, finish every output,
write the masters, shut everything down.
"""

from __future__ import annotations

import functools
import logging
import math
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

from sidecast.contract.params import (
    BITRATE_TARGET_VMAF,
    CAPTIONS_LANGUAGE,
    CAPTIONS_TRANSLATE,
    STREAM_LIVE,
    VERTICAL_ASPECT,
    VERTICAL_MAX_PAN_SPEED,
    VERTICAL_SAFE_MARGIN,
    parse_aspect,
)
from sidecast.contract.records import Crop, RenditionInfo, Result, ResultKind, StreamInfo
from sidecast.contract.shm import sweep_stale
from sidecast.hls.breaks import Break

from .anchor import TARGET_CEILING, SizeAnchor, TargetAnchor, vmaf_ffmpeg
from .breaks import BreakSchedule
from .croppath import CropPath
from .errors import ConfigError, SidecastError, SourceError
from .fanout import FanOut
from .ingest import Ingest
from .ladder import Rung, build_ladder
from .links import LocalSidecar, SidecarLink
from .options import RunOptions
from .outputs import (
    AudioRendition,
    JsonLines,
    MasterPlaylists,
    Output,
    SegmentJob,
    Snapshots,
    StreamContext,
    SubtitleRendition,
    VideoLadder,
)
from .outputs.copy import CopyLadder
from .packager import Packager
from .sources import Opened, Source, SourceChanged, read_stream_keys, redact, truncation
from .timeline import Timeline

log = logging.getLogger("sidecast.pipeline")

# The old name of the options: kept so scripts that build ``RunConfig(...)`` keep working.
RunConfig = RunOptions

#: Vertical ladder caps by output height (bits/s).
VERTICAL_CAPS = {1920: 4_500_000, 1280: 2_500_000, 854: 1_200_000, 640: 800_000}


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


class Pipeline:
    def __init__(self, config: RunOptions) -> None:
        self.cfg = config
        if config.decision_window is not None and not (0 <= config.decision_window <= 30):
            raise ConfigError("--decision-window must be between 0 and 30 seconds")
        if not (0.5 <= config.segment_duration <= 30):
            raise ConfigError("--segment-duration must be between 0.5 and 30 seconds")
        try:
            self.aspect = parse_aspect(config.aspect)
        except ValueError as exc:
            raise ConfigError(f"bad --aspect: {exc}") from None
        self.out = config.outdir
        keys = read_stream_keys(config.stream_keys_file, sorted(config.stream_keys))
        self.source = Source(config.source, realtime=config.realtime, stream_keys=keys,
                             reconnect_timeout=config.reconnect_timeout, audio=config.audio,
                             deinterlace=config.deinterlace, passthrough=config.passthrough)
        self.live = self.source.live
        # Media comes as it happens (a live source, or a file paced by --realtime): sidecar links may drop, the
        # output is not a VOD, and sidecars are told so (stream.live). A file read as fast as it goes is neither.
        self.as_it_happens = self.live or config.realtime
        self.window = config.window if config.window is not None else (6 if self.live else 0)
        self.timeline = Timeline()
        self.links: list[SidecarLink] = []
        self.size_anchored = False  # the main ladder measures its size decisions (RunOptions.size_anchor_for)
        self.local: list[LocalSidecar] = []
        self.fanout: FanOut | None = None
        self.socket_dir: Path | None = None
        self.crop_path: CropPath | None = None
        self.outputs: list[Output] = []
        self.ladders: list[VideoLadder | CopyLadder] = []
        self.audio: AudioRendition | None = None
        self.subtitles: list[SubtitleRendition] = []
        self.masters: MasterPlaylists | None = None
        self.packager: Packager | None = None
        self.snapshots: Snapshots | None = None
        self.segments_log: JsonLines | None = None
        #: Called (on an output thread) once every output has published a segment: the multi-stream server
        #: republishes the stream's playlists from here. Keep listeners quick; hand real work to a thread.
        self.segment_listeners: list[Callable[[SegmentJob], None]] = []
        self.error: BaseException | None = None
        self.started = time.monotonic()
        self.stop_requested = threading.Event()
        self.schedule = BreakSchedule()
        for i, (start, duration) in enumerate(config.breaks):
            self.schedule.add(Break(id=f"break-{i + 1}", start=start, duration=duration, source="cli"))
        self.window_s = config.decision_window if config.decision_window is not None else 0.0
        self._pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="encode")
        self.ingest = Ingest(self.source, self.schedule, config.segment_duration, self._on_opened, self._progress,
                             self._on_source_changed)

    # ------------------------------------------------------------------ read-only views

    @property
    def media_time(self) -> float:
        return self.ingest.media_time

    @property
    def fps(self) -> Fraction:
        return self.ingest.fps

    @property
    def result_waits(self) -> list[float]:
        """Seconds each main-ladder segment waited for sidecar results."""
        return self.packager.result_waits if self.packager is not None else []

    @property
    def segments_done(self) -> int:
        return self.packager.segments_done if self.packager is not None else 0

    # ------------------------------------------------------------------ sidecars

    def _start_sidecars(self) -> None:
        names = list(self.cfg.sidecars)
        addrs = dict(self.cfg.sidecar_addrs)
        if names:
            sweep_stale()
            self.socket_dir = Path(tempfile.mkdtemp(prefix="sidecast-sock-"))
            log_dir = self.out / "logs"
            log_dir.mkdir(parents=True, exist_ok=True)
            for name in names:
                proc = LocalSidecar(name, self.socket_dir, self.cfg.sidecar_args.get(name), log_dir=log_dir,
                                    nice=self.cfg.sidecar_nice.get(name, 0))
                proc.start()
                self.local.append(proc)
                addrs.setdefault(name, proc.target)
        lossless = not self.as_it_happens
        for name, target in addrs.items():
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

    def producers(self, kind: ResultKind) -> list[SidecarLink]:
        """The running sidecars that declare results of this kind (outputs follow capability, not name)."""
        return [lk for lk in self.links
                if lk.description is not None and lk.failed is None and kind in lk.description.produces]

    def _caption_tracks(self) -> list[tuple[str, str]]:
        """(Cue.track, language) of every caption rendition: the source language, then each translation.

        Options a running caption sidecar cannot honour are refused here, before anything is published."""
        producers = self.producers("cues")
        if not producers:
            return []
        lang = self.cfg.captions_language
        sayable = {x for lk in producers for x in (lk.description.caption_languages if lk.description else ())}
        if lang == "auto":
            if sayable and "*" not in sayable:
                raise ConfigError(f"--captions-language auto needs a caption sidecar that identifies the language; "
                                  f"{', '.join(lk.name for lk in producers)} caption {', '.join(sorted(sayable))} only")
        elif sayable and "*" not in sayable and lang not in sayable:
            raise ConfigError(f"--captions-language {lang}: the caption sidecar(s) "
                              f"{', '.join(lk.name for lk in producers)} caption {', '.join(sorted(sayable))} only")
        # With "auto" the spoken language is known only once the sidecar has heard it: the rendition is
        # declared undetermined ("und") rather than guessed.
        tracks = [("", "und" if lang == "auto" else lang)]
        offered = {x for lk in producers for x in (lk.description.translations if lk.description else ())}
        for target in self.cfg.captions_translate:
            sources = ("*",) if lang != "auto" else ()
            if lang == "auto":
                ok = any(pair.endswith(f">{target}") for pair in offered)
            else:
                ok = any(pair in offered for pair in (f"{lang}>{target}", *(f"{s}>{target}" for s in sources)))
            if not ok:
                raise ConfigError(
                    f"--captions-translate {target}: no running caption sidecar translates {lang} to {target}"
                    + (f" (offered: {', '.join(sorted(offered))})" if offered else " (none declares translations)"))
            tracks.append((target, target))
        return tracks

    def _stream_info(self, opened: Opened, rungs: list[Rung]) -> StreamInfo:
        params = {
            VERTICAL_ASPECT: self.cfg.aspect,
            VERTICAL_SAFE_MARGIN: str(self.cfg.safe_margin),
            VERTICAL_MAX_PAN_SPEED: str(self.cfg.max_pan_speed),
            CAPTIONS_LANGUAGE: self.cfg.captions_language,
            # A sidecar that falls behind a live stream may skip ahead, one on a file run must not. Sidecars
            # told nothing (an older core) guess from how fast the media arrives, which a starved core's
            # catch-up bursts defeat (docs/server.md, "seventeenth session").
            STREAM_LIVE: "true" if self.as_it_happens else "false",
        }
        if self.cfg.captions_translate:
            params[CAPTIONS_TRANSLATE] = ",".join(self.cfg.captions_translate)
        if self.cfg.target_vmaf is not None:
            params[BITRATE_TARGET_VMAF] = f"{self.cfg.target_vmaf:g}"
        return StreamInfo(
            stream_id=self.out.name,
            source_width=opened.width,
            source_height=opened.height,
            source_fps=float(opened.fps),
            segment_duration=self.cfg.segment_duration,
            renditions=tuple(RenditionInfo(r.name, r.width, r.height, r.max_bitrate, r.crf, self.cfg.rate_control)
                             for r in rungs),
            params=params,
        )

    # ------------------------------------------------------------------ outputs

    def _want_vertical(self) -> bool:
        if self.cfg.vertical == "on":
            return True
        if self.cfg.vertical == "off":
            return False
        return bool(self.producers("crops"))

    def _vertical_rungs(self, crop_path: CropPath) -> list[Rung]:
        """The vertical ladder: 1920/1280/854 tall at the target aspect, never above the crop window."""
        out = []
        for w, h in crop_path.ladder(heights=(1920, 1280, 854)):
            cap = next((c for hh, c in sorted(VERTICAL_CAPS.items()) if h <= hh), 4_500_000)
            out.append(Rung(f"v{h}p", h, cap, 23.0, width=w))
        return out

    def _on_opened(self, ev: Opened) -> None:
        """The source is open: negotiate with the sidecars, then create the outputs they call for."""
        log.info("source opened", extra={"source": redact(self.cfg.source), "stream": ev.description})
        rungs = build_ladder(ev.width, ev.height, self.cfg.ladder)
        self._wait_described()
        tracks = self._caption_tracks()
        info = self._stream_info(ev, rungs)
        self.fanout = FanOut(self.links, self.cfg.transport)
        self.fanout.negotiate(info)
        # Sidecars that described themselves get the stream from its first frame.
        deadline = time.monotonic() + 10.0
        for link in self.links:
            if link.failed is None:
                link.connected.wait(max(0.0, deadline - time.monotonic()))
        self.out.mkdir(parents=True, exist_ok=True)
        self.segments_log = JsonLines(self.out / "segments.jsonl")
        ctx = StreamContext(outdir=self.out, width=ev.width, height=ev.height, fps=ev.fps, has_audio=ev.has_audio,
                            segment_duration=self.cfg.segment_duration, window=self.window,
                            timeline=self.timeline, log=self.segments_log, target_from_first=self.cfg.passthrough,
                            part_target=self.cfg.part_duration if self.cfg.latency == "low" else None,
                            part_hold_back=self.cfg.hold_back(live_captions=bool(tracks)),
                            upcoming=self.schedule.upcoming)
        hinted = bool(self.producers("bitrate_hints"))
        self.size_anchored, why = self.cfg.size_anchor_for(self.as_it_happens, hinted,
                                                           lambda: vmaf_ffmpeg() is not None)
        if self.size_anchored or hinted:
            log.info("size anchor", extra={"on": self.size_anchored, "why": why})
        main: VideoLadder | CopyLadder
        if self.cfg.passthrough:
            if ev.codec not in ("h264", "hevc"):
                raise ConfigError(f"--passthrough copies H.264 or H.265 into HLS; this source is {ev.codec or 'unknown'}")
            main = CopyLadder(ctx, ev.codec)
            wants_video = any(lk.description is not None and lk.description.video is not None for lk in self.links)
            # Decode only what is looked at: every frame for video sidecars, keyframes for snapshots.
            self.source.decode_video = "all" if wants_video else ("keyframes" if self.cfg.snapshots_fps > 0 else "none")
        else:
            main = VideoLadder(ctx, rungs, self._pool, kind="main", rate_control=self.cfg.rate_control,
                               hint_producers=tuple(lk.name for lk in self.producers("bitrate_hints")),
                               anchor=TargetAnchor(self.cfg.target_vmaf, ceiling=TARGET_CEILING
                                                   if self.cfg.target_ceiling is None else self.cfg.target_ceiling)
                               if self.cfg.target_anchor and self.cfg.target_vmaf is not None else None,
                               size_anchor=SizeAnchor() if self.size_anchored else None)
        self.ladders = [main]
        self.outputs = [main]
        if self._want_vertical() and not self.cfg.passthrough:
            self.crop_path = CropPath(ev.width, ev.height, aspect=self.aspect)
            if self.cfg.keep_centered:
                self.crop_path.keep_centered(True)
            self.timeline.listeners.append(self._on_result)
            vertical = VideoLadder(ctx, self._vertical_rungs(self.crop_path), self._pool, kind="vertical",
                                   crop_path=self.crop_path)
            self.ladders.append(vertical)
            self.outputs.append(vertical)
        if ev.has_audio:
            self.audio = AudioRendition(ctx, copy=self.cfg.passthrough and ev.audio_codec == "aac")
            self.outputs.append(self.audio)
        self.subtitles = [SubtitleRendition(ctx, language=lang, track=track,
                                            part_segments=self.cfg.caption_segments == "part")
                          for track, lang in tracks]
        self.outputs.extend(self.subtitles)
        if self.cfg.snapshots_fps > 0:
            self.snapshots = Snapshots(self.out, self.cfg.snapshots_fps, self.cfg.snapshots_width)
        if self.links:
            self.timeline.open_results(self.out / "results.jsonl")
        self.masters = MasterPlaylists(self.out, self.cfg.segment_duration, self.window, float(ev.fps),
                                       self.ladders, self.audio, self.subtitles)
        vod = not self.as_it_happens
        self.packager = Packager(self.outputs, self.timeline, self.links, window_s=self.window_s, vod=vod,
                                 drain_timeout=self.cfg.drain_timeout, on_segment=self._on_segment)
        # The main ladder encodes continuously unless a running sidecar has results it waits for (hints);
        # at low latency always (video is never held for sidecar results: hints are not applied).
        # --size-anchor encodes each whole segment several times: the main ladder keeps its frames for that.
        if isinstance(main, VideoLadder) and (self.cfg.latency == "low" or not self.packager.producers_of(main)) \
                and not self.size_anchored:
            main.stream()
        # The vertical ladder encodes each frame as soon as its crop is final (the crop sidecars' watermark
        # passed it), so it trails the main ladder by about the sidecar's look-ahead, not a whole segment more.
        for ladder in self.ladders:
            if isinstance(ladder, VideoLadder) and ladder.kind == "vertical":
                ladder.stream(producers=functools.partial(self.packager.producers_of, ladder))
        for sub in self.subtitles:  # low-latency caption parts wait for these sidecars, up to the window
            sub.producers = self.packager.producers_of(sub)
            sub.window_s = self.window_s
            sub.cut_decided = self.cfg.caption_part_cut == "decided"
        self.ingest.outputs = list(self.outputs)
        self.ingest.keep_frames = any(o.buffers_frames for o in self.outputs)
        self.ingest.fanout = self.fanout
        self.ingest.packager = self.packager
        self.ingest.audio = self.audio
        self.ingest.snapshots = self.snapshots

    def _on_source_changed(self, ev: SourceChanged) -> None:
        """The picture changed size: renditions keep their declared sizes (the new picture is fitted into
        them), the crop path and the sidecars start over on the new geometry."""
        if self.fanout is not None:
            self.fanout.change_source(ev.width, ev.height, float(self.ingest.fps))
        if self.crop_path is not None:
            self.crop_path.change_source(ev.t, ev.width, ev.height)

    def _on_result(self, name: str, result: Result) -> None:
        if isinstance(result, Crop) and self.crop_path is not None:
            self.crop_path.add(result)

    def _on_segment(self, job: SegmentJob) -> None:
        """Every output has published ``job``: the first time, the masters can point at all of them."""
        if self.masters is not None and not self.masters.written:
            self.masters.write(final=False)
        for listener in self.segment_listeners:
            listener(job)

    # ------------------------------------------------------------------ run

    def run(self) -> RunSummary:
        self._start_sidecars()
        try:
            self.ingest.run(lambda: self.packager.error if self.packager is not None else None)
        except BaseException as exc:
            self.error = exc
            raise
        finally:
            self._finish()
        if self.error is not None:
            raise self.error
        short = truncation(self.source, self.ingest.media_time)
        if short is not None:
            raise SourceError(short)
        return self.summary()

    def summary(self) -> RunSummary:
        return RunSummary(
            segments=self.segments_done,
            frames=self.ingest.frames_in,
            media_seconds=self.ingest.media_time,
            wall_seconds=time.monotonic() - self.started,
            renditions=[rs.rung.name for ladder in self.ladders for rs in ladder.renditions],
            corrupt_packets=self.source.corrupt_packets,
            discontinuities=self.ingest.discontinuities,
            sidecar_results={lk.name: lk.stats.results for lk in self.links},
            outdir=self.out,
        )

    def request_stop(self) -> None:
        """Graceful shutdown: stop reading, finish and publish the segment in progress."""
        self.stop_requested.set()
        self.source.stop()

    def schedule_break(self, start: float | None, duration: float, delay: float | None = None) -> Break:
        """Schedule a break at media time ``start``, or ``delay`` seconds after the live edge (API)."""
        now = self.ingest.media_time
        if start is None:
            start = now + (delay if delay is not None else 0.0)
        if not (math.isfinite(start) and math.isfinite(duration)) or not 0 < duration <= 600:
            raise ValueError("a break needs a finite start and a duration in (0, 600] seconds")
        if start < now:
            raise ValueError(f"break at {start:.3f} s is in the past (live edge {now:.3f} s)")
        self.ingest.cue_count += 1
        brk = Break(id=f"api-{self.ingest.cue_count}", start=start, duration=duration, source="api")
        self.schedule.add(brk)
        return brk

    def _progress(self) -> None:
        if not self.cfg.progress:
            return
        wall = time.monotonic() - self.started
        t = self.ingest.media_time
        speed = t / wall if wall > 0 else 0.0
        parts = [f"frames {self.ingest.frames_in}", f"t={t:7.1f}s", f"speed {speed:4.2f}x",
                 f"segments {self.segments_done}",
                 f"renditions {sum(len(ladder.renditions) for ladder in self.ladders)}"]
        live = self.timeline.live_sidecars()
        if self.links:
            parts.append("sidecars " + ",".join(f"{lk.name}{'' if lk.name in live else '(down)'}" for lk in self.links))
        line = "  ".join(parts)
        if sys.stderr.isatty():
            sys.stderr.write("\r\033[K" + line)
            sys.stderr.flush()
        else:
            log.info(line)

    # ------------------------------------------------------------------ shutdown

    def _finish(self) -> None:
        if self.packager is not None:
            self.packager.close()
            if self.error is None and self.packager.error is not None:
                self.error = self.packager.error
        self._pool.shutdown(wait=True)
        complete = self.error is None and self.segments_done > 0
        for output in self.outputs:
            try:
                output.finish(complete)
            except Exception:
                log.exception("finishing %s failed", output.name)
        if complete and self.masters is not None:
            self.masters.write(final=True)
            if self.schedule.breaks:
                self.schedule.write_log(self.out / "breaks.jsonl")
        for link in self.links:
            link.close()
        for proc in self.local:
            proc.stop()
        if self.fanout is not None:
            self.fanout.close()
        if self.snapshots is not None:
            self.snapshots.close()
        if self.segments_log is not None:
            self.segments_log.close()
        self.timeline.close()
        self.source.close()
        if self.socket_dir is not None:
            shutil.rmtree(self.socket_dir, ignore_errors=True)
        if self.cfg.progress and sys.stderr.isatty():
            sys.stderr.write("\n")


__all__ = ["Pipeline", "RunConfig", "RunOptions", "RunSummary", "SidecastError"]
