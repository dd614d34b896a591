"""Republishing (core/server/publish.py): attempts and events become one stream's playlists whose past never
changes, whose segment names never repeat, and whose retention follows the window or the recording.

The attempts here are HLS folders written by the core's own playlist writer (``LivePlaylist``) with small
segment files, as the pipeline writes them; tests/test_server_streams.py runs the real pipeline."""

from __future__ import annotations

import posixpath
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sidecast.core.server.publish import Publisher, PublishPlan, finalize_event, resolve_uri
from sidecast.core.server.storage import LocalStorage
from sidecast.hls import MasterPlaylist, Rendition, Segment, Variant, parse_master, parse_media
from sidecast.hls.live import LivePlaylist, atomic_write

RENDITIONS = ("video/360p/index.m3u8", "audio/index.m3u8", "subs/en/index.m3u8")


class Attempt:
    """One attempt's output folder, grown segment by segment like the pipeline grows it."""

    def __init__(self, root: Path, event: str, attempt: int, window: int = 6) -> None:
        self.dir = root / "work" / event / f"r{attempt}"
        self.playlists = {rel: LivePlaylist(self.dir / rel, 2.0, window) for rel in RENDITIONS}
        self.index = 0
        self.t0 = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(hours=attempt)
        master = MasterPlaylist(
            [Variant.of("video/360p/index.m3u8", bandwidth=900_000, resolution=(640, 360), audio="aud",
                        subtitles="subs")],
            [Rendition.of("AUDIO", "aud", "Main", "audio/index.m3u8"),
             Rendition.of("SUBTITLES", "subs", "English", "subs/en/index.m3u8", language="en")], version=4)
        atomic_write(self.dir / "master.m3u8", master.dumps())

    def segment(self, payload: bytes = b"x" * 1000) -> None:
        for rel, pl in self.playlists.items():
            ext = ".vtt" if rel.startswith("subs") else ".ts"
            name = f"seg_{self.index:06d}{ext}"
            (self.dir / posixpath.dirname(rel)).mkdir(parents=True, exist_ok=True)
            (self.dir / posixpath.dirname(rel) / name).write_bytes(payload)
            pl.add(Segment(uri=name, duration=2.0, program_date_time=self.t0 + timedelta(seconds=2 * self.index)))
        self.index += 1


class Clock:
    def __init__(self) -> None:
        self.t = 1_000_000.0

    def __call__(self) -> float:
        return self.t


def publisher(tmp_path: Path, storage: LocalStorage, event: str, attempt: int, *, window: int = 4,
              record: bool = False, clock: Clock | None = None) -> tuple[Attempt, Publisher]:
    a = Attempt(tmp_path, event, attempt)
    plan = PublishPlan("cam", event, attempt, 2.0, window, record)
    p = Publisher(storage, tmp_path / "state" / "cam", a.dir, plan, clock=clock or Clock())
    return a, p


class Killed(BaseException):
    """The worker's SIGKILL at one exact point of a sync (not an error the publisher handles)."""


class DyingStorage(LocalStorage):
    """Local storage whose writer dies right after storing ``die_after`` (once, when set): the moment a worker
    whose fleet lease ran out (or the watchdog, or the OOM killer) can be killed between writing the stream's
    playlist to storage and writing its local copy."""

    die_after: str | None = None

    def put_bytes(self, key: str, data: bytes) -> None:
        super().put_bytes(key, data)
        if key == self.die_after:
            self.die_after = None
            raise Killed(key)


VIDEO = "cam/video/360p/index.m3u8"


def by_sequence(pl) -> dict[int, str]:
    return {pl.media_sequence + i: resolve_uri(s.uri, VIDEO) for i, s in enumerate(pl.segments)}


def read(storage: LocalStorage, key: str):
    data = storage.get(key)
    assert data is not None, f"{key} is missing"
    return parse_media(data.decode())


def test_attempts_of_one_event_continue_after_a_discontinuity(tmp_path: Path) -> None:
    st = LocalStorage(tmp_path / "media")
    a1, p1 = publisher(tmp_path, st, "ev1", 1)
    for _ in range(3):
        a1.segment()
        p1.sync()
    a2, p2 = publisher(tmp_path, st, "ev1", 2)      # a new process after a crash
    for _ in range(2):
        a2.segment()
        p2.sync()
    pl = read(st, "cam/video/360p/index.m3u8")
    assert pl.media_sequence == 1 and len(pl.segments) == 4            # window of 4, 5 published
    assert [s.discontinuity for s in pl.segments] == [False, False, True, False]
    uris = [resolve_uri(s.uri, "cam/video/360p/index.m3u8") for s in pl.segments]
    assert uris[1:] == ["cam/e/ev1/r1/video/360p/seg_000002.ts", "cam/e/ev1/r2/video/360p/seg_000000.ts",
                        "cam/e/ev1/r2/video/360p/seg_000001.ts"]
    assert all(st.get(u) is not None for u in uris)
    subs = read(st, "cam/subs/en/index.m3u8")
    assert [s.discontinuity for s in subs.segments] == [False, False, True, False]
    assert parse_master(st.get("cam/master.m3u8").decode()).media_uris() == [
        "audio/index.m3u8", "subs/en/index.m3u8", "video/360p/index.m3u8"]
    assert not (a1.dir / "video/360p/seg_000000.ts").exists(), "published segments leave the scratch folder"


