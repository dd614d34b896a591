"""Which local addresses sidecast's ICE agent (aioice) offers as host candidates.

aioice offers every interface address except loopback, and has no option to choose. A WHIP or WHEP
server bound to loopback (127.0.0.1: a test, a server behind a local proxy) wants the opposite: only
loopback, so that nothing leaves the machine and it works where loopback is the only interface. So
``host_addresses`` replaces aioice's lookup once per process: while every WebRTC server of the process
is bound to loopback it answers loopback only, otherwise aioice's own list. No STUN or TURN server is
configured anywhere: a publisher and sidecast reach each other on host candidates (a server on a public
address, or one behind a 1:1 NAT that forwards the UDP ports).
"""

from __future__ import annotations

import ipaddress
import threading
from collections.abc import Callable

_lock = threading.Lock()
_binds: list[str] = []
_original: Callable[[bool, bool], list[str]] | None = None


def is_loopback(host: str) -> bool:
    if host in ("localhost", "ip6-localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
    """The host candidates to gather: loopback only while every registered server is on loopback."""
    with _lock:
        binds = list(_binds)
    if binds and all(is_loopback(h) for h in binds):
        return (["127.0.0.1"] if use_ipv4 else []) + (["::1"] if use_ipv6 and not use_ipv4 else [])
    assert _original is not None
    return _original(use_ipv4, use_ipv6)


def register_bind(host: str) -> None:
    """Say that a WebRTC endpoint of this process listens on ``host`` (and install the lookup)."""
    global _original
    import aioice.ice

    with _lock:
        if _original is None:
            _original = aioice.ice.get_host_addresses
            aioice.ice.get_host_addresses = host_addresses
        _binds.append(host)


def unregister_bind(host: str) -> None:
    with _lock:
        if host in _binds:
            _binds.remove(host)


__all__ = ["host_addresses", "is_loopback", "register_bind", "unregister_bind"]
