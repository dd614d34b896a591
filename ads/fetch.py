"""Outbound HTTP for the ads module (upstream VAST, tracking pixels): one policy, one set of rules, two
thin transports.

Ad servers hand us URLs (tags, wrapper tags, trackers) that we then fetch from inside the network, so
every fetch follows the same rules whether it runs under a blocking client (the SSAI session router,
command-line tools) or an async one (the decisioning API):

- http(s) only, no credentials in the URL, and the host must resolve only to public addresses unless the
  operator allows private ones; the connection then goes to the address that was checked (the name is
  not resolved a second time, so DNS rebinding cannot slip a private address in between);
- one deadline for the whole fetch: DNS, connect, every redirect, headers and body;
- redirects (301/302/303/307/308 with a Location) are followed by hand, each hop checked again, at most
  `max_redirects`, never in a loop and never from https down to http;
- 200 is a body; 204 is "no ad" (a VAST error 303, not a failure of the ad server); any other status
  fails the fetch; a body over `max_bytes` fails it, whether announced by Content-Length or counted
  while it arrives;
- wrapper depth and the number of documents per tag bound the VAST resolver (ads.vast.resolve).

`Fetch` holds those rules as a small state machine with no I/O; `SyncFetcher` and `AsyncFetcher` only
move bytes and report back to it. Failures are `FetchFailed` (ads.vast) with a message that names the URL;
`UnsafeURL` is the one a retry cannot fix.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import ipaddress
import logging
import os
import socket
import time
import urllib.parse
from collections.abc import Callable, Generator, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Literal

import httpx

from sidecast.ads.vast import MAX_ADS_PER_DOCUMENT, MAX_VAST_BYTES, FetchFailed, Resolution, resolve

__all__ = ["FetchPolicy", "UnsafeURL", "Fetch", "Hop", "SyncFetcher", "AsyncFetcher", "check_url",
           "check_url_async", "check_url_syntax", "check_registration_url", "embedded_ipv4", "address_refusal"]

log = logging.getLogger("sidecast.ads")

REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})


class UnsafeURL(FetchFailed):
    """A URL we refuse to fetch; the message says why (and how to allow it when that is intended)."""


@dataclass(frozen=True)
class FetchPolicy:
    """The limits of every outbound fetch; `sidecast ads serve` flags fill it (see docs/ads-api.md)."""

    allow_private: bool = False     # loopback, RFC 1918, link-local, ...: refused unless this is on
    timeout: float = 2.0            # seconds for one whole fetch: DNS, connect, redirects, body
    max_bytes: int = MAX_VAST_BYTES
    max_redirects: int = 3
    max_wrapper_depth: int = 5      # VAST wrappers followed below a tag
    max_fetches: int = 10           # VAST documents fetched to resolve one tag
    max_ads: int = MAX_ADS_PER_DOCUMENT   # <Ad>s read from one VAST document
    user_agent: str = "sidecast-ads/0.1"

    def resolver(self, url: str, first: bytes | None = None) -> Generator[str, bytes | FetchFailed, Resolution]:
        """The sans-IO VAST resolver for `url` under these limits (ads.vast.resolve); `first` is the tag's
        own document when it is already at hand (inline VAST in a VMAP break)."""
        return resolve(url, max_depth=self.max_wrapper_depth, max_fetches=self.max_fetches,
                       max_bytes=self.max_bytes, max_ads=self.max_ads, first=first)


@dataclass(frozen=True)
class Hop:
    """One request to make: `url` has its host replaced by the checked address; `headers` and `extensions`
    carry the real host name (Host header, TLS SNI and certificate check)."""

    url: str
    headers: Mapping[str, str]
    extensions: Mapping[str, str] = field(default_factory=dict)


def _syntax(url: str) -> tuple[urllib.parse.SplitResult, str, int]:
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
    try:
        parts.hostname.encode("idna")  # what every resolver call does first: an empty or 64+ character label fails
    except UnicodeError:
        raise UnsafeURL(f"{url[:200]!r}: {parts.hostname[:100]!r} is not a valid host name") from None
    return parts, parts.hostname, port or (443 if parts.scheme == "https" else 80)


_NAT64_WELL_KNOWN = ipaddress.ip_network("64:ff9b::/96")      # RFC 6052: IPv4 in the last 32 bits
_NAT64_LOCAL_USE = ipaddress.ip_network("64:ff9b:1::/48")     # RFC 8215: local-use, never public


def embedded_ipv4(ip: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses an IPv6 address stands for, in every form that reaches an IPv4 host: mapped
    (``::ffff:a.b.c.d``, however it is written), compatible (``::a.b.c.d``, deprecated but still routed by
    some stacks), SIIT-translated (``::ffff:0:a.b.c.d``), NAT64 (``64:ff9b::a.b.c.d``), 6to4 (``2002:ab:cd::``)
    and Teredo (the client's address)."""
    n = int(ip)
    out: list[ipaddress.IPv4Address] = []
    if ip.ipv4_mapped is not None:
        out.append(ip.ipv4_mapped)
    if n >> 32 == 0 and n > 1:                      # ::/96 minus :: and ::1 (both refused as they are)
        out.append(ipaddress.IPv4Address(n & 0xFFFFFFFF))
    if n >> 32 == 0xFFFF0000:                       # ::ffff:0:0:0/96
        out.append(ipaddress.IPv4Address(n & 0xFFFFFFFF))
    if ip in _NAT64_WELL_KNOWN:
        out.append(ipaddress.IPv4Address(n & 0xFFFFFFFF))
    if ip.sixtofour is not None:
        out.append(ip.sixtofour)
    if ip.teredo is not None:
        out.append(ip.teredo[1])
    return out


