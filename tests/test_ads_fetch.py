"""One outbound fetch policy (ads.fetch) for both callers: the blocking transport (SSAI session router,
tools) and the async one (decisioning API) must apply the same rules, shown here against a real loopback
HTTP server that misbehaves the ways ad servers do (oversize bodies, redirect loops, 204, 500, slow
answers, trickled bodies), plus the SSRF guard and the rules themselves without I/O."""

from __future__ import annotations

import asyncio
import socket
import time
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sidecast.ads.fetch import (
    AsyncFetcher,
    Fetch,
    FetchPolicy,
    SyncFetcher,
    UnsafeURL,
    check_registration_url,
    check_url,
    check_url_syntax,
)
from sidecast.ads.vast import NO_ADS_AFTER_WRAPPER, WRAPPER_TIMEOUT, FetchFailed, Resolution
from tests.ads_fixtures import AdServer, Route, ad_server

TRANSPORTS = ("sync", "async")
LOOPBACK = FetchPolicy(allow_private=True, timeout=0.6, max_bytes=4096, max_redirects=3)


def call(kind: str, policy: FetchPolicy, op: str, url: str) -> Any:
    """`op` ("get", "ping" or "resolve") of `url` through one transport, as its callers use it."""
    if kind == "sync":
        with SyncFetcher(policy) as f:
            return getattr(f, op)(url)

    async def go() -> Any:
        f = AsyncFetcher(policy)
        try:
            return await getattr(f, op)(url)
        finally:
            await f.aclose()

    return asyncio.run(go())


def outcome(kind: str, policy: FetchPolicy, op: str, url: str) -> tuple[Any, ...]:
    """What a fetch came to, in a form both transports can be compared on."""
    try:
        return ("ok", call(kind, policy, op, url))
    except FetchFailed as exc:
        return (type(exc).__name__, str(exc), exc.timeout, exc.no_ad)


@pytest.fixture(scope="module")
def upstream() -> Any:
    with ad_server() as srv:
        big = b"<VAST>" + b"x" * 5000 + b"</VAST>"
        srv.routes.update({
            "/ok": Route(body=b"<VAST version='4.0'/>"),
            "/big": Route(body=big),
            "/big-unannounced": Route(body=big, length=False),
            "/empty": Route(status=204),
            "/boom": Route(status=500, body=b"oops", content_type="text/plain"),
            "/slow": Route(body=b"<VAST/>", delay=2.0),
            "/trickle": Route(body=b"<VAST>" + b" " * 1000 + b"</VAST>", trickle=0.1),
            "/loop-a": Route(status=302, headers={"Location": "/loop-b"}),
            "/loop-b": Route(status=307, headers={"Location": "/loop-a"}),
            "/no-location": Route(status=302),
            "/to-file": Route(status=301, headers={"Location": "file:///etc/passwd"}),
            "/hop1": Route(status=302, headers={"Location": "/hop2"}),
            "/hop2": Route(status=303, headers={"Location": "/ok"}),
            **{f"/chain{i}": Route(status=302, headers={"Location": f"/chain{i + 1}"}) for i in range(5)},
        })
        yield srv


@pytest.mark.parametrize(("path", "expected"), [
    ("/ok", ("ok", b"<VAST version='4.0'/>")),
    ("/hop1", ("ok", b"<VAST version='4.0'/>")),   # two redirects: within the limit of 3
    ("/big", ("FetchFailed", "is over 4096 bytes (Content-Length: 5013)", False, False)),
    ("/big-unannounced", ("FetchFailed", "is over 4096 bytes", False, False)),
    ("/empty", ("FetchFailed", "no ad from", False, True)),
    ("/boom", ("FetchFailed", "HTTP 500 from", False, False)),
    ("/missing", ("FetchFailed", "HTTP 404 from", False, False)),
    ("/no-location", ("FetchFailed", "HTTP 302 from", False, False)),
    ("/loop-a", ("FetchFailed", "redirect loop", False, False)),
    ("/chain0", ("FetchFailed", "too many redirects (over 3)", False, False)),
    ("/to-file", ("UnsafeURL", "only http and https", False, False)),
    ("/slow", ("FetchFailed", "timed out after 0.6 s", True, False)),
    ("/trickle", ("FetchFailed", "timed out after 0.6 s", True, False)),
])
def test_both_transports_apply_the_same_rules(upstream: AdServer, path: str, expected: tuple[Any, ...]) -> None:
    got = {}
    for kind in TRANSPORTS:
        started = time.monotonic()
        got[kind] = outcome(kind, LOOPBACK, "get", upstream.base + path)
        took = time.monotonic() - started
        # one budget for the whole fetch; the blocking client can only check it between reads
        assert took < 2 * LOOPBACK.timeout + 0.5, (kind, took)
    for kind, result in got.items():
        assert result[0] == expected[0], (kind, result)
        if result[0] == "ok":
            assert result == expected, kind
        else:
            assert expected[1] in result[1] and result[2:] == expected[2:], (kind, result)
    # not just alike: identical, message included
    assert got["sync"] == got["async"]


