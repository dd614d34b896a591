"""The ``sidecast`` command line: ``run`` a stream, a ``demo``, a ``server`` of many streams, and the commands other packages register
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
from .options import RunOptions


def _add_run(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "run",
        help="ingest SOURCE, run sidecars, publish HLS to OUTDIR",
        description="Ingest SOURCE, run sidecars, publish HLS to OUTDIR. Every option can also come from a "
                    "TOML file (--config; keys are the option names, e.g. segment_duration = 4); the command "
                    "line wins over the file.",
    )
    RunOptions.add_arguments(p)
    p.add_argument("--config", type=Path, default=None, metavar="FILE.toml",
                   help="read options from a TOML file (a [run] table, or top-level keys)")
    p.add_argument("--serve", type=int, default=None, metavar="PORT", help="serve OUTDIR and a player over HTTP")
    p.add_argument("--serve-host", default="0.0.0.0")
    p.add_argument("--whep", action="store_true",
                   help="WebRTC preview at sub-second latency: WHEP endpoint /whep and page /preview on the --serve "
                        "port (needs the webrtc extra; docs/webrtc.md)")
    p.add_argument("--whep-key", action="append", default=[], metavar="KEY",
                   help="Bearer key a WHEP viewer must send; repeatable (default: anyone who reaches the port)")
    p.add_argument("--whep-viewers", type=int, default=8, metavar="N",
                   help="most WHEP viewers at once (default 8; more are answered 503)")
    p.add_argument("--whep-height", type=int, default=360, metavar="LINES",
                   help="height of the preview rendition (default 360; never above the source)")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from .run import run_from_args

    return run_from_args(args)


def _add_demo(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("demo", help="make a built-in sample clip and run the pipeline on it")
    p.add_argument("-o", "--output", dest="outdir", type=Path, default=Path("out/demo"))
    p.add_argument("--sidecars", default="stt,autocrop,bitrate", help="sidecars to run (default: all built-ins)")
    p.add_argument("--seconds", type=float, default=20.0, help="length of the sample clip")
    p.add_argument("--serve", type=int, default=None, metavar="PORT", help="serve the result afterwards")
    p.set_defaults(func=_demo)


def _demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    return run_demo(args)


def _add_server(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "server", help="run many streams: control API, push and pull ingest, storage, webhooks, metrics",
        description="Run sidecast as a server of many streams (docs/server.md): streams are added through the "
                    "control API (127.0.0.1:8800 by default), players read from the player port (8080).")
    p.set_defaults(func=_server)
    from .server.config import ServerConfig

    ServerConfig.add_arguments(p)


def _server(args: argparse.Namespace) -> int:
    from .server.app import run_server

    return run_server(args)


COMMAND_ENTRY_POINTS = "sidecast.commands"


def _add_plugin_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
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
    _add_server(sub)
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