def address_refusal(address: str) -> str | None:
    """Why `address` is not a public unicast address (the reason names the embedded IPv4 when that is what
    is internal), or None when it is one."""
    ip: ipaddress.IPv4Address | ipaddress.IPv6Address = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address):
        if ip in _NAT64_LOCAL_USE:
            return f"non-public address {ip} (local-use NAT64)"
        for v4 in embedded_ipv4(ip):
            if not v4.is_global or v4.is_multicast:
                return f"non-public address {v4} (embedded in {ip})"
    if not ip.is_global or ip.is_multicast:
        return f"non-public address {ip}"
    return None


def _checked_addresses(url: str, addresses: Iterable[str], allow_private: bool) -> list[str]:
    """The addresses of `url`'s host, once every one of them passed the check (one bad one refuses all:
    which one a client would pick is not ours to guess)."""
    checked: list[str] = []
    for a in addresses:
        ip: ipaddress.IPv4Address | ipaddress.IPv6Address = ipaddress.ip_address(a.split("%", 1)[0])
        if not allow_private:
            why = address_refusal(a)
            if why is not None:
                raise UnsafeURL(f"refusing {url!r}: it resolves to {why} "
                                "(allow private upstreams explicitly if this is intended)")
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped   # connect to ::ffff:a.b.c.d over IPv4: the address that was checked
        checked.append(str(ip))
    if not checked:
        raise UnsafeURL(f"host of {url!r} does not resolve")
    return list(dict.fromkeys(checked))


def check_url_syntax(url: str, policy: FetchPolicy) -> None:
    """Raise UnsafeURL unless `url` is an http(s) URL without credentials whose host, when it is a literal
    address (in any spelling the resolver accepts: ``2130706433``, ``0x7f.1``, ``[::ffff:7f00:1]``), is
    public. No DNS: for a name, see check_url / check_url_async."""
    _, host, port = _syntax(url)
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                   flags=socket.AI_NUMERICHOST)
    except (OSError, UnicodeError):
        return   # a name, not an address: resolved (and checked) when fetched
    _checked_addresses(url, _addresses(infos), policy.allow_private)


