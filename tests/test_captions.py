"""WebVTT carriage for HLS: segment rendering, X-TIMESTAMP-MAP, cue repetition, the cue store, transcripts."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from sidecast.contract.records import Cue, Word
from sidecast.core.captions import (
    CaptionCarrier,
    CueStore,
    render_transcript_vtt,
    render_vtt_segment,
    vtt_timestamp,
    write_transcript,
)
from sidecast.hls import timebase

CUE_LINE = re.compile(r"^(\d{2,}:\d{2}:\d{2}\.\d{3}) --> (\d{2,}:\d{2}:\d{2}\.\d{3})$")


def parse_vtt(text: str) -> tuple[list[str], list[tuple[str, str, str]]]:
    """Header lines and (start, end, payload) cues: a strict little reader for what we write."""
    assert text.startswith("WEBVTT\n")
    blocks = text.strip("\n").split("\n\n")
    header = blocks[0].split("\n")
    cues = []
    for block in blocks[1:]:
        lines = block.split("\n")
        if not CUE_LINE.match(lines[0]):  # the cue identifier (WebVTT: optional, never holds "-->")
            assert "-->" not in lines[0] and lines[0].strip(), block
            lines = lines[1:]
        m = CUE_LINE.match(lines[0])
        assert m, block
        assert len(lines) >= 2 and all(ln.strip() for ln in lines[1:]), block
        cues.append((m.group(1), m.group(2), "\n".join(lines[1:])))
    return header, cues


def cue(start: float, end: float, text: str, **kw: object) -> Cue:
    return Cue(start=start, end=end, text=text, **kw)  # type: ignore[arg-type]


def test_vtt_timestamps_count_hours_past_a_day() -> None:
    assert vtt_timestamp(0) == "00:00:00.000"
    assert vtt_timestamp(3661.2345) == "01:01:01.234" or vtt_timestamp(3661.2345) == "01:01:01.235"
    assert vtt_timestamp(100 * 3600 + 0.5) == "100:00:00.500"
    with pytest.raises(ValueError):
        vtt_timestamp(-1)


def test_timestamp_map_ties_segment_start_to_the_video_pts() -> None:
    text = render_vtt_segment([cue(4.5, 5.5, "hello")], 4.0, 6.0, timebase.media_to_pts(4.0))
    header, cues = parse_vtt(text)
    assert header == ["WEBVTT", "X-TIMESTAMP-MAP=MPEGTS:1260000,LOCAL:00:00:04.000"]
    assert cues == [("00:00:04.500", "00:00:05.500", "hello")]


def test_timestamp_map_wraps_at_33_bits() -> None:
    # 2**33 ticks is 26.5 hours: media time past that wraps the PTS back to small numbers.
    t = timebase.WRAP_SECONDS - timebase.PTS_OFFSET_SECONDS + 2.0
    header, _ = parse_vtt(render_vtt_segment([], t, t + 2, timebase.media_to_pts(t)))  # unwrapped from the core
    assert header[1].startswith("X-TIMESTAMP-MAP=MPEGTS:180000,LOCAL:")
    # A value already wrapped by the caller stays as it is.
    header, _ = parse_vtt(render_vtt_segment([], t, t + 2, timebase.wrap(timebase.media_to_pts(t))))
    assert "MPEGTS:180000," in header[1]


def test_cue_spanning_a_boundary_is_repeated_in_every_segment_it_touches() -> None:
    cues = [cue(1.0, 1.8, "first"), cue(1.9, 4.6, "across two boundaries"), cue(5.0, 5.5, "last")]
    segs = [parse_vtt(render_vtt_segment(cues, s, s + 2.0, timebase.media_to_pts(s)))[1] for s in (0.0, 2.0, 4.0)]
    assert [p for _, _, p in segs[0]] == ["first", "across two boundaries"]
    assert [p for _, _, p in segs[1]] == ["across two boundaries"]
    assert [p for _, _, p in segs[2]] == ["across two boundaries", "last"]
    # Identical timing and text in each copy, so players de-duplicate the repeats.
    assert segs[0][1] == segs[1][0] == segs[2][0] == ("00:00:01.900", "00:00:04.600", "across two boundaries")


def test_a_cue_ending_exactly_at_the_segment_start_is_not_repeated() -> None:
    _, cues = parse_vtt(render_vtt_segment([cue(1.0, 2.0, "done")], 2.0, 4.0, timebase.media_to_pts(2.0)))
    assert cues == []


def test_silent_segment_is_header_only() -> None:
    text = render_vtt_segment([cue(0.0, 1.0, "early")], 10.0, 12.0, timebase.media_to_pts(10.0))
    assert text == "WEBVTT\nX-TIMESTAMP-MAP=MPEGTS:1800000,LOCAL:00:00:10.000\n"


def test_cue_text_cannot_break_the_file() -> None:
    nasty = cue(0.5, 1.5, "a <b> & c\n\n--> d")
    _, cues = parse_vtt(render_vtt_segment([nasty], 0, 2, timebase.PTS_OFFSET))
    assert cues == [("00:00:00.500", "00:00:01.500", "a &lt;b&gt; &amp; c\n--&gt; d")]


def test_store_replaces_partials_and_never_rewrites_finals() -> None:
    store = CueStore()
    store.add(cue(1.0, 2.0, "hello wor", final=False, id="cc-0"))
    assert [c.text for c in store.cues_between(0, 10, include_partial=True)] == ["hello wor"]
    assert store.cues_between(0, 10) == []  # partials only when asked
    store.add(cue(1.0, 2.5, "hello world", final=False, id="cc-0"))
    store.add(cue(1.0, 2.6, "hello world.", final=True, id="cc-0"))
    assert [c.text for c in store.cues_between(0, 10, include_partial=True)] == ["hello world."]
    assert store.add(cue(1.0, 2.6, "rewritten", final=True, id="cc-0")) is False
    assert store.add(cue(1.0, 2.6, "late partial", final=False, id="cc-0")) is False
    assert [c.text for c in store.finals()] == ["hello world."]


def test_store_drops_a_partial_that_a_final_of_another_id_covers() -> None:
    store = CueStore()
    store.add(cue(3.0, 4.0, "and then", final=False, id="cc-1"))
    store.add(cue(2.0, 4.5, "it rained and then it stopped", final=True, id="cc-0"))
    assert [c.id for c in store.cues_between(0, 10, include_partial=True)] == ["cc-0"]


def test_store_keeps_tracks_apart() -> None:
    store = CueStore()
    store.add(cue(1.0, 2.0, "hola", language="es", id="cc-0"))
    store.add(cue(1.0, 2.0, "hello", language="en", track="en", id="cc-0"))  # same id, another track
    assert [c.text for c in store.cues_between(0, 5)] == ["hola"]
    assert [c.text for c in store.cues_between(0, 5, track="en")] == ["hello"]


def test_the_timeline_applies_the_store_rules_to_what_sidecars_send() -> None:
    """Production path: results arrive through the Timeline, which keeps cues in a CueStore."""
    from sidecast.core.timeline import Timeline

    tl = Timeline()
    tl.add("stt", cue(1.0, 2.0, "hello wor", final=False, id="cc-0"))
    tl.add("stt", cue(1.0, 2.6, "hello world.", final=True, id="cc-0"))
    tl.add("stt", cue(1.0, 2.6, "rewritten", final=True, id="cc-0"))
    tl.add("stt", cue(1.0, 2.6, "hola mundo.", final=True, id="cc-0", track="es", language="es"))
    assert [c.text for c in tl.cues_between(0, 10)] == ["hello world."]
    assert [c.text for c in tl.final_cues("es")] == ["hola mundo."]
    assert tl.counts["stt"] == 4


def test_transcript_has_every_final_cue_and_word_timings(tmp_path: Path) -> None:
    words = (Word("Good", 1.0, 1.3, 0.9), Word("evening.", 1.3, 1.9, 0.8))
    cues = [cue(1.0, 2.0, "Good evening.", words=words, id="cc-0"),
            cue(2.5, 3.0, "maybe", final=False, id="cc-1"),
            cue(4.0, 5.0, "Welcome\nto the news.", id="cc-2")]
    write_transcript(cues, tmp_path / "t.vtt", tmp_path / "t.json")
    header, vtt_cues = parse_vtt((tmp_path / "t.vtt").read_text())
    assert header == ["WEBVTT"]
    assert [p for _, _, p in vtt_cues] == ["Good evening.", "Welcome\nto the news."]
    doc = json.loads((tmp_path / "t.json").read_text())
    assert doc["text"] == "Good evening. Welcome to the news."
    assert [c["id"] for c in doc["cues"]] == ["cc-0", "cc-2"]
    assert doc["cues"][0]["words"] == [
        {"text": "Good", "start": 1.0, "end": 1.3, "probability": 0.9},
        {"text": "evening.", "start": 1.3, "end": 1.9, "probability": 0.8},
    ]
    assert not list(tmp_path.glob("*.tmp"))


def test_transcript_vtt_orders_cues_by_time() -> None:
    text = render_transcript_vtt([cue(5, 6, "b"), cue(1, 2, "a")])
    assert [p for _, _, p in parse_vtt(text)[1]] == ["a", "b"]


def test_a_cue_that_misses_its_segments_is_shown_late_rather_than_lost() -> None:
    carrier = CaptionCarrier()
    c0 = cue(0.5, 1.5, "on time", id="cc-0")
    assert [c.text for c in carrier.segment_cues([c0], 0.0, 2.0)] == ["on time"]
    # Segment [2, 4) is published before the recogniser settles "late one" (spoken at 2.5-3.5).
    assert carrier.segment_cues([c0], 2.0, 4.0) == []
    late = cue(2.5, 3.5, "late one", id="cc-1")
    nxt = cue(4.6, 5.8, "next", id="cc-2")
    seg = carrier.segment_cues([c0, late, nxt], 4.0, 6.0)
    assert [(c.text, c.start, c.end) for c in seg] == [("late one", 4.0, 4.6), ("next", 4.6, 5.8)]
    # The on-time cue is not carried again as late, and the moved cue keeps its new timing afterwards.
    again = carrier.segment_cues([c0, late, nxt], 6.0, 8.0)
    assert again == []
    assert carrier.late_count == 1


def test_late_cues_wait_for_the_cue_still_on_screen_and_keep_identical_repeats() -> None:
    carrier = CaptionCarrier(late_hold=3.0)
    long = cue(1.0, 5.0, "still on screen", id="cc-0")
    carrier.segment_cues([long], 0.0, 2.0)
    carrier.segment_cues([long], 2.0, 4.0)
    late = cue(2.0, 3.9, "was late", id="cc-1")  # settled only after [2, 4) was published
    seg = carrier.segment_cues([long, late], 4.0, 6.0)
    assert [(c.text, c.start, c.end) for c in seg] == [("still on screen", 1.0, 5.0), ("was late", 5.0, 6.9)]
    seg2 = carrier.segment_cues([long, late], 6.0, 8.0)
    assert [(c.text, c.start, c.end) for c in seg2] == [("was late", 5.0, 6.9)]
    text = render_vtt_segment(seg2, 6.0, 8.0, timebase.media_to_pts(6.0))
    assert "00:00:05.000 --> 00:00:06.900\nwas late" in text
