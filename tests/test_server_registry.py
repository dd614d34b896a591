"""The registry and the server's secrets: keys stored hashed and shown once, scopes, playback tokens,
SRT passphrases, the publish authority, events and the webhook delivery log."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sidecast.core.server import keys as K
from sidecast.core.server.push import Grant, Refusal, RegistryAuthority, key_fingerprint, parse_srt_streamid
from sidecast.core.server.registry import Conflict, NotFound, Registry


@pytest.fixture
def reg(tmp_path: Path) -> Registry:
    r = Registry(tmp_path / "registry.db")
    yield r
    r.close()


def _dump(path: Path) -> bytes:
    """Every byte the registry keeps (the database and its write-ahead log)."""
    return b"".join(p.read_bytes() for p in path.parent.glob(path.name + "*"))


def test_stream_keys_are_stored_hashed_and_only_the_newest_works(reg: Registry, tmp_path: Path) -> None:
    reg.create_stream("cam1", ingest="push")
    first = reg.rotate_stream_key("cam1")
    assert first.startswith(K.STREAM_KEY_PREFIX) and len(first) > 30
    assert reg.stream_for_key(first).id == "cam1"
    second = reg.rotate_stream_key("cam1")
    assert reg.stream_for_key(first) is None, "a rotated key must stop working at once"
    assert reg.stream_for_key(second).id == "cam1"
    raw = _dump(tmp_path / "registry.db")
    assert first.encode() not in raw and second.encode() not in raw, "a stream key was stored in clear"
    assert K.hash_token(second).encode() in raw
    assert reg.get_stream("cam1").key_prefix == K.display_prefix(second)
    assert oct((tmp_path / "registry.db").stat().st_mode & 0o777) == "0o600"


def test_api_keys_are_hashed_and_scoped(reg: Registry, tmp_path: Path) -> None:
    token, row = reg.create_api_key("ops", ["streams:read", "streams:control"])
    assert token.encode() not in _dump(tmp_path / "registry.db")
    who = reg.authenticate(token)
    assert who is not None and who.id == row.id
    assert who.allows("streams:read") and who.allows("streams:control")
    assert not who.allows("streams:write") and not who.allows("admin")
    assert reg.authenticate(token + "x") is None
    admin, _ = reg.create_api_key("root", ["admin"])
    assert reg.authenticate(admin).allows("webhooks")
    with pytest.raises(ValueError, match="unknown scope"):
        reg.create_api_key("bad", ["streams:everything"])
    with pytest.raises(Conflict):
        reg.create_api_key("again", ["admin"], token=admin)


def test_stream_rows_round_trip_and_conflict(reg: Registry) -> None:
    row = reg.create_stream("a", ingest="pull", source="rtsp://cam/1", options={"ladder": "360p:500k"},
                            settings={"record": True})
    assert (row.options, row.settings, row.revision) == ({"ladder": "360p:500k"}, {"record": True}, 1)
    with pytest.raises(Conflict):
        reg.create_stream("a", ingest="push")
    row = reg.update_stream("a", options={"ladder": "480p:900k"}, enabled=False)
    assert row.revision == 2 and not row.enabled and row.options == {"ladder": "480p:900k"}
    with pytest.raises(sqlite3.IntegrityError):
        reg.create_stream("b", ingest="sideways")
    reg.delete_stream("a")
    with pytest.raises(NotFound):
        reg.get_stream("a")


def test_events_carry_their_purge_time_and_bytes(reg: Registry) -> None:
    reg.create_stream("s", ingest="push")
    reg.open_event("s", "e1", recording=True)
    assert [e.id for e in reg.open_events()] == ["e1"]
    reg.event_live("s", "e1")
    reg.close_event("s", "e1", segments=12, size=3_000_000, purge_after=100.0, recording_ready=True)
    ev = reg.get_event("s", "e1")
    assert ev.ended_at and ev.live_at and ev.recording_ready_at and ev.segments == 12
    assert reg.open_events() == []
    assert reg.stored_bytes("s") == 3_000_000
    assert [e.id for e in reg.due_purges(99.0)] == []
    assert [e.id for e in reg.due_purges(100.0)] == ["e1"]
    reg.event_purged("s", "e1")
    assert reg.due_purges(1e12) == [] and reg.stored_bytes("s") == 0


def test_deliveries_go_to_subscribed_endpoints_only(reg: Registry) -> None:
    a = reg.create_webhook("http://127.0.0.1:9/a", ["stream.started"])
    b = reg.create_webhook("http://127.0.0.1:9/b", ["*"])
    assert a.secret.startswith("whsec_") and a.secret != b.secret
    assert reg.enqueue_deliveries("evt_1", "stream.ended", "s", "{}") == 1
    assert reg.enqueue_deliveries("evt_2", "stream.started", "s", "{}") == 2
    due = reg.due_deliveries(1e12)
    assert sorted((d.webhook_id, d.type) for d in due) == sorted(
        [(b.id, "stream.ended"), (a.id, "stream.started"), (b.id, "stream.started")])
    reg.record_attempt(due[0].id, status="failed", http_status=500, error="HTTP 500", next_at=None)
    assert reg.list_deliveries(10)[-1].status in ("pending", "failed")


# ------------------------------------------------------------------------------ playback tokens

SECRET = b"s" * 32


def test_playback_tokens_expire_and_are_bound_to_their_stream() -> None:
    tok = K.sign_playback(SECRET, "cam1", 60, now=1000.0)
    K.check_playback(SECRET, "cam1", tok.token, now=1059.0)
    with pytest.raises(K.TokenError, match="expired"):
        K.check_playback(SECRET, "cam1", tok.token, now=1061.0)
    with pytest.raises(K.TokenError, match="not valid"):
        K.check_playback(SECRET, "cam2", tok.token, now=1000.0)
    with pytest.raises(K.TokenError, match="not valid"):
        K.check_playback(b"o" * 32, "cam1", tok.token, now=1000.0)
    later = tok.token.replace(tok.token.split(".")[0], str(int(tok.expires_at) + 3600), 1)
    with pytest.raises(K.TokenError, match="not valid"):   # a longer expiry is a forgery
        K.check_playback(SECRET, "cam1", later, now=1000.0)
    with pytest.raises(ValueError):
        K.sign_playback(SECRET, "cam1", float("nan"))


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=80))
def test_hostile_tokens_are_refused_cleanly(token: str) -> None:
    with pytest.raises(K.TokenError):
        K.check_playback(SECRET, "cam1", token, now=0.0)


# ------------------------------------------------------------------------------ publish authority

def test_the_authority_grants_by_key_and_refuses_without_echoing_it(reg: Registry,
                                                                    caplog: pytest.LogCaptureFixture) -> None:
    reg.create_stream("cam1", ingest="push")
    key = reg.rotate_stream_key("cam1")
    reg.create_stream("pull1", ingest="pull", source="rtsp://x/y")
    auth = RegistryAuthority(reg)
    assert auth.authorize("rtmp", key, "10.0.0.1:1234") == Grant("cam1", None)
    assert auth.authorize("rtmp", key + "?token=abc", "10.0.0.1:1234") == Grant("cam1", None)
    srt = auth.authorize("srt", f"#!::r={key},m=publish", "10.0.0.1:1234")
    assert isinstance(srt, Grant) and srt.passphrase == K.srt_passphrase(reg.secret, key)
    assert 10 <= len(srt.passphrase) <= 79
    assert auth.authorize("srt", key, "10.0.0.1:1") == srt       # the plain-key streamid form
    wrong = "live_" + "x" * 32
    with caplog.at_level("WARNING"):
        assert auth.authorize("rtmp", wrong, "10.0.0.2:1") == Refusal("unknown stream key")
    logged = [str(v) for r in caplog.records for v in r.__dict__.values()]
    assert not any(wrong in v for v in logged), "a refused key was logged in clear"
    assert key_fingerprint(wrong) in logged
    assert isinstance(auth.authorize("rtmp", "", "p"), Refusal)
    assert isinstance(auth.authorize("rtmp", "k" * 5000, "p"), Refusal)
    reg.update_stream("cam1", enabled=False)
    assert auth.authorize("rtmp", key, "p") == Refusal("this stream is stopped")
    busy = RegistryAuthority(reg, can_publish=lambda sid: "another publisher is live on this stream")
    reg.update_stream("cam1", enabled=True)
    assert busy.authorize("rtmp", key, "p") == Refusal("another publisher is live on this stream")


def test_srt_streamid_forms() -> None:
    assert parse_srt_streamid("#!::r=live_abc,m=publish") == "live_abc"
    assert parse_srt_streamid("#!::m=publish,r=live_abc") == "live_abc"
    assert parse_srt_streamid("live_abc") == "live_abc"
    assert parse_srt_streamid("#!::m=publish") == ""
