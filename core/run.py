"""``sidecast run``: turn parsed options into ``RunOptions``, run the pipeline, serve, shut down cleanly."""

from __future__ import annotations

import argparse
import logging
import signal
import threading
from importlib import metadata
from typing import Any

from sidecast.contract.records import SIDECAR_ENTRY_POINTS

from .errors import ConfigError
from .options import RunOptions
from .pipeline import Pipeline, RunSummary
from .signals import StopSignals

log = logging.getLogger("sidecast.run")


def options_from_args(args: argparse.Namespace) -> RunOptions:
    """The stream's options: ``--config FILE.toml`` first, the command line over it; then checks that need
    the installed sidecars."""
    base = RunOptions.from_toml(args.config) if getattr(args, "config", None) is not None else None
    opts = RunOptions.from_namespace(args, base).validate()
    if opts.sidecars:
        known = {ep.name for ep in metadata.entry_points(group=SIDECAR_ENTRY_POINTS)}
        for s in opts.sidecars:
            if s not in known:
                raise ConfigError(f"no sidecar named {s!r} is installed (installed: {', '.join(sorted(known))})")
    return opts


# The old name, for scripts that imported it.
config_from_args = options_from_args


def control_api(pipeline: Pipeline) -> dict[str, Any]:
    """Handlers for ``POST /api/<name>`` on the HTTP server."""

    def keep_centered(body: dict[str, Any]) -> dict[str, Any]:
        on = bool(body.get("on", True))
        if pipeline.crop_path is None:
            return {"ok": False, "error": "no vertical rendition in this run"}
        pipeline.crop_path.keep_centered(on)
        log.info("vertical keep-centered override", extra={"on": on})
        return {"ok": True, "keep_centered": on}

    def status(body: dict[str, Any]) -> dict[str, Any]:
        s = pipeline.summary()
        return {"segments": s.segments, "frames": s.frames, "media_seconds": round(s.media_seconds, 3),
                "speed": round(s.speed, 3), "sidecars": pipeline.timeline.live_sidecars()}

    def breaks(body: dict[str, Any]) -> dict[str, Any]:
        """POST /api/breaks {"at": media_s} or {"in": seconds_from_live_edge}, "duration": s (default 30)."""
        duration = float(body.get("duration", 30.0))
        if not 0 < duration <= 600:
            raise ValueError("duration must be in (0, 600] seconds")
        at = body.get("at")
        brk = pipeline.schedule_break(float(at) if at is not None else None, duration,
                                      delay=float(body.get("in", 4.0)))
        return {"ok": True, "id": brk.id, "start": round(brk.start, 3), "duration": brk.duration}

    return {"vertical/keep-centered": keep_centered, "status": status, "breaks": breaks}


def run_from_args(args: argparse.Namespace) -> int:
    cfg = options_from_args(args)
    pipeline = Pipeline(cfg)
    server = None
    preview = whep_preview(args, pipeline)
    if args.serve is not None:
        from .serve import start_server

        cfg.outdir.mkdir(parents=True, exist_ok=True)
        api = control_api(pipeline)
        if preview is not None:
            api["preview"] = lambda body: preview.stats()
        try:
            server = start_server(cfg.outdir, args.serve, host=args.serve_host, api=api,
                                  routers=[preview.router()] if preview is not None else [])
        except OSError as exc:
            raise ConfigError(f"cannot serve on port {args.serve}: {exc.strerror}") from exc
        print(f"sidecast: serving {cfg.outdir} at http://{args.serve_host}:{server.port}/ (player at /"
              + (", WebRTC preview at /preview" if preview is not None else "") + ")", flush=True)
    if pipeline.source.whip is not None:
        print(f"sidecast: WHIP endpoint {pipeline.source.whip.url} (Bearer token: the stream key)", flush=True)

    def on_signal(signum: int, _frame: object) -> None:
        log.warning("shutting down: finishing the current segment", extra={"signal": signal.Signals(signum).name})
        pipeline.request_stop()

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
    summary = pipeline.run()
    print_summary(summary)
    if server is not None and not pipeline.stop_requested.is_set():
        # a signal the kernel hands to another thread must still stop it: core/signals.py
        stop = StopSignals()
        print("sidecast: stream ended; still serving (Ctrl-C to stop)", flush=True)
        stop.wait()
        stop.close()
    if server is not None:
        server.close()
    if preview is not None:
        preview.close()
    return 0


def whep_preview(args: argparse.Namespace, pipeline: Pipeline) -> Any:
    """``--whep``: the WebRTC preview, fed by the source's taps and the timeline's cues (the pipeline itself
    is not touched: docs/webrtc.md)."""
    if not getattr(args, "whep", False):
        return None
    if args.serve is None:
        raise ConfigError("--whep needs --serve PORT: the WHEP endpoint and the preview page are served there")
    if not 1 <= args.whep_viewers <= 1000:
        raise ConfigError("--whep-viewers must be between 1 and 1000")
    if not 90 <= args.whep_height <= 2160:
        raise ConfigError("--whep-height must be between 90 and 2160 lines")
    from .webrtc import ice
    from .webrtc.whep import WhepPreview

    preview = WhepPreview(height=args.whep_height, max_viewers=args.whep_viewers, keys=set(args.whep_key) or None,
                          audio=pipeline.cfg.audio)
    ice.register_bind(args.serve_host)
    pipeline.source.taps.append(preview.on_event)
    pipeline.timeline.listeners.append(preview.on_result)
    return preview


def print_summary(s: RunSummary) -> None:
    if s.segments == 0:
        print(f"sidecast: done: no media was received ({s.wall_seconds:.1f} s); nothing was published", flush=True)
        return
    print(
        f"sidecast: done: {s.segments} segments, {s.frames} frames, {s.media_seconds:.1f} s of media in "
        f"{s.wall_seconds:.1f} s ({s.speed:.2f}x real time); renditions {', '.join(s.renditions)}"
        + (f"; {s.corrupt_packets} corrupt packets skipped" if s.corrupt_packets else "")
        + (f"; {s.discontinuities} discontinuities" if s.discontinuities else "")
        + "".join(f"; {k}: {v} results" for k, v in s.sidecar_results.items()),
        flush=True,
    )
    print(f"sidecast: output in {s.outdir}/master.m3u8", flush=True)
