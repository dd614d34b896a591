"""What makes a decision cheap must not change any answer: POST /v1/decisions answers a plain request
directly (ads/api/routes/decisions.py, DecisionRoute) exactly as FastAPI's full handler answers it, the
memoised pod (build_pod) is the optimal pod, and the server's HTTP protocol (ads/api/http.py) sends each
response's head and body in one write without losing or reordering a byte. Real server process on loopback.
"""

from __future__ import annotations

import itertools
import json
import socket
from collections.abc import Iterator

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sidecast.ads.api.decide import LOWEST_PRIORITY, TOP_PRIORITY, Candidate, build_pod
from tests.ads_fixtures import API_KEY, cli_api

PLAIN = "application/json"
FULL = "application/json; charset=utf-8"  # the same body to FastAPI, but never taken by the direct path


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Iterator[str]:
    """`sidecast ads serve` as its own process (the production protocol), with a small catalog."""
    tmp = tmp_path_factory.mktemp("fastpath")
    with cli_api(tmp / "a.db") as (url, _), httpx.Client(base_url=url, headers={"X-API-Key": API_KEY}) as c:
        for i, d in enumerate((10, 15, 20, 30)):
            c.post("/v1/creatives", json={"id": f"cr{i}", "media_url": f"https://cdn.example/{i}.m3u8",
                                          "duration": d}).raise_for_status()
        c.post("/v1/campaigns", json={"id": "a", "creative_ids": ["cr0", "cr1"], "advertiser": "A"}).raise_for_status()
        c.post("/v1/campaigns", json={"id": "b", "creative_ids": ["cr2", "cr3"], "advertiser": "B",
                                      "targeting": {"genre": ["sports"]}}).raise_for_status()
        yield url


def post(base: str, content_type: str | None, body: bytes, query: str = "", key: bool = True) -> httpx.Response:
    headers = {"X-API-Key": API_KEY} if key else {}
    if content_type is not None:
        headers["Content-Type"] = content_type
    return httpx.post(f"{base}/v1/decisions{query}", content=body, headers=headers)


def ok(session: str, **extra: object) -> bytes:
    return json.dumps({"session_id": session, "duration": 30, "key_values": {"genre": "sports"}, **extra}).encode()


# (query, body, the status FastAPI gives): refusals the direct path must leave to FastAPI, word for word
REFUSED = [
    ("?foo=1", ok("q1"), 422),                                   # unknown query parameter
    ("?token=a&token=b", ok("q2"), 401),                         # a second token
    ("?token=" + "x" * 2049, ok("q3"), 422),                     # token over its max_length
    ("?token=not-a-token", ok("q4"), 401),                       # a token that does not verify
    ("", b"{not json", 422),
    ("", b"[" * 50_000, 400),                                    # nested too deep to parse
    ("", b"\xff\xfe{}", 422),                                    # not UTF-8 (a UTF-16 mark)
    ("", b"", 422),
    ("", b"[]", 422),
    ("", json.dumps({"session_id": "s", "duration": -1}).encode(), 422),
    ("", json.dumps({"session_id": "s", "duration": 30, "bogus": 1}).encode(), 422),
    ("", json.dumps({"session_id": "../x", "duration": 30}).encode(), 422),
    ("", json.dumps({"session_id": "s", "duration": 30, "max_ads": 0}).encode(), 422),
]


@pytest.mark.parametrize(("query", "body", "status"), REFUSED, ids=lambda v: str(v)[:24])
def test_a_refused_request_gets_fastapis_answer_on_either_path(base: str, query: str, body: bytes, status: int) -> None:
    direct, full = post(base, PLAIN, body, query), post(base, FULL, body, query)
    assert direct.status_code == full.status_code == status, (direct.text, full.text)
    assert direct.json() == full.json()
    assert direct.headers.get("www-authenticate") == full.headers.get("www-authenticate")


def test_a_body_without_a_json_content_type_is_refused_as_before(base: str) -> None:
    for content_type in (None, "text/plain"):
        r = post(base, content_type, ok("ct"))
        assert r.status_code == 422, r.text


def strip(doc: dict[str, object]) -> str:
    """A decision without what differs between two calls of the same break (signed URLs carry an expiry)."""
    text = json.dumps(doc, sort_keys=True)
    for part in text.split("token=")[1:]:
        text = text.replace(part.split('"')[0].split("&")[0], "T")
    return text


def test_a_plain_request_is_decided_as_by_the_full_handler(base: str) -> None:
    # one break decided on the direct path, asked again on FastAPI's path: the same recorded decision
    first = post(base, PLAIN, ok("viewer-1", break_id="b1"))
    again = post(base, FULL, ok("viewer-1", break_id="b1"))
    assert first.status_code == again.status_code == 200
    assert strip(first.json()) == strip(again.json())
    # and the other way round
    first = post(base, FULL, ok("viewer-2", break_id="b1"))
    again = post(base, PLAIN, ok("viewer-2", break_id="b1"))
    assert strip(first.json()) == strip(again.json())
    doc = first.json()
    assert [a["creative_id"] for a in doc["ads"]] and doc["duration"] <= 30
    # new decisions on both paths fill the break alike (sports: campaign b is eligible)
    a, b = post(base, PLAIN, ok("viewer-3")).json(), post(base, FULL, ok("viewer-4")).json()
    assert [x["creative_id"] for x in a["ads"]] == [x["creative_id"] for x in b["ads"]]
    assert a["duration"] == b["duration"] == 30


