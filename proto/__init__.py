"""The versioned sidecar contract, compiled from its .proto when first imported.

The .proto under ``proto/sidecast/sidecar/v1/`` is the only source of truth: grpcio-tools compiles it in
memory (``grpc.protos_and_services``) on first import, so no generated stub is committed or can drift
from the contract. ``pb2`` holds the messages and ``pb2_grpc`` the service stubs.
"""

from __future__ import annotations

import os
import sys
import threading
from pathlib import Path
from types import ModuleType
from typing import Any

import grpc

# SIDECAST_PROTO_ROOT points at another copy of the .proto tree (compatibility tests build a peer from a
# newer v1 .proto with extra fields this way).
PROTO_ROOT = Path(os.environ.get("SIDECAST_PROTO_ROOT") or Path(__file__).resolve().parent)
PROTO_FILE = "sidecast/sidecar/v1/sidecar.proto"
PACKAGE = "sidecast.sidecar.v1"
SERVICE = f"{PACKAGE}.Sidecar"
CONTRACT_VERSION = 1

_lock = threading.Lock()


def _compile() -> tuple[ModuleType, ModuleType]:
    with _lock:
        added = str(PROTO_ROOT) not in sys.path
        if added:
            sys.path.insert(0, str(PROTO_ROOT))
        try:
            return grpc.protos_and_services(PROTO_FILE)  # type: ignore[no-any-return]
        finally:
            if added:
                sys.path.remove(str(PROTO_ROOT))


_messages, _services = _compile()
# Typed as Any: the modules are generated at import, so no static stubs exist to check against.
pb2: Any = _messages
pb2_grpc: Any = _services

__all__ = ["pb2", "pb2_grpc", "PROTO_ROOT", "PROTO_FILE", "PACKAGE", "SERVICE", "CONTRACT_VERSION"]
