"""The SSRF guard and limits on outbound fetches (upstream VAST, tracking pings), against a real loopback
HTTP server."""

from __future__ import annotations

import asyncio

import pytest

from sidecast.ads.api.fetch import AsyncFetcher, FetchPolicy, UnsafeURL, check_url
from sidecast.ads.vast import FetchFailed
from tests.ads_fixtures import Route, ad_server


@pytest.mark.parametrize("url, needle", [
    ("file:///etc/passwd", "only http and https"),
    ("gopher://example.com/", "only http and https"),
    ("http://127.0.0.1/", "non-public address 127.0.0.1"),
    ("http://localhost:8080/", "non-public address"),
    ("http://10.1.2.3/", "non-public address 10.1.2.3"),
    ("http://169.254.169.254/latest/meta-data/", "non-public address 169.254.169.254"),
    ("http://[::1]/", "non-public address ::1"),
    ("http://[::ffff:127.0.0.1]/", "non-public address 127.0.0.1"),
    ("http://user:pw@example.com/", "credentials"),
    ("http:///nohost", "no host"),
])
def test_unsafe_urls_are_refused_with_a_reason(url: str, needle: str) -> None:
    with pytest.raises(UnsafeURL, match=needle.replace(".", r"\.").replace("[", r"\[")):
        check_url(url, FetchPolicy())


def test_loopback_is_fetched_only_when_explicitly_allowed() -> None:
    async def go(allow: bool, url: str) -> bytes:
        f = AsyncFetcher(FetchPolicy(allow_private=allow, timeout=1.0, max_bytes=4096))
        try:
            return await f.get(url)
        finally:
            await f.aclose()

    with ad_server() as srv:
        srv.routes["/big"] = Route(body=b"x" * 5000)
        srv.routes["/slow"] = Route(body=b"<VAST/>", delay=2.0)
        srv.routes["/hop"] = Route(status=302, body=b"")
        with pytest.raises(UnsafeURL, match="allow private upstreams explicitly"):
            asyncio.run(go(False, srv.vast("no_ads.xml")))
        assert srv.hits == []
        assert b"<VAST" in asyncio.run(go(True, srv.vast("no_ads.xml")))
        with pytest.raises(FetchFailed, match="over 4096 bytes"):
            asyncio.run(go(True, f"{srv.base}/big"))
        with pytest.raises(FetchFailed, match="timed out") as info:
            asyncio.run(go(True, f"{srv.base}/slow"))
        assert info.value.timeout
        with pytest.raises(FetchFailed, match="HTTP 404"):
            asyncio.run(go(True, f"{srv.base}/missing"))
