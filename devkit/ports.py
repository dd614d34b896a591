"""Loopback ports for the servers that tests and benches start, chosen so that nothing else takes them first.

The usual trick (bind port 0, read the number, close, hand it to a server that binds it later) picks from the
kernel's *ephemeral* range, the same range the kernel draws from for every outgoing connection. On a loaded box
running three test workers, a gRPC or HTTP client of another test can be given that port as its local end in the
window between the pick and the server's bind, and the server then fails with "address in use" or a client gets
"connection refused" from a server that never came up. Ports below the ephemeral range are never handed out
automatically, so each process here draws from its own block of them: the pytest-xdist worker number (or the
process id for anything else) chooses the block, a counter walks it, and a port is only returned if it can be
bound right now.
"""

from __future__ import annotations

import itertools
import os
import re
import socket
import threading
from pathlib import Path

_BLOCK = 1500
_LOW = 10000
_lock = threading.Lock()


def _ephemeral_low() -> int:
    """The first port of the kernel's range for outgoing connections (32768 on a default Linux)."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def _block_start() -> int:
    """Where this process's block begins: one block per xdist worker, otherwise one chosen by the process id."""
    blocks = max(1, (_ephemeral_low() - _LOW) // _BLOCK)
    worker = re.fullmatch(r"gw(\d+)", os.environ.get("PYTEST_XDIST_WORKER", ""))
    index = int(worker.group(1)) if worker else os.getpid()
    return _LOW + (index % blocks) * _BLOCK


_counter = itertools.count()


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port() -> int:
    """A loopback TCP port no one is using, below the ephemeral range and not handed out before by this process."""
    if _ephemeral_low() <= _LOW + _BLOCK:
        # A kernel whose ephemeral range starts this low leaves no room below it: fall back to the kernel's pick.
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return int(s.getsockname()[1])
    start = _block_start()
    with _lock:
        for _ in range(_BLOCK):
            port = start + next(_counter) % _BLOCK
            if _bindable(port):
                return port
    raise RuntimeError(f"no free loopback port in {start}-{start + _BLOCK - 1}")