def test_pings_follow_redirects_under_the_same_rules_and_report_the_status(upstream: AdServer) -> None:
    for kind in TRANSPORTS:
        assert call(kind, LOOPBACK, "ping", upstream.base + "/hop1") == 200
        assert call(kind, LOOPBACK, "ping", upstream.base + "/t/impression") == 204
        assert call(kind, LOOPBACK, "ping", upstream.base + "/boom") == 500
        assert outcome(kind, LOOPBACK, "ping", upstream.base + "/loop-a")[1].startswith("redirect loop")


def test_a_failed_fetch_says_whether_its_request_went_out(upstream: AdServer) -> None:
    """A ping that timed out waiting for its answer, or whose redirects led nowhere, may have been counted
    by the tracker (`sent`: never send it again); one whose connection was refused reached nobody (safe to
    retry). The refused port is one we hold bound but not listening, so no other test can take it."""
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        refused = f"http://127.0.0.1:{closed.getsockname()[1]}/t/impression"
        for kind in TRANSPORTS:
            for url, sent in ((upstream.base + "/slow", True), (upstream.base + "/loop-a", True), (refused, False)):
                with pytest.raises(FetchFailed) as failed:
                    call(kind, LOOPBACK, "ping", url)
                assert failed.value.sent is sent, (kind, url, str(failed.value))


def test_the_connection_goes_to_the_checked_address_with_the_real_host_name(upstream: AdServer) -> None:
    """The request is made to the address that passed the check (no second lookup for DNS rebinding to
    exploit), with the URL's own name in Host; `localhost` may resolve to ::1 first, where nothing listens:
    the next checked address is tried."""
    for kind in TRANSPORTS:
        n = len(upstream.hosts)
        assert call(kind, LOOPBACK, "get", f"http://localhost:{upstream.port}/ok") == b"<VAST version='4.0'/>"
        assert upstream.hosts[n:] == [f"localhost:{upstream.port}"]


WRAPPER = """<VAST version="4.0"><Ad id="w"><Wrapper><AdSystem>loopback</AdSystem>
<Error><![CDATA[{base}/t/wrapper-error?code=[ERRORCODE]]]></Error>
<VASTAdTagURI><![CDATA[{base}{target}]]></VASTAdTagURI></Wrapper></Ad></VAST>"""


@pytest.mark.parametrize(("target", "code"), [
    ("/empty", NO_ADS_AFTER_WRAPPER),   # 204: "no ad" is an empty answer, not a broken ad server
    ("/boom", WRAPPER_TIMEOUT),
    ("/big", WRAPPER_TIMEOUT),
    ("/slow", WRAPPER_TIMEOUT),
    ("/loop-a", WRAPPER_TIMEOUT),
])
def test_both_resolvers_report_the_same_vast_errors(upstream: AdServer, target: str, code: int) -> None:
    upstream.routes[f"/wrap{target}"] = Route(body=WRAPPER.format(base=upstream.base, target=target).encode())
    results: list[Resolution] = [call(kind, LOOPBACK, "resolve", f"{upstream.base}/wrap{target}")
                                 for kind in TRANSPORTS]
    for res in results:
        assert res.ads == ()
        assert [(e.code, e.urls) for e in res.errors] == [
            (code, (f"{upstream.base}/t/wrapper-error?code=[ERRORCODE]",))], res.errors
    assert results[0] == results[1]