def test_a_new_event_never_reuses_a_name_and_keeps_sequence_numbers_growing(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "media")
    a1, p1 = publisher(tmp_path, storage, "ev1", 1)
    for _ in range(5):
        a1.segment()
        p1.sync()
    before = read(storage, "cam/video/360p/index.m3u8")
    finalize_event(storage, tmp_path / "state" / "cam", "cam", "ev1", record=False, segment_duration=2.0)
    assert read(storage, "cam/video/360p/index.m3u8").endlist
    a2, p2 = publisher(tmp_path, storage, "ev2", 1)
    a2.segment()
    p2.sync()
    after = read(storage, "cam/video/360p/index.m3u8")
    assert not after.endlist
    assert after.media_sequence == before.media_sequence + len(before.segments)
    assert after.discontinuity_sequence == before.discontinuity_sequence + 1
    assert [s.discontinuity for s in after.segments] == [False]
    assert resolve_uri(after.segments[0].uri, "cam/video/360p/index.m3u8").startswith("cam/e/ev2/r1/")


def killed_at_the_playlist_write(tmp_path: Path, storage: DyingStorage, published: int) -> Publisher:
    """Attempt 1 of event ev1 publishes ``published`` segments, then its worker is killed right after the
    next segment's playlist is stored, before the local copy is written."""
    a, p = publisher(tmp_path, storage, "ev1", 1)
    for _ in range(published):
        a.segment()
        p.sync()
    a.segment()
    storage.die_after = VIDEO
    with pytest.raises(Killed):
        p.sync()
    return p


def test_a_worker_killed_between_the_stored_and_the_local_playlist_never_reuses_a_sequence_number(
        tmp_path: Path) -> None:
    # a fleet test once saw sequence 8 name .../r1/seg_000008.ts, then .../r2/seg_000000.ts: the next attempt
    # continued from the local copy, one segment behind what players had already been given
    storage = DyingStorage(tmp_path / "media")
    killed_at_the_playlist_write(tmp_path, storage, 3)
    seen = by_sequence(read(storage, VIDEO))
    assert seen[3] == "cam/e/ev1/r1/video/360p/seg_000003.ts", "players were given sequence 3"
    a2, p2 = publisher(tmp_path, storage, "ev1", 2)     # the restart (same replica, same state folder)
    a2.segment()
    p2.sync()
    pl = read(storage, VIDEO)
    now = by_sequence(pl)
    assert {k: v for k, v in now.items() if k in seen} == {k: v for k, v in seen.items() if k in now}
    assert now[4] == "cam/e/ev1/r2/video/360p/seg_000000.ts" and pl.segments[-1].discontinuity
    assert pl.discontinuity_sequence == 0


def test_a_segment_counts_as_published_only_once_the_playlist_that_lists_it_is_stored(tmp_path: Path) -> None:
    # the worker reports the attempt live on the first published segment; a loaded run counted it before the
    # playlist write, and a client told "live" read the ended event's playlist
    storage = DyingStorage(tmp_path / "media")
    p = killed_at_the_playlist_write(tmp_path, storage, 0)
    assert p.published_segments == 0 and p.last_published_at is None
    a2, p2 = publisher(tmp_path, storage, "ev1", 2)     # the next attempt: counted once its playlist is out
    a2.segment()
    p2.sync()
    assert p2.published_segments == 1 and p2.last_published_at is not None
    assert by_sequence(read(storage, VIDEO))[1] == "cam/e/ev1/r2/video/360p/seg_000000.ts", "sequence 0 was seen"


def test_an_event_ended_after_a_killed_worker_keeps_the_segment_players_saw(tmp_path: Path) -> None:
    storage = DyingStorage(tmp_path / "media")
    killed_at_the_playlist_write(tmp_path, storage, 2)
    seen = by_sequence(read(storage, VIDEO))
    finalize_event(storage, tmp_path / "state" / "cam", "cam", "ev1", record=False, segment_duration=2.0)
    end = read(storage, VIDEO)
    assert end.endlist
    assert by_sequence(end) == seen, "ENDLIST went on the local copy, a segment behind"
    a2, p2 = publisher(tmp_path, storage, "ev2", 1)
    a2.segment()
    p2.sync()
    assert read(storage, VIDEO).media_sequence == max(seen) + 1