class Fetch:
    """The rules of one GET under a FetchPolicy, without I/O. A transport loops:

    `target()` → resolve the host → `pin(addresses)` → send a Hop → `on_response(status, headers)`:
    "redirect" (loop again), "body" (feed each chunk to `take`, then `body()`), or "done" (pings: the
    status is all that matters). Every step may raise FetchFailed / UnsafeURL with the reason.
    """

    def __init__(self, url: str, policy: FetchPolicy, *, read_body: bool = True,
                 clock: Callable[[], float] = time.monotonic, sink: Callable[[bytes], None] | None = None) -> None:
        self.url = url
        self.policy = policy
        self.read_body = read_body
        self.sink = sink   # where the body goes as it arrives (a file); None: kept for body()
        self._clock = clock
        self.deadline = clock() + policy.timeout
        self.redirects = 0
        self._seen = {url}
        self._chunks: list[bytes] = []
        self._size = 0
        # a request has started to go out (any hop): from then on the server may have acted on it, which
        # every FetchFailed of this fetch says (FetchFailed.sent), so a tracking ping is never sent twice
        self.sent = False

    # -- what the transport saw (httpx's "trace" request extension)
    def on_trace(self, event: str, info: Mapping[str, object]) -> None:
        """httpcore's trace events of a hop: the request's headers starting to go out marks it sent. Not
        "complete": a timeout can cancel the hop after the bytes were written but before that event."""
        if event.endswith("send_request_headers.started"):
            self.sent = True

    async def on_trace_async(self, event: str, info: Mapping[str, object]) -> None:
        """on_trace for the async client, which awaits its trace callback."""
        self.on_trace(event, info)

    def failed(self, message: str, **flags: bool) -> FetchFailed:
        """A FetchFailed of this fetch, saying whether a request of it had gone out."""
        return FetchFailed(message, sent=self.sent, **flags)

    # -- time
    def remaining(self) -> float:
        """Seconds left of the fetch's budget; raises a timeout FetchFailed once it is spent."""
        left = self.deadline - self._clock()
        if left <= 0:
            raise self.timed_out()
        return left

    def timed_out(self) -> FetchFailed:
        return self.failed(f"timed out after {self.policy.timeout:g} s fetching {self.url}", timeout=True)

    # -- where to connect
    def target(self) -> tuple[str, int]:
        """Host and port to resolve for the current URL (after its syntax passed)."""
        _, host, port = _syntax(self.url)
        self.remaining()
        return host, port

    def pin(self, addresses: Iterable[str]) -> list[Hop]:
        """Check every address the host resolved to; one request per address, to try in order (the next
        only when connecting to the one before failed)."""
        parts, host, _ = _syntax(self.url)
        host_header = f"[{host}]" if ":" in host else host
        if parts.port is not None:
            host_header += f":{parts.port}"
        headers = {"Host": host_header, "User-Agent": self.policy.user_agent}
        extensions = {"sni_hostname": host} if parts.scheme == "https" else {}
        hops = []
        for ip in _checked_addresses(self.url, addresses, self.policy.allow_private):
            netloc = f"[{ip}]" if ":" in ip else ip
            if parts.port is not None:
                netloc += f":{parts.port}"
            pinned = urllib.parse.urlunsplit((parts.scheme, netloc, parts.path or "/", parts.query, ""))
            hops.append(Hop(pinned, headers, extensions))
        return hops

    # -- what came back
    def on_response(self, status: int, headers: Mapping[str, str]) -> Literal["redirect", "body", "done"]:
        location = headers.get("location")
        if status in REDIRECT_STATUSES and location:
            self._follow(location)
            return "redirect"
        if not self.read_body:
            return "done"
        if status == 204:
            raise self.failed(f"no ad from {self.url} (HTTP 204)", no_ad=True)
        if status != 200:
            raise self.failed(f"HTTP {status} from {self.url}")
        announced = headers.get("content-length", "")
        if announced.isdigit() and int(announced) > self.policy.max_bytes:
            raise self.failed(f"response from {self.url} is over {self.policy.max_bytes} bytes "
                              f"(Content-Length: {announced})")
        return "body"

    def _follow(self, location: str) -> None:
        nxt = urllib.parse.urljoin(self.url, location.strip())
        if nxt in self._seen:
            raise self.failed(f"redirect loop: {self.url} leads back to {nxt}")
        if self.redirects >= self.policy.max_redirects:
            raise self.failed(f"too many redirects (over {self.policy.max_redirects}) from {self.url}")
        if self.url.startswith("https:") and nxt.startswith("http:"):
            raise UnsafeURL(f"refusing a redirect from https down to http: {self.url} -> {nxt}")
        self.redirects += 1
        self._seen.add(nxt)
        self.url = nxt

    def take(self, chunk: bytes) -> None:
        """Count one chunk of the body against the size cap and the deadline."""
        self._size += len(chunk)
        if self._size > self.policy.max_bytes:
            raise self.failed(f"response from {self.url} is over {self.policy.max_bytes} bytes")
        if self.sink is not None:
            self.sink(chunk)
        else:
            self._chunks.append(chunk)
        self.remaining()

    def body(self) -> bytes:
        return b"".join(self._chunks)


def _timeout_error(fetch: Fetch, exc: BaseException) -> FetchFailed:
    failed = fetch.timed_out()
    failed.__cause__ = exc
    return failed


def _transport_error(fetch: Fetch, exc: httpx.HTTPError) -> FetchFailed:
    if isinstance(exc, httpx.TimeoutException):
        return _timeout_error(fetch, exc)
    failed = fetch.failed(f"fetching {fetch.url} failed: {exc}")
    failed.__cause__ = exc
    return failed