def test_wrapper_depth_comes_from_the_policy(upstream: AdServer) -> None:
    upstream.routes["/wrap-ok"] = Route(body=WRAPPER.format(base=upstream.base, target="/vast/inline_v4.xml").encode())
    for kind in TRANSPORTS:
        assert len(call(kind, LOOPBACK, "resolve", f"{upstream.base}/wrap-ok").ads) == 1
        shallow = FetchPolicy(allow_private=True, timeout=1.0, max_wrapper_depth=0)
        res = call(kind, shallow, "resolve", f"{upstream.base}/wrap-ok")
        assert res.ads == () and [e.code for e in res.errors] == [302]


# ---------------------------------------------------------------- the rules without I/O

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
    ("http://.t/vast", "not a valid host name"),             # an empty label: IDNA cannot encode it
    ("https://" + "a" * 64 + ".example/", "not a valid host name"),  # a label over 63 characters
])
def test_unsafe_urls_are_refused_with_a_reason(url: str, needle: str) -> None:
    with pytest.raises(UnsafeURL, match=needle.replace(".", r"\.").replace("[", r"\[")):
        check_url(url, FetchPolicy())


def test_private_upstreams_are_refused_before_any_request_unless_allowed(upstream: AdServer) -> None:
    n = len(upstream.hits)
    for kind in TRANSPORTS:
        result = outcome(kind, FetchPolicy(), "get", upstream.base + "/ok")
        assert result[0] == "UnsafeURL" and "allow private upstreams explicitly" in result[1]
    assert upstream.hits[n:] == []


def test_pinned_requests_keep_the_name_for_host_and_tls() -> None:
    fetch = Fetch("https://ads.example:8443/tag?x=1", FetchPolicy())
    assert fetch.target() == ("ads.example", 8443)
    (hop,) = fetch.pin(["93.184.215.14"])
    assert hop.url == "https://93.184.215.14:8443/tag?x=1"
    assert hop.headers["Host"] == "ads.example:8443" and hop.extensions == {"sni_hostname": "ads.example"}
    v6 = Fetch("http://ads.example/", FetchPolicy()).pin(["2606:2800:21f:cb07:6820:80da:af6b:8b2c"])
    assert v6[0].url == "http://[2606:2800:21f:cb07:6820:80da:af6b:8b2c]/" and v6[0].extensions == {}
    with pytest.raises(UnsafeURL, match="10.0.0.7"):  # one private address among public ones refuses all
        Fetch("http://ads.example/", FetchPolicy()).pin(["93.184.215.14", "10.0.0.7"])


def test_redirect_rules_without_io() -> None:
    fetch = Fetch("https://ads.example/a", FetchPolicy(max_redirects=2))
    assert fetch.on_response(302, {"location": "/b"}) == "redirect" and fetch.url == "https://ads.example/b"
    with pytest.raises(UnsafeURL, match="https down to http"):
        fetch.on_response(301, {"location": "http://ads.example/c"})
    assert fetch.on_response(200, {"content-length": "10"}) == "body"
    # every hop is checked again: a redirect to a private address is refused at its turn
    fetch = Fetch("http://ads.example/a", FetchPolicy())
    fetch.on_response(302, {"location": "http://10.0.0.1/admin"})
    with pytest.raises(UnsafeURL, match="non-public address 10.0.0.1"):
        fetch.pin(["10.0.0.1"])


def test_the_budget_covers_the_whole_fetch() -> None:
    now = [100.0]
    fetch = Fetch("http://ads.example/", FetchPolicy(timeout=2.0), clock=lambda: now[0])
    fetch.take(b"x" * 10)
    now[0] += 2.5
    with pytest.raises(FetchFailed, match="timed out after 2 s") as info:
        fetch.take(b"y")
    assert info.value.timeout


@settings(max_examples=300, deadline=None)
@given(host=st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=80))
def test_any_host_text_is_refused_with_unsafe_url_or_passes_never_crashes(host: str) -> None:
    """Found by the API's contract test: a host like ".t" raised UnicodeError from the resolver (a 500 at
    POST /v1/creatives). Every spelling of a host must end as UnsafeURL or pass the syntax check."""
    url = f"http://{host}/vast"
    try:
        check_url_syntax(url, FetchPolicy())
    except UnsafeURL:
        pass
    try:
        asyncio.run(check_registration_url(url, FetchPolicy(timeout=0.2)))
    except UnsafeURL:
        pass
    except FetchFailed:
        pass
