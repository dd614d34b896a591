"""`python -m sidecast.core.serve OUTDIR [--port 8080] [--host 0.0.0.0]`: look at an output folder in a browser."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from .server import serve_forever


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sidecast.core.serve", description=__doc__)
    parser.add_argument("directory", type=Path)
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--host", default="0.0.0.0")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        serve_forever(args.directory, args.port, args.host)
    except OSError as exc:  # FileNotFoundError included: a one-line reason, no traceback
        parser.exit(1, f"error: {exc.strerror or exc}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