def _addresses(infos: Iterable[tuple[object, ...]]) -> list[str]:
    return [str(i[4][0]) for i in infos]  # type: ignore[index]


# ---------------------------------------------------------------- the blocking transport

_RESOLVER = concurrent.futures.ThreadPoolExecutor(max_workers=4, thread_name_prefix="sidecast-dns")


def _getaddrinfo_within(fetch: Fetch, host: str, port: int) -> list[str]:
    # the system resolver has no timeout of its own: wait for it on a worker, at most the time left
    future = _RESOLVER.submit(socket.getaddrinfo, host, port, type=socket.SOCK_STREAM)
    try:
        return _addresses(future.result(timeout=fetch.remaining()))
    except concurrent.futures.TimeoutError as exc:
        raise _timeout_error(fetch, exc) from None
    except (OSError, UnicodeError) as exc:
        raise UnsafeURL(f"cannot resolve host of {fetch.url!r}: {exc}") from exc


def check_url(url: str, policy: FetchPolicy) -> None:
    """Raise UnsafeURL unless `url` may be fetched under `policy` (resolves the host: blocking)."""
    fetch = Fetch(url, policy)
    fetch.pin(_getaddrinfo_within(fetch, *fetch.target()))  # raises UnsafeURL when refused


class SyncFetcher:
    """GETs under a FetchPolicy with a blocking httpx client (one pooled client; close it when done)."""

    def __init__(self, policy: FetchPolicy) -> None:
        self.policy = policy
        # trust_env off: a proxy from the environment would resolve names itself, around the address check
        self.client = httpx.Client(follow_redirects=False, trust_env=False)

    def close(self) -> None:
        self.client.close()

    def __enter__(self) -> SyncFetcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _hop(self, fetch: Fetch) -> tuple[str, int]:
        hops = fetch.pin(_getaddrinfo_within(fetch, *fetch.target()))
        for n, hop in enumerate(hops, 1):
            try:
                with self.client.stream("GET", hop.url, headers=hop.headers,
                                        extensions={**hop.extensions, "trace": fetch.on_trace},
                                        timeout=fetch.remaining()) as resp:
                    step = fetch.on_response(resp.status_code, resp.headers)
                    if step == "body":
                        for chunk in resp.iter_bytes():
                            fetch.take(chunk)
                    return step, resp.status_code
            except httpx.ConnectError as exc:
                if n == len(hops):
                    raise _transport_error(fetch, exc) from None
            except httpx.HTTPError as exc:
                raise _transport_error(fetch, exc) from None
        raise AssertionError("unreachable: pin() returns at least one hop")

    def _run(self, fetch: Fetch) -> tuple[int, bytes]:
        while True:
            step, status = self._hop(fetch)
            if step != "redirect":
                return status, fetch.body()

    def get(self, url: str) -> bytes:
        """Body of `url`; raises FetchFailed (timeouts flagged, 204 flagged as no ad) or UnsafeURL."""
        return self._run(Fetch(url, self.policy))[1]

    def ping(self, url: str) -> int:
        """Fire a tracking pixel; returns the final HTTP status (redirects followed under the same rules)."""
        return self._run(Fetch(url, self.policy, read_body=False))[0]

    def download(self, url: str, target: str | os.PathLike[str], *, max_bytes: int, timeout: float) -> int:
        """Stream `url` into the file `target` under this policy's address and redirect rules, with its own
        size cap and time budget (media files are larger and slower than VAST); returns the size. A failed
        download leaves no file."""
        policy = replace(self.policy, max_bytes=max_bytes, timeout=timeout)
        tmp = f"{os.fspath(target)}.part"
        try:
            with open(tmp, "wb") as out:
                def sink(chunk: bytes) -> None:
                    out.write(chunk)

                fetch = Fetch(url, policy, sink=sink)
                while self._hop(fetch)[0] == "redirect":
                    pass
                size = fetch._size
            os.replace(tmp, target)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        return size

    def resolve(self, url: str, first: bytes | None = None) -> Resolution:
        """Follow a VAST tag to playable ads (ads.vast.resolve under this policy's limits)."""
        gen = self.policy.resolver(url, first)
        try:
            target = next(gen)
            while True:
                body: bytes | FetchFailed
                try:
                    body = self.get(target)
                except FetchFailed as exc:
                    log.warning("upstream VAST %s: %s", target, exc)
                    body = exc
                target = gen.send(body)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]


