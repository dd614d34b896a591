"""The ``sidecast`` command line: ``run`` a stream, a ``demo``, and the commands other packages register
(``sidecar``, ``sidecars``, ``ads``) through the ``sidecast.commands`` entry points.

Errors a user can fix (bad input, unreachable source, bad options) print one ``sidecast: error: ...`` line
and exit non-zero; a traceback means a bug in sidecast.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path

from . import __version__
from .errors import SidecastError
from .logs import setup_logging


def _add_run(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "run",
        help="ingest SOURCE, run sidecars, publish HLS to OUTDIR",
        description=(
            "SOURCE is a media file, rtmp://0.0.0.0:1935/live/KEY (listen for a publisher), "
            "rtsp://... or srt://... (pull; srt://...?mode=listener to listen), or an http(s) HLS playlist."
        ),
    )
    p.add_argument("source")
    p.add_argument("-o", "--output", "--outdir", dest="outdir", required=True, type=Path, help="output directory")
    p.add_argument("--realtime", action="store_true", help="pace a file source as a live stream")
    p.add_argument("--segment-duration", type=float, default=2.0, help="HLS segment duration, seconds (default 2)")
    p.add_argument("--window", type=int, default=None,
                   help="live sliding-window length in segments (default: 6 for live sources, 0 = keep all)")
    p.add_argument("--ladder", default=None,
                   help='renditions, e.g. "1080p:6000k,720p:3000k,480p:1400k:crf=24" (default 1080/720/480/360)')
    p.add_argument("--rate-control", default="crf", metavar="crf|vbr",
                   help="static ladder: crf = capped CRF, each rung's CRF under its bitrate as a cap (default); "
                        "vbr = fixed-bitrate ladder, each rung at its bitrate (x264 ABR, same cap). A bitrate "
                        "hint makes its segment capped CRF in either mode (docs/bitrate.md)")
    p.add_argument("--no-audio", action="store_true", help="ignore the source's audio")
    p.add_argument("--sidecars", default="", help="comma-separated sidecars to start locally (e.g. stt,autocrop)")
    p.add_argument("--sidecar-addr", action="append", default=[], metavar="NAME=ADDR",
                   help="connect to a running sidecar (host:port or unix:///path); repeatable")
    p.add_argument("--sidecar-arg", action="append", default=[], metavar="NAME=ARG",
                   help="extra argument for a local sidecar, e.g. stt=--language=de; repeatable")
    p.add_argument("--captions-language", default="en",
                   help="language of the caption rendition (LANGUAGE in master.m3u8; default en)")
    p.add_argument("--captions-translation", action="store_true",
                   help="add an English translation rendition (run stt with --sidecar-arg stt=--translate)")
    p.add_argument("--decision-window", type=float, default=None,
                   help="seconds a finished segment waits for sidecar results (default: the longest "
                        "latency the running sidecars declare, at most 5)")
    p.add_argument("--transport", choices=["auto", "shm", "bytes"], default="auto",
                   help="frame transport to sidecars (auto: shared memory when on the same host)")
    p.add_argument("--snapshots-fps", type=float, default=1.0, help="JPEG snapshots per second (0 = off)")
    p.add_argument("--snapshots-width", type=int, default=640, help="snapshot width in pixels")
    p.add_argument("--vertical", choices=["auto", "on", "off"], default="auto",
                   help="publish vertical.m3u8 (auto: when the autocrop sidecar runs)")
    p.add_argument("--aspect", default="9:16", help="vertical aspect ratio: 9:16 (default), 4:5, 1:1")
    p.add_argument("--safe-margin", type=float, default=0.05, help="vertical crop safe margin, fraction")
    p.add_argument("--max-pan-speed", type=float, default=0.5,
                   help="vertical crop max pan speed, fraction of source width per second")
    p.add_argument("--keep-centered", action="store_true", help="vertical: ignore the crop path, keep centred")
    p.add_argument("--stream-key", action="append", default=[], help="accepted RTMP stream key; repeatable")
    p.add_argument("--stream-keys-file", type=Path, default=None, help="file with one accepted stream key per line")
    p.add_argument("--reconnect-timeout", type=float, default=30.0,
                   help="live sources: seconds to wait for the publisher/source to come back (default 30)")
    p.add_argument("--break-at", action="append", default=[], metavar="SECONDS[:DURATION]",
                   help="schedule an ad break at a media time (forces a boundary, signals it in playlists)")
    p.add_argument("--serve", type=int, default=None, metavar="PORT", help="serve OUTDIR and a player over HTTP")
    p.add_argument("--serve-host", default="0.0.0.0")
    p.add_argument("--no-progress", action="store_true", help="no progress line on stderr")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from .run import run_from_args

    return run_from_args(args)


def _add_demo(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="make a built-in sample clip and run the pipeline on it")
    p.add_argument("-o", "--output", dest="outdir", type=Path, default=Path("out/demo"))
    p.add_argument("--sidecars", default="stt,autocrop,bitrate", help="sidecars to run (default: all built-ins)")
    p.add_argument("--seconds", type=float, default=20.0, help="length of the sample clip")
    p.add_argument("--serve", type=int, default=None, metavar="PORT", help="serve the result afterwards")
    p.set_defaults(func=_demo)


def _demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    return run_demo(args)


COMMAND_ENTRY_POINTS = "sidecast.commands"


def _add_plugin_commands(sub: argparse._SubParsersAction) -> None:
    """Subcommands other packages register (``sidecar``, ``sidecars``, ``ads``, third-party tools).

    Each entry point is a ``configure(parser)`` function; its docstring's first line is the command's
    help. The core imports none of them by name: the layer rules (docs/architecture.md) keep core below
    the sidecars and the ads module. A command whose module fails to import still appears, and running it
    prints that one error instead of breaking every other command.
    """
    for ep in sorted(metadata.entry_points(group=COMMAND_ENTRY_POINTS), key=lambda e: e.name):
        try:
            configure = ep.load()
        except Exception as exc:  # a broken plugin must not take the whole CLI down
            reason = f"the {ep.name!r} command ({ep.value}) failed to load: {exc}"
            p = sub.add_parser(ep.name, help=f"(unavailable: {exc})", add_help=False)
            p.add_argument("rest", nargs=argparse.REMAINDER)
            p.set_defaults(func=lambda a, reason=reason: _fail(reason))
            continue
        doc = (configure.__doc__ or "").strip().splitlines()
        p = sub.add_parser(ep.name, help=doc[0] if doc else None, description=" ".join(doc) or None)
        configure(p)


def _fail(msg: str) -> int:
    raise SidecastError(msg)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sidecast", description="AI sidecar media pipeline")
    parser.add_argument("--version", action="version", version=f"sidecast {__version__}")
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    parser.add_argument("--log-format", default="text", choices=["text", "json"],
                        help="json: one JSON object per line (structured logs)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    _add_run(sub)
    _add_demo(sub)
    _add_plugin_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    setup_logging(args.log_level, args.log_format)
    try:
        return int(args.func(args) or 0)
    except SidecastError as exc:
        print(f"sidecast: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("sidecast: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 1
    finally:
        logging.shutdown()


if __name__ == "__main__":
    sys.exit(main())
