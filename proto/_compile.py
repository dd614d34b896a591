"""Compile a .proto at import time (tests only: ``SIDECAST_PROTO_ROOT``). Needs grpcio-tools."""

from __future__ import annotations

import sys
from pathlib import Path
from types import ModuleType
from typing import Any

from .errors import MissingExtra


def compile_proto(root: Path, proto_file: str) -> tuple[Any, Any]:
    """The message and service modules of ``root/proto_file``, built in memory into the default
    descriptor pool (so the committed ``v1`` modules, which register the same file name, must not be
    imported in this process: ``sidecast.contract`` takes care of that)."""
    try:
        import grpc
        import grpc_tools  # noqa: F401
    except ImportError as exc:
        raise MissingExtra("dev", "SIDECAST_PROTO_ROOT") from exc
    sys.path.insert(0, str(root))
    try:
        modules: tuple[ModuleType, ModuleType] = grpc.protos_and_services(proto_file)
        return modules
    finally:
        sys.path.remove(str(root))