# ---------------------------------------------------------------- the async transport

async def check_registration_url(url: str, policy: FetchPolicy) -> None:
    """What a URL must pass to be registered (a VAST tag, a tracker, a creative we may fetch): http(s)
    without credentials, and a host that is not, and does not resolve to, an internal address. A name
    that does not resolve (yet) is accepted: every fetch checks again."""
    check_url_syntax(url, policy)
    if policy.allow_private:
        return
    try:
        await check_url_async(url, policy)
    except UnsafeURL as exc:
        if "cannot resolve" in str(exc):
            return
        raise
    except FetchFailed:
        return   # DNS too slow now: the fetch decides

async def check_url_async(url: str, policy: FetchPolicy) -> None:
    """check_url without blocking the event loop."""
    fetch = Fetch(url, policy)
    host, port = fetch.target()
    try:
        async with asyncio.timeout(fetch.remaining()):
            infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except TimeoutError as exc:
        raise _timeout_error(fetch, exc) from None
    except (OSError, UnicodeError) as exc:
        raise UnsafeURL(f"cannot resolve host of {url!r}: {exc}") from exc
    fetch.pin(_addresses(infos))


class AsyncFetcher:
    """GETs under a FetchPolicy with an async httpx client; one per app (create in lifespan, aclose after)."""

    def __init__(self, policy: FetchPolicy) -> None:
        self.policy = policy
        self.client = httpx.AsyncClient(follow_redirects=False, trust_env=False)

    async def aclose(self) -> None:
        await self.client.aclose()

    async def _hop(self, fetch: Fetch) -> tuple[str, int]:
        host, port = fetch.target()
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (OSError, UnicodeError) as exc:
            raise UnsafeURL(f"cannot resolve host of {fetch.url!r}: {exc}") from exc
        hops = fetch.pin(_addresses(infos))
        for n, hop in enumerate(hops, 1):
            try:
                async with self.client.stream("GET", hop.url, headers=hop.headers,
                                              extensions={**hop.extensions, "trace": fetch.on_trace_async},
                                              timeout=fetch.remaining()) as resp:
                    step = fetch.on_response(resp.status_code, resp.headers)
                    if step == "body":
                        async for chunk in resp.aiter_bytes():
                            fetch.take(chunk)
                    return step, resp.status_code
            except httpx.ConnectError:
                if n == len(hops):
                    raise
        raise AssertionError("unreachable: pin() returns at least one hop")

    async def _run(self, fetch: Fetch) -> tuple[int, bytes]:
        while True:
            try:
                async with asyncio.timeout(fetch.remaining()):  # the whole hop, DNS included
                    step, status = await self._hop(fetch)
            except TimeoutError as exc:
                raise _timeout_error(fetch, exc) from None
            except httpx.HTTPError as exc:
                raise _transport_error(fetch, exc) from None
            if step != "redirect":
                return status, fetch.body()

    async def get(self, url: str) -> bytes:
        """Body of `url`; raises FetchFailed (timeouts flagged, 204 flagged as no ad) or UnsafeURL."""
        return (await self._run(Fetch(url, self.policy)))[1]

    async def ping(self, url: str) -> int:
        """Fire a tracking pixel; returns the final HTTP status (redirects followed under the same rules)."""
        return (await self._run(Fetch(url, self.policy, read_body=False)))[0]

    async def resolve(self, url: str, first: bytes | None = None) -> Resolution:
        """Follow a VAST tag to playable ads (ads.vast.resolve under this policy's limits).

        The resolver parses each document when it is sent one, so it is driven from a worker thread: a
        large response costs CPU there, not in the event loop that answers every other request."""
        gen = self.policy.resolver(url, first)
        step = await asyncio.to_thread(_advance, gen, None)
        while isinstance(step, str):
            body: bytes | FetchFailed
            try:
                body = await self.get(step)
            except FetchFailed as exc:
                log.warning("upstream VAST %s: %s", step, exc)
                body = exc
            step = await asyncio.to_thread(_advance, gen, body)
        return step


def _advance(gen: Generator[str, bytes | FetchFailed, Resolution], body: bytes | FetchFailed | None,
             ) -> str | Resolution:
    """One step of the resolver: the next URL to fetch, or the Resolution it ended with (StopIteration may
    not cross a thread's future, so it is turned into a value here)."""
    try:
        return next(gen) if body is None else gen.send(body)
    except StopIteration as stop:
        return stop.value  # type: ignore[no-any-return]
