"""The control API over real HTTP (uvicorn on loopback): keys and scopes, streams, stream keys shown once,
malformed bodies (NaN, huge numbers, wrong types, chunked, not JSON), no CORS, truthful probes; and the
player port, which answers GET/HEAD of media and nothing else."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

import httpx
import pytest

from sidecast.core.server.push import Grant, Refusal
from tests.server_helpers import Running, running_server


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    with running_server(tmp_path_factory.mktemp("api") / "data") as running:
        yield running


def _key(srv: Running, *scopes: str) -> httpx.Client:
    r = srv.api.post("/v1/api-keys", json={"name": "t", "scopes": list(scopes)})
    assert r.status_code == 201, r.text
    return httpx.Client(base_url=str(srv.api.base_url), headers={"X-API-Key": r.json()["key"]})


def _raw(srv: Running, head: str, body: bytes) -> tuple[int, bytes]:
    """Send bytes as they are (for chunked and broken bodies); returns (status, response body)."""
    u = urlparse(str(srv.api.base_url))
    with socket.create_connection((u.hostname, u.port), timeout=10) as s:
        s.sendall(head.encode() + body)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
        headers, _, rest = data.partition(b"\r\n\r\n")
        length = next((int(ln.split(b":")[1]) for ln in headers.split(b"\r\n") if ln.lower().startswith(b"content-length")), 0)
        while len(rest) < length:
            chunk = s.recv(65536)
            if not chunk:
                break
            rest += chunk
    return int(headers.split(b" ")[1]), rest


# ------------------------------------------------------------------------------ keys and scopes

def test_every_v1_call_wants_a_key_with_the_right_scope(srv: Running) -> None:
    anon = httpx.Client(base_url=str(srv.api.base_url))
    r = anon.get("/v1/streams")
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
    assert "Bearer" in r.json()["detail"]
    assert anon.get("/v1/streams", headers={"Authorization": "Bearer sk_nope"}).status_code == 401
    reader = _key(srv, "streams:read")
    assert reader.get("/v1/streams").status_code == 200
    r = reader.post("/v1/streams", json={"ingest": "push"})
    assert r.status_code == 403 and "streams:write" in r.json()["detail"]
    assert reader.get("/v1/api-keys").status_code == 403
    listed = srv.api.get("/v1/api-keys").json()
    assert listed and all("key" not in k and k["prefix"].endswith("…") for k in listed)
    victim = next(k for k in listed if k["scopes"] == ["streams:read"])
    assert srv.api.delete(f"/v1/api-keys/{victim['id']}").status_code == 204
    assert reader.get("/v1/streams").status_code == 401, "a revoked key still works"
    me = next(k for k in srv.api.get("/v1/api-keys").json() if "admin" in k["scopes"])
    assert srv.api.delete(f"/v1/api-keys/{me['id']}").status_code == 409


def test_a_push_stream_key_is_shown_once_and_rotation_replaces_it(srv: Running) -> None:
    r = srv.api.post("/v1/streams", json={"id": "studio", "ingest": "push", "name": "Studio A"})
    assert r.status_code == 201, r.text
    body = r.json()
    key = body["key"]["key"]
    assert body["key"]["publish"]["rtmp"].endswith(f"/live/{key}")
    assert f"r={key}" in body["key"]["publish"]["srt"] and body["key"]["srt_passphrase"] in body["key"]["publish"]["srt"]
    shown = srv.api.get("/v1/streams/studio").json()
    assert key not in json.dumps(shown) and shown["key"]["prefix"] == key[:10] + "…"
    auth = srv.server.authority
    assert auth.authorize("rtmp", key, "1.2.3.4:5") == Grant("studio", None)
    new = srv.api.post("/v1/streams/studio/key").json()["key"]
    assert new != key
    assert auth.authorize("rtmp", key, "1.2.3.4:5") == Refusal("unknown stream key")
    assert auth.authorize("rtmp", new, "1.2.3.4:5") == Grant("studio", None)
    assert srv.api.post("/v1/streams", json={"id": "studio", "ingest": "push"}).status_code == 409


def test_streams_are_created_listed_changed_and_deleted(srv: Running) -> None:
    r = srv.api.post("/v1/streams", json={"id": "cam-7", "ingest": "pull", "source": "rtsp://127.0.0.1:9/none",
                                          "enabled": False, "options": {"ladder": "360p:500k", "segment_duration": 4},
                                          "settings": {"dvr_seconds": 120, "record": True}})
    assert r.status_code == 201, r.text
    assert "key" not in r.json()
    s = r.json()["stream"]
    assert s["options"] == {"ladder": "360p:500k", "segment_duration": 4.0}
    assert s["settings"]["dvr_seconds"] == 120 and s["urls"]["hls"].endswith("/cam-7/master.m3u8")
    listed = srv.api.get("/v1/streams", params={"limit": 1000}).json()
    assert "cam-7" in [x["id"] for x in listed["streams"]] and listed["total"] >= 1
    r = srv.api.patch("/v1/streams/cam-7", json={"options": {"ladder": "480p:900k"}})
    assert r.status_code == 200 and r.json()["revision"] == 2 and r.json()["options"] == {"ladder": "480p:900k"}
    r = srv.api.patch("/v1/streams/cam-7", json={"options": {"ladder": "480p"}})
    assert r.status_code == 422 and "bad ladder" in r.json()["detail"]
    r = srv.api.patch("/v1/streams/cam-7", json={"source": "ftp://x/y"})
    assert r.status_code == 422
    assert srv.api.get("/v1/streams/cam-7/status").json()["state"] == "stopped"
    assert srv.api.get("/v1/streams/cam-7/events").json() == []
    assert srv.api.delete("/v1/streams/cam-7").status_code == 204
    assert srv.api.get("/v1/streams/cam-7").status_code == 404
    assert srv.api.delete("/v1/streams/cam-7").status_code == 404
    r = srv.api.post("/v1/streams", json={"ingest": "push"})
    assert r.status_code == 201 and r.json()["stream"]["id"].startswith("s-")


# ------------------------------------------------------------------------------ bodies

@pytest.mark.parametrize("body, status, why", [
    (b'{"ingest": "push", "settings": {"dvr_seconds": NaN}}', 422, "NaN is not a number JSON allows"),
    (b'{"ingest": "push", "settings": {"dvr_seconds": Infinity}}', 422, "Infinity"),
    (b'{"ingest": "push", "settings": {"dvr_seconds": 1e400}}', 422, "too large"),
    (b'{"ingest": "push", "settings": {"memory_limit_mb": 123456789012345678901234567890}}', 422, "out of range"),
    (b'{"ingest": "push", "settings": {"memory_limit_mb": 9007199254740991}}', 422, "less than or equal"),
    (b'{"ingest": "push", "options": {"segment_duration": "2"}}', 422, "valid number"),
    (b'{"ingest": "push", "enabled": "yes"}', 422, "valid boolean"),
    (b'{"ingest": "push", "colour": "red"}', 422, "Extra inputs"),
    (b'{"ingest": "sideways"}', 422, "ingest"),
    (b'{"ingest": "push", "options": {"segment_duration": 0.1}}', 422, "greater than or equal to 0.5"),
    (b'{"ingest": "pu', 400, "not valid JSON"),
    (b'[1, 2]', 422, "valid dictionary"),
    (b'{}', 422, "ingest"),
])
def test_malformed_bodies_get_a_clear_4xx(srv: Running, body: bytes, status: int, why: str) -> None:
    r = srv.api.post("/v1/streams", content=body, headers={"Content-Type": "application/json"})
    assert r.status_code == status, r.text
    assert why in r.json()["detail"], r.json()
    assert "access-control-allow-origin" not in r.headers


def test_bodies_that_are_not_json_are_refused_before_anything_runs(srv: Running) -> None:
    before = srv.api.get("/v1/streams").json()["total"]
    for ctype in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", None):
        headers = {"Content-Type": ctype} if ctype else {}
        r = srv.api.post("/v1/streams", content=b'{"ingest": "push"}', headers=headers)
        assert r.status_code == 415, (ctype, r.text)
        assert "application/json" in r.json()["detail"]
    assert srv.api.get("/v1/streams").json()["total"] == before, "a non-JSON body created a stream"


def test_bodies_are_capped_whether_sized_or_chunked(srv: Running) -> None:
    big = json.dumps({"ingest": "push", "name": "x" * 70_000}).encode()
    r = srv.api.post("/v1/streams", content=big, headers={"Content-Type": "application/json"})
    assert r.status_code == 413
    auth = f"Authorization: Bearer {srv.server.admin_key}\r\n"
    head = (f"POST /v1/streams HTTP/1.1\r\nHost: x\r\n{auth}Content-Type: application/json\r\n"
            "Transfer-Encoding: chunked\r\n\r\n")
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(big[i:i + 8000]), big[i:i + 8000]) for i in range(0, len(big), 8000))
    status, body = _raw(srv, head, chunks + b"0\r\n\r\n")
    assert status == 413 and b"65536" in body
    ok = json.dumps({"id": "chunky", "ingest": "push"}).encode()
    status, body = _raw(srv, head, b"%x\r\n%s\r\n0\r\n\r\n" % (len(ok), ok))
    assert status == 201, body
    status, body = _raw(srv, head, b"zz\r\nnot a chunk\r\n0\r\n\r\n")
    assert status == 400


def test_the_control_port_never_sends_cors_and_refuses_preflights(srv: Running) -> None:
    r = srv.api.options("/v1/streams", headers={"Origin": "https://evil.example",
                                                "Access-Control-Request-Method": "POST"})
    assert r.status_code in (405, 404) and "access-control-allow-origin" not in r.headers
    r = srv.api.get("/v1/streams", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in r.headers


# ------------------------------------------------------------------------------ controls and probes

def test_live_controls_need_a_live_stream_and_valid_arguments(srv: Running) -> None:
    srv.api.post("/v1/streams", json={"id": "idle1", "ingest": "push"})
    r = srv.api.post("/v1/streams/idle1/breaks", json={"in": 4, "duration": 30})
    assert r.status_code == 409 and "idle" in r.json()["detail"]
    for bad, why in [({"duration": 601}, "less than or equal to 600"), ({"duration": 0}, "greater than 0"),
                     ({"at": -1}, "greater than or equal to 0"), ({"at": 10, "in": 4}, "not both"),
                     ({"in": "soon"}, "valid number")]:
        r = srv.api.post("/v1/streams/idle1/breaks", json=bad)
        assert r.status_code == 422 and why in r.json()["detail"], (bad, r.text)
    assert srv.api.post("/v1/streams/nope/breaks", json={}).status_code == 404
    assert srv.api.post("/v1/streams/idle1/vertical/keep-centered", json={"on": True}).status_code == 409


def test_probes_tell_the_truth(srv: Running) -> None:
    anon = httpx.Client(base_url=str(srv.api.base_url))
    assert anon.get("/healthz").status_code == 200
    r = anon.get("/readyz")
    assert r.status_code == 200 and r.json()["problems"] == []
    srv.api.post("/v1/streams", json={"id": "quiet", "ingest": "push"})
    r = anon.get("/healthz/streams/quiet")
    assert r.status_code == 503 and r.json()["state"] == "idle", "an idle channel is not on the air"
    assert anon.get("/healthz/streams/ghost").status_code == 404


def test_webhook_endpoints_show_their_secret_once(srv: Running) -> None:
    r = srv.api.post("/v1/webhooks", json={"url": "http://127.0.0.1:9/hook", "events": ["stream.started"]})
    assert r.status_code == 201 and r.json()["secret"].startswith("whsec_")
    listed = srv.api.get("/v1/webhooks").json()
    assert all("secret" not in h for h in listed)
    assert srv.api.post("/v1/webhooks", json={"url": "javascript:alert(1)"}).status_code == 422
    assert srv.api.post("/v1/webhooks", json={"url": "http://x/y", "events": ["stream.exploded"]}).status_code == 422
    assert srv.api.delete(f"/v1/webhooks/{r.json()['id']}").status_code == 204
    assert srv.api.get("/v1/webhooks/deliveries").status_code == 200


def test_the_openapi_document_derives_stream_options_from_run_options(srv: Running) -> None:
    doc = httpx.get(str(srv.api.base_url) + "openapi.json").json()
    assert "/v1/streams" in doc["paths"] and "/v1/streams/{stream_id}/breaks" in doc["paths"]
    opts = doc["components"]["schemas"]["StreamOptions"]["properties"]
    assert {"ladder", "segment_duration", "sidecars", "captions_language", "decision_window"} <= set(opts)
    assert "outdir" not in opts and "stream_keys" not in opts


def test_the_player_port_serves_media_reads_only(srv: Running) -> None:
    srv.api.post("/v1/streams", json={"id": "pp", "ingest": "push"})
    srv.server.storage.put_bytes("pp/master.m3u8", b"#EXTM3U\n")
    r = srv.media("pp/master.m3u8")
    assert r.status_code == 200 and r.headers["access-control-allow-origin"] == "*"
    assert httpx.head(srv.media_url + "pp/master.m3u8").status_code == 200
    for method in ("POST", "PUT", "DELETE", "PATCH"):
        r = httpx.request(method, srv.media_url + "pp/master.m3u8", content=b"{}")
        assert r.status_code == 405, method
    assert httpx.get(srv.media_url + "v1/streams").status_code == 404
    assert httpx.get(srv.media_url + "healthz").status_code == 200
    assert httpx.get(srv.media_url + "pp/../registry.db").status_code in (400, 404)


def test_data_left_by_the_first_start(srv: Running) -> None:
    key_file = Path(srv.server.data_dir) / "admin-key"
    assert key_file.read_text().strip() == srv.server.admin_key
    assert oct(key_file.stat().st_mode & 0o777) == "0o600"
