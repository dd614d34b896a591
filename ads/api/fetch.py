"""Outbound HTTP for the ads API (upstream VAST, tracking pixels), guarded against SSRF.

Ad servers hand us URLs (wrapper tags, trackers) that we then fetch from inside the network, so every URL
is checked first: http(s) only, no credentials in it, and its host must resolve only to public addresses
unless the operator explicitly allows private ones (tests, or an ad server inside the cluster). Redirects are
followed by hand so that every hop passes the same check; bodies are capped and every request has a timeout.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import urllib.parse
from dataclasses import dataclass

import httpx

from sidecast.ads.vast import FetchFailed

__all__ = ["UnsafeURL", "FetchPolicy", "check_url", "check_url_async", "AsyncFetcher"]


class UnsafeURL(ValueError):
    """A URL we refuse to fetch; the message says why (and how to allow it when that is intended)."""


@dataclass(frozen=True)
class FetchPolicy:
    allow_private: bool = False    # loopback, RFC 1918, link-local, ...: refused unless this is on
    timeout: float = 2.0           # seconds, per request
    max_bytes: int = 512 * 1024
    max_redirects: int = 3


def _syntax(url: str) -> tuple[str, int]:
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise UnsafeURL(f"malformed URL {url!r}: {exc}") from exc
    if parts.scheme not in ("http", "https"):
        raise UnsafeURL(f"refusing {parts.scheme or 'scheme-less'}:// URL {url!r}: only http and https are fetched")
    if not parts.hostname:
        raise UnsafeURL(f"URL {url!r} has no host")
    if parts.username or parts.password:
        raise UnsafeURL(f"refusing URL with credentials: {url!r}")
    return parts.hostname, port or (443 if parts.scheme == "https" else 80)


def _check_addresses(url: str, addresses: list[str], policy: FetchPolicy) -> None:
    if not addresses:
        raise UnsafeURL(f"host of {url!r} does not resolve")
    if policy.allow_private:
        return
    for a in addresses:
        ip: ipaddress.IPv4Address | ipaddress.IPv6Address = ipaddress.ip_address(a.split("%", 1)[0])
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped   # ::ffff:127.0.0.1 is loopback too
        if not ip.is_global or ip.is_multicast:
            raise UnsafeURL(f"refusing {url!r}: it resolves to non-public address {ip} "
                            "(allow private upstreams explicitly if this is intended)")


def check_url(url: str, policy: FetchPolicy) -> None:
    """Raise UnsafeURL unless `url` may be fetched under `policy` (resolves the host: blocking)."""
    host, port = _syntax(url)
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise UnsafeURL(f"cannot resolve host of {url!r}: {exc}") from exc
    _check_addresses(url, [str(i[4][0]) for i in infos], policy)


async def check_url_async(url: str, policy: FetchPolicy) -> None:
    host, port = _syntax(url)
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise UnsafeURL(f"cannot resolve host of {url!r}: {exc}") from exc
    _check_addresses(url, [str(i[4][0]) for i in infos], policy)


class AsyncFetcher:
    """GETs under a FetchPolicy; one pooled client per app (create in lifespan, close on shutdown)."""

    def __init__(self, policy: FetchPolicy) -> None:
        self.policy = policy
        self.client = httpx.AsyncClient(timeout=policy.timeout, follow_redirects=False,
                                        headers={"User-Agent": "sidecast-ads/0.1"})

    async def aclose(self) -> None:
        await self.client.aclose()

    async def get(self, url: str) -> bytes:
        """Body of `url`; raises UnsafeURL or FetchFailed (timeout flagged) with a clear message."""
        for _ in range(self.policy.max_redirects + 1):
            try:
                async with asyncio.timeout(self.policy.timeout):  # DNS included: a hung resolver is a timeout
                    await check_url_async(url, self.policy)
                    async with self.client.stream("GET", url) as resp:
                        if resp.is_redirect and "location" in resp.headers:
                            url = urllib.parse.urljoin(url, resp.headers["location"])
                            continue
                        if resp.status_code >= 400:
                            raise FetchFailed(f"HTTP {resp.status_code} from {url}")
                        chunks: list[bytes] = []
                        size = 0
                        async for chunk in resp.aiter_bytes():
                            size += len(chunk)
                            if size > self.policy.max_bytes:
                                raise FetchFailed(f"response from {url} is over {self.policy.max_bytes} bytes")
                            chunks.append(chunk)
                        return b"".join(chunks)
            except TimeoutError as exc:
                raise FetchFailed(f"timed out after {self.policy.timeout} s fetching {url}", timeout=True) from exc
            except httpx.TimeoutException as exc:
                raise FetchFailed(f"timed out fetching {url}", timeout=True) from exc
            except httpx.HTTPError as exc:
                raise FetchFailed(f"fetching {url} failed: {exc}") from exc
        raise FetchFailed(f"too many redirects from {url}")

    async def ping(self, url: str) -> int:
        """Fire a tracking pixel; returns the HTTP status (redirects are followed under the same checks)."""
        for _ in range(self.policy.max_redirects + 1):
            try:
                async with asyncio.timeout(self.policy.timeout):
                    await check_url_async(url, self.policy)
                    resp = await self.client.get(url)
            except TimeoutError as exc:
                raise FetchFailed(f"tracking {url} timed out after {self.policy.timeout} s", timeout=True) from exc
            except httpx.HTTPError as exc:
                raise FetchFailed(f"tracking {url} failed: {exc}",
                                  timeout=isinstance(exc, httpx.TimeoutException)) from exc
            if resp.is_redirect and "location" in resp.headers:
                url = urllib.parse.urljoin(url, resp.headers["location"])
                continue
            return resp.status_code
        raise FetchFailed(f"too many redirects from {url}")
