"""Regenerate the contract's Python modules and type stubs from the .proto (a developer tool).

    .venv/bin/python scripts/generate_proto.py          # rewrite proto/v1/*
    .venv/bin/python scripts/generate_proto.py --check  # exit 1 when the committed files drifted

The generated modules are committed (``proto/v1/``, imported as ``sidecast.contract.v1``), so installing
sidecast needs neither grpcio-tools nor a compiler; ``tests/test_contract_layer.py`` runs ``--check`` so a
.proto edit without regenerating fails CI. Stubs (``.pyi``) come from mypy-protobuf, so every message the
core and the SDK build is type-checked.

protoc writes absolute imports named after the .proto package (``from sidecast.sidecar.v1 import
sidecar_pb2``); inside ``sidecast.contract.v1`` that is rewritten to a relative import.
"""

from __future__ import annotations

import argparse
import filecmp
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTO_DIR = ROOT / "proto"
PROTO_FILE = "sidecast/sidecar/v1/sidecar.proto"
OUT_DIR = PROTO_DIR / "v1"
GENERATED = ("sidecar_pb2.py", "sidecar_pb2.pyi", "sidecar_pb2_grpc.py", "sidecar_pb2_grpc.pyi")
ABSOLUTE = "from sidecast.sidecar.v1 import sidecar_pb2 as"
RELATIVE = "from . import sidecar_pb2 as"


def generate(dest: Path) -> None:
    """Write the four generated files into ``dest``."""
    bindir = Path(sys.executable).parent
    env = {**os.environ, "PATH": f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}"}
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "grpc_tools.protoc", f"-I{PROTO_DIR}", f"--python_out={tmp}",
               f"--grpc_python_out={tmp}", f"--mypy_out={tmp}", f"--mypy_grpc_out={tmp}", PROTO_FILE]
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if proc.returncode != 0:
            sys.exit(f"protoc failed:\n{proc.stderr}")
        src = Path(tmp) / Path(PROTO_FILE).parent
        dest.mkdir(parents=True, exist_ok=True)
        for name in GENERATED:
            text = (src / name).read_text().replace(ABSOLUTE, RELATIVE)
            (dest / name).write_text(text)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", action="store_true", help="compare with the committed files; change nothing")
    args = ap.parse_args(argv)
    if not args.check:
        generate(OUT_DIR)
        print(f"wrote {', '.join(GENERATED)} to {OUT_DIR.relative_to(ROOT)}")
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        generate(Path(tmp))
        drifted = [n for n in GENERATED
                   if not (OUT_DIR / n).exists() or not filecmp.cmp(Path(tmp) / n, OUT_DIR / n, shallow=False)]
    if drifted:
        print(f"generated contract modules drifted from {PROTO_FILE}: {', '.join(drifted)}; "
              "run: .venv/bin/python scripts/generate_proto.py", file=sys.stderr)
        return 1
    print("generated contract modules match the .proto")
    return 0


if __name__ == "__main__":
    sys.exit(main())
