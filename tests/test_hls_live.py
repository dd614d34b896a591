"""The live writer's rules (RFC 8216bis §6.2.1-6.2.2), checked on every reload a player could make: a
listed segment never changes, MEDIA-SEQUENCE and DISCONTINUITY-SEQUENCE grow exactly with what slides
out, TARGETDURATION is fixed, PDT on every segment, DATERANGEs kept while their range overlaps the window,
and the file on disk is always a whole playlist."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import m3u8
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sidecast.hls import DateRange, PlaylistError, Segment, parse_media, quote, tags, timebase
from sidecast.hls.live import LivePlaylist

T0 = datetime(2030, 5, 1, 12, 0, tzinfo=UTC)


def seg(k: int, t: float, duration: float = 2.0, disc: bool = False, dr: tuple[DateRange, ...] = ()) -> Segment:
    return Segment(f"seg_{k:06d}.ts", duration, discontinuity=disc, program_date_time=T0 + timedelta(seconds=t),
                   dateranges=dr)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from([2.0, 1.96, 2.04, 0.5, 1.0]), st.booleans()), min_size=1, max_size=40),
       st.integers(0, 8))
def test_every_reload_keeps_the_live_rules(spec: list[tuple[float, bool]], window: int) -> None:
    live = LivePlaylist(None, 2.0, window)
    first_seen: dict[str, tuple[float, datetime | None, bool]] = {}
    disc_number: dict[str, int] = {}   # each segment's discontinuity sequence number, as a player computes it
    t = 0.0
    for k, (duration, disc) in enumerate(spec):
        live.add(seg(k, t, duration, disc))
        t += duration
        text = live.render()
        pl = parse_media(text)
        assert pl.target_duration == 2
        assert all(s.program_date_time is not None for s in pl.segments)
        n_listed = min(k + 1, window) if window else k + 1
        assert len(pl.segments) == n_listed
        assert pl.media_sequence == k + 1 - n_listed          # exactly what slid out
        cc = pl.discontinuity_sequence
        for s in pl.segments:
            cc += s.discontinuity
            # a listed segment never changes, and never changes discontinuity number between reloads
            assert first_seen.setdefault(s.uri, (s.duration, s.program_date_time, s.discontinuity)) == (
                s.duration, s.program_date_time, s.discontinuity)
            assert disc_number.setdefault(s.uri, cc) == cc, f"{s.uri} moved to discontinuity {cc}"
        assert len(m3u8.loads(text).segments) == n_listed
    assert not pl.endlist
    live.end()
    ended = parse_media(live.render())
    assert ended.endlist and ended.playlist_type == (None if window else "VOD")


def test_the_first_segment_of_the_stream_is_never_a_discontinuity() -> None:
    # A reconnect before the first frame flags segment 0: the tag would be meaningless there, and counting it
    # when it slides out would move every later segment to another discontinuity.
    live = LivePlaylist(None, 2.0, 2)
    live.add(seg(0, 0.0, disc=True))
    assert tags.EXT_X_DISCONTINUITY not in live.render()
    for k in range(1, 4):
        live.add(seg(k, 2.0 * k, disc=k == 2))
    pl = parse_media(live.render())
    assert pl.media_sequence == 2 and pl.discontinuity_sequence == 0 and pl.segments[0].discontinuity


def test_rules_a_segment_cannot_break_are_refused() -> None:
    live = LivePlaylist(None, 2.0, 3)
    with pytest.raises(PlaylistError, match="exceeds the target duration"):
        live.add(seg(0, 0.0, duration=2.5))
    with pytest.raises(PlaylistError, match="PROGRAM-DATE-TIME"):
        live.add(Segment("a.ts", 2.0))
    live.add(seg(0, 0.0, duration=2.49))  # rounds to 2: allowed (§4.4.3.1)
    live.end()
    with pytest.raises(RuntimeError, match="after the end"):
        live.add(seg(1, 2.0))


def test_a_daterange_stays_while_its_range_overlaps_the_window() -> None:
    start = T0 + timedelta(seconds=4)
    brk = DateRange({"ID": quote("break-1"), "START-DATE": quote(timebase.format_pdt(start)), "PLANNED-DURATION": "6.000"})
    point = DateRange({"ID": quote("mark"), "START-DATE": quote(timebase.format_pdt(start))})
    live = LivePlaylist(None, 2.0, 2)
    ids_per_reload = []
    for k in range(8):
        live.add(seg(k, 2.0 * k, dr=(brk, point) if k == 2 else ()))
        ids_per_reload.append((live.media_sequence, [d.id for d in parse_media(live.render()).dateranges()]))
    # The break covers segments 2-4 (4 s .. 10 s). Its tag leaves with segment 2 but is kept at the head
    # while segment 3 or 4 is listed; a range without an end leaves with its segment.
    assert ids_per_reload == [(0, []), (0, []), (1, ["break-1", "mark"]), (2, ["break-1", "mark"]),
                              (3, ["break-1"]), (4, ["break-1"]), (5, []), (6, [])]


def test_the_file_is_always_a_whole_playlist(tmp_path: Path) -> None:
    path = tmp_path / "index.m3u8"
    live = LivePlaylist(path, 2.0, 5)
    live.add(seg(0, 0.0))
    done, reading = threading.Event(), threading.Event()
    reads: list[int] = []
    errors: list[str] = []

    def reader() -> None:
        while not done.is_set():
            text = path.read_text()
            try:
                reads.append(len(parse_media(text).segments))
            except PlaylistError as exc:
                errors.append(f"{exc}: {text[-80:]!r}")
            reading.set()

    th = threading.Thread(target=reader)
    th.start()
    try:
        assert reading.wait(30)
        for k in range(1, 300):
            live.add(seg(k, 2.0 * k))
    finally:
        done.set()
        th.join()
    assert not errors, errors[:3]
    assert reads and set(reads) <= {1, 2, 3, 4, 5}
    assert [p.name for p in tmp_path.iterdir()] == ["index.m3u8"]  # no temporary file left behind