def test_a_player_token_works_on_the_direct_path(base: str) -> None:
    tok = httpx.post(f"{base}/v1/tokens", json={"session_id": "viewer-5"}, headers={"X-API-Key": API_KEY}).json()["token"]
    r = post(base, PLAIN, ok("viewer-5"), f"?token={tok}", key=False)
    assert r.status_code == 200, r.text
    other = post(base, PLAIN, ok("someone-else"), f"?token={tok}", key=False)
    assert other.status_code == 403 and other.json() == post(base, FULL, ok("someone-else"), f"?token={tok}", key=False).json()
    assert post(base, PLAIN, ok("viewer-5"), key=False).status_code == 401


# ---------------------------------------------------------------- one write per response, bytes unchanged

def exchange(base: str, raw: bytes) -> tuple[socket.socket, bytes]:
    host, port = base.removeprefix("http://").split(":")
    s = socket.create_connection((host, int(port)), timeout=10)
    s.sendall(raw)
    return s, s.recv(1 << 20)


def complete(response: bytes) -> bool:
    head, _, body = response.partition(b"\r\n\r\n")
    length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length"))
    return len(body) == length


def test_a_response_arrives_in_one_piece(base: str) -> None:
    # uvicorn alone writes the head and the body separately: a first recv() would usually get the head alone
    body = ok("viewer-6")
    request = (f"POST /v1/decisions HTTP/1.1\r\nHost: t\r\nX-API-Key: {API_KEY}\r\nContent-Type: application/json\r\n"
               f"Content-Length: {len(body)}\r\n\r\n").encode() + body
    for raw in (b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n", request):
        for _ in range(20):
            s, got = exchange(base, raw)
            s.close()
            assert got.startswith(b"HTTP/1.1 200") and complete(got), got[:200]


def test_head_requests_and_pipelined_requests_are_answered_in_order(base: str) -> None:
    # HEAD: uvicorn writes the head and no body, so the held head leaves at the end of the loop's pass
    s, got = exchange(base, b"HEAD /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
    s.close()
    assert got.startswith(b"HTTP/1.1 405") and b"content-length: 31\r\n" in got and got.endswith(b"\r\n\r\n")
    s, got = exchange(base, b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\nGET /nowhere HTTP/1.1\r\nHost: t\r\n\r\n"
                            b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    with s:
        while not got.endswith(b"}") or got.count(b"HTTP/1.1 ") < 3:
            more = s.recv(1 << 20)
            if not more:
                break
            got += more
    statuses = [part[:3] for part in got.split(b"HTTP/1.1 ")[1:]]
    assert statuses == [b"200", b"404", b"200"], got


def test_a_large_response_streams_whole(base: str) -> None:
    # an OpenAPI document is larger than what the protocol holds back: it must arrive whole and valid
    r = httpx.get(f"{base}/openapi.json")
    assert r.status_code == 200 and len(r.content) > 16 * 1024
    assert "/v1/decisions" in r.json()["paths"]


# ---------------------------------------------------------------- the memoised pod is still the best pod

def brute_best(cands: list[Candidate], duration: float) -> tuple[int, float]:
    """(filled ms, score) of the best pod by trying every subset: the knapsack's target."""
    cap = int(round(duration * 1000))
    best = (0, 0.0)
    for k in range(1, len(cands) + 1):
        for combo in itertools.combinations(cands, k):
            names = [c.advertiser.strip().lower() for c in combo if c.advertiser.strip()]
            if len(names) != len(set(names)):
                continue
            fill = sum(max(1, int(round(c.duration * 1000))) for c in combo)
            score = sum(4.0 ** (LOWEST_PRIORITY - min(max(c.priority, TOP_PRIORITY), LOWEST_PRIORITY)) for c in combo)
            if fill <= cap and (fill, score) > best:
                best = (fill, score)
    return best


candidate = st.builds(
    lambda i, d, adv, prio, seq: Candidate(creative_id=f"c{i}", line_id="l", advertiser=adv, duration=d,
                                           priority=prio, uri="https://cdn/x.m3u8", sequence=seq),
    st.integers(0, 99), st.sampled_from([5, 10, 15, 15, 20, 30]), st.sampled_from(["", "A", "a ", "B"]),
    st.integers(1, 10), st.none() | st.integers(1, 3))


@settings(max_examples=300, deadline=None)
@given(st.lists(candidate, max_size=7), st.sampled_from([15, 30, 45, 60]), st.sampled_from([1, 2, 3, 8]))
def test_the_memoised_pod_is_the_best_pod(cands: list[Candidate], duration: float, max_ads: int) -> None:
    # few distinct shapes: most calls hit the memo, with other candidates of the same shape
    pod = build_pod(cands, duration, max_ads)
    assert all(any(p is c for c in cands) for p in pod) and len(pod) <= max_ads
    names = [c.advertiser.strip().lower() for c in pod if c.advertiser.strip()]
    assert len(names) == len(set(names))
    fill = sum(max(1, int(round(c.duration * 1000))) for c in pod)
    score = sum(4.0 ** (LOWEST_PRIORITY - min(max(c.priority, TOP_PRIORITY), LOWEST_PRIORITY)) for c in pod)
    if max_ads >= len(cands):  # (with fewer slots than candidates the knapsack is a heuristic, as before)
        assert (fill, score) == brute_best(cands, duration)
    order = [(c.priority, c.sequence is None, c.sequence or 0, next(i for i, x in enumerate(cands) if x is c)) for c in pod]
    assert order == sorted(order)