def test_segments_leaving_the_window_are_deleted_after_the_grace_period(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "media")
    clock = Clock()
    a, p = publisher(tmp_path, storage, "ev1", 1, window=2, clock=clock)
    for _ in range(4):
        a.segment()
        p.sync()
    gone = "cam/e/ev1/r1/video/360p/seg_000000.ts"
    assert storage.get(gone) is not None, "deleted before the grace period"
    clock.t += p.plan.grace_seconds + 0.1
    a.segment()
    p.sync()
    assert storage.get(gone) is None
    assert storage.get("cam/e/ev1/r1/subs/en/seg_000000.vtt") is None
    live = read(storage, "cam/video/360p/index.m3u8")
    assert all(storage.get(resolve_uri(s.uri, "cam/video/360p/index.m3u8")) for s in live.segments)
    assert p.state.event_bytes == sum(1000 for _ in range(5 * 3)) - 2 * 3 * 1000


def test_a_recorded_event_keeps_every_segment_and_gets_a_vod_archive(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "media")
    clock = Clock()
    a1, p1 = publisher(tmp_path, storage, "ev1", 1, window=2, record=True, clock=clock)
    for _ in range(4):
        a1.segment()
        p1.sync()
    a2, p2 = publisher(tmp_path, storage, "ev1", 2, window=2, record=True, clock=clock)
    for _ in range(3):
        a2.segment()
        clock.t += 100
        p2.sync()
    rec = finalize_event(storage, tmp_path / "state" / "cam", "cam", "ev1", record=True, segment_duration=2.0)
    assert rec is not None and rec.segments == 7 and rec.duration == pytest.approx(14.0)
    master = parse_master(storage.get("cam/e/ev1/master.m3u8").decode())
    assert master.media_uris() == ["audio/vod.m3u8", "subs/en/vod.m3u8", "video/360p/vod.m3u8"]
    for rel in master.media_uris():
        key = f"cam/e/ev1/{rel}"
        vod = read(storage, key)
        assert vod.endlist and vod.playlist_type == "VOD" and len(vod.segments) == 7
        assert [s.discontinuity for s in vod.segments] == [False] * 4 + [True, False, False]
        for s in vod.segments:
            assert storage.get(resolve_uri(s.uri, key)) is not None, s.uri


OPS = st.lists(st.sampled_from(["segment", "segment", "segment", "attempt", "event", "killed"]), min_size=1,
               max_size=40)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=OPS, window=st.integers(1, 5))
def test_the_stream_playlists_past_never_changes(tmp_path_factory: pytest.TempPathFactory, ops: list[str],
                                                 window: int) -> None:
    root = tmp_path_factory.mktemp("pub")
    storage = DyingStorage(root / "media")
    event, attempt = 1, 1
    a, p = publisher(root, storage, f"ev{event}", attempt, window=window)
    seen: dict[int, tuple[str, bool]] = {}      # media sequence -> (segment key, discontinuity)
    all_keys: set[str] = set()
    last_seq, last_disc = -1, 0
    for op in ops:
        if op == "segment":
            a.segment()
            p.sync()
        elif op == "killed":  # a segment, the worker killed after storing the playlist, then the next attempt
            a.segment()
            storage.die_after = VIDEO
            with pytest.raises(Killed):
                p.sync()
            attempt += 1
            a, p = publisher(root, storage, f"ev{event}", attempt, window=window)
        else:
            if op == "event":
                finalize_event(storage, root / "state" / "cam", "cam", f"ev{event}", record=False,
                               segment_duration=2.0)
                event, attempt = event + 1, 1
            else:
                attempt += 1
            a, p = publisher(root, storage, f"ev{event}", attempt, window=window)
            continue
        pl = read(storage, "cam/video/360p/index.m3u8")
        assert pl.media_sequence >= last_seq, "media sequence went back"
        assert pl.discontinuity_sequence >= last_disc, "discontinuity sequence went back"
        disc = pl.discontinuity_sequence
        for i, s in enumerate(pl.segments):
            seq = pl.media_sequence + i
            key = resolve_uri(s.uri, "cam/video/360p/index.m3u8")
            if seq in seen:
                assert seen[seq] == (key, s.discontinuity), "a listed segment changed"
            else:
                assert key not in all_keys, "a segment name was used twice"
                seen[seq] = (key, s.discontinuity)
                all_keys.add(key)
            disc += int(s.discontinuity)
            assert storage.get(key) is not None, f"{key} listed but not stored"
        assert len(pl.segments) <= window
        last_seq, last_disc = pl.media_sequence, pl.discontinuity_sequence
