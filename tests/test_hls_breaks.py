"""Ad breaks in SCTE-35 and HLS signalling: cues (threefive) in base64/hex and MPEG-TS, playlist cue tags and
SCTE35 DATERANGEs, and the signalling the core writes read back by the same module."""

from __future__ import annotations

import base64
import logging
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import threefive
from hypothesis import given, settings
from hypothesis import strategies as st

from sidecast.hls import CueError, MediaPlaylist, Segment, parse_media, timebase
from sidecast.hls.breaks import Break, breaks_from_playlist, breaks_from_ts, segment_signal, with_wall_clock
from sidecast.hls.live import LivePlaylist
from sidecast.hls.scte35 import decode_cue, try_decode_cue
from sidecast.hls.timebase import format_pdt
from tests.ads_media import ts_with_cues

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
# A real-world time_signal with a Provider Placement Opportunity Start descriptor (type 0x34, 307 s).
TIME_SIGNAL_B64 = "/DA0AAAAAAAA///wBQb+cr0AUAAeAhxDVUVJSAAAjn/PAAGlmbAICAAAAAAsoKGKNAIAmsnRfg=="


def splice_insert(event_id: int, out: bool, pts: float, duration: float | None = None) -> bytes:
    cue = threefive.Cue()
    si = threefive.SpliceInsert()
    si.splice_event_id = event_id
    si.splice_event_cancel_indicator = False
    si.out_of_network_indicator = out
    si.program_splice_flag = True
    si.splice_immediate_flag = False
    si.time_specified_flag = True
    si.pts_time = pts
    si.duration_flag = duration is not None
    si.break_auto_return = True
    si.break_duration = duration or 0.0
    si.unique_program_id = 1
    si.avail_num = 0
    si.avails_expected = 0
    si.event_id_compliance_flag = True
    cue.command = si
    cue.encode()
    return cue.bites


def test_splice_insert_decodes_from_base64_and_hex_alike():
    raw = splice_insert(1234, True, 20.0, 30.0)
    for form in (base64.b64encode(raw).decode(), "0x" + raw.hex(), raw):
        sp = decode_cue(form)
        assert (sp.kind, sp.command, sp.pts_time, sp.duration, sp.event_id) == ("out", "splice_insert", 20.0, 30.0, 1234)
    assert decode_cue(splice_insert(1234, False, 50.0)).kind == "in"


def test_time_signal_with_placement_opportunity_descriptor_opens_a_break():
    sp = decode_cue(TIME_SIGNAL_B64)
    assert sp.kind == "out" and sp.command == "time_signal"
    assert sp.duration == pytest.approx(307.0)
    assert sp.pts_time == pytest.approx(21388.766756)


@pytest.mark.parametrize("bad,reason", [
    ("not a cue at all!", "neither base64 nor hex"),
    ("AAAA", "too short"),
    (base64.b64encode(b"\x81" + bytes(30)).decode(), "table_id"),
    (TIME_SIGNAL_B64[:-8] + "AAAAAA==", "CRC"),
])
def test_malformed_scte35_is_a_clear_error_and_ignored_when_tolerant(bad, reason, caplog):
    with pytest.raises(CueError, match=reason):
        decode_cue(bad)
    with caplog.at_level(logging.WARNING, logger="sidecast.hls.scte35"):
        assert try_decode_cue(bad, "in test") is None
    assert "ignoring SCTE-35 cue in test" in caplog.text


def test_scte35_in_mpegts_becomes_a_break_on_the_core_media_timeline(tmp_path):
    # The core's PTS is 900000 + media_time * 90000: PTS 30 s is media time 20 s.
    ts = ts_with_cues(tmp_path / "cues.ts", [splice_insert(7, True, 30.0, 20.0), splice_insert(7, False, 45.0)])
    [brk] = breaks_from_ts(ts)
    assert (brk.id, brk.start, brk.duration, brk.source) == ("scte-7", 20.0, 15.0, "scte35")


def test_mpegts_in_without_out_and_corrupt_cue_are_ignored(tmp_path, caplog):
    corrupt = bytearray(splice_insert(9, True, 40.0, 10.0))
    corrupt[-1] ^= 0xFF
    ts = ts_with_cues(tmp_path / "bad.ts", [splice_insert(3, False, 20.0), bytes(corrupt),
                                            splice_insert(4, True, 60.0, 8.0)])
    with caplog.at_level(logging.WARNING, logger="sidecast.hls.breaks"):
        breaks = breaks_from_ts(ts)
    assert [(b.id, b.start, b.duration) for b in breaks] == [("scte-4", 50.0, 8.0)]
    assert "an in without an out" in caplog.text


def _playlist(tags: dict[int, list[str]], n: int = 10, ms: int = 100, pdt: bool = True, end: bool = False,
              t0: datetime = T0) -> str:
    lines = ["#EXTM3U", "#EXT-X-VERSION:3", "#EXT-X-TARGETDURATION:2", f"#EXT-X-MEDIA-SEQUENCE:{ms}"]
    for i in range(n):
        lines += tags.get(i, [])
        if pdt:
            lines.append("#EXT-X-PROGRAM-DATE-TIME:" + format_pdt(t0 + timedelta(seconds=2 * i)))
        lines += ["#EXTINF:2.0,", f"s{i}.ts"]
    if end:
        lines.append("#EXT-X-ENDLIST")
    return "\n".join(lines) + "\n"


def test_cue_out_and_cue_in_make_one_break_with_wall_clock():
    pl = parse_media(_playlist({2: ["#EXT-X-CUE-OUT:6"], 3: ["#EXT-X-CUE-OUT-CONT:2/6"],
                                4: ["#EXT-X-CUE-OUT-CONT:4/6"], 5: ["#EXT-X-CUE-IN"]}))
    [b] = breaks_from_playlist(pl)
    assert (b.start, b.duration, b.start_date, b.source) == (4.0, 6.0, T0 + timedelta(seconds=4), "cue-tags")


@pytest.mark.parametrize("cont", ["#EXT-X-CUE-OUT-CONT:ElapsedTime=4,Duration=10",
                                  "#EXT-X-CUE-OUT-CONT:4/10",
                                  "#EXT-X-CUE-OUT-CONT:ElapsedTime=4.0,Duration=10.0,SCTE35=/DAg"])
def test_window_starting_inside_a_break_reads_both_cue_out_cont_dialects(cont):
    pl = parse_media(_playlist({0: [cont], 3: ["#EXT-X-CUE-IN"]}))
    [b] = breaks_from_playlist(pl)
    # elapsed 4 s at the first segment: the break started 4 s before the window.
    assert b.start == pytest.approx(-4.0)
    assert b.duration == pytest.approx(10.0)
    assert b.start_date == T0 - timedelta(seconds=4)


def test_same_break_keeps_its_id_across_live_reloads():
    a = parse_media(_playlist({3: ["#EXT-X-CUE-OUT:10"]}, ms=100))
    # two segments later the CUE-OUT is two segments higher up, and the wall clock moved on by 4 s
    b = parse_media(_playlist({1: ["#EXT-X-CUE-OUT:10"]}, ms=102, t0=T0 + timedelta(seconds=4)))
    [ba], [bb] = breaks_from_playlist(a), breaks_from_playlist(b)
    assert ba.id == bb.id and ba.start_date == bb.start_date


def test_cue_in_without_cue_out_is_logged_and_content_plays(caplog):
    pl = parse_media(_playlist({4: ["#EXT-X-CUE-IN"]}))
    with caplog.at_level(logging.WARNING, logger="sidecast.hls.breaks"):
        assert breaks_from_playlist(pl) == []
    assert "no EXT-X-CUE-OUT opened a break" in caplog.text


def test_cues_in_the_wrong_order_are_logged_and_ignored(caplog):
    # a second CUE-OUT while the first is open, then CUE-IN: one break, a warning for the stray CUE-OUT
    pl = parse_media(_playlist({2: ["#EXT-X-CUE-OUT"], 3: ["#EXT-X-CUE-OUT:4"], 5: ["#EXT-X-CUE-IN"],
                                7: ["#EXT-X-CUE-IN"]}))
    with caplog.at_level(logging.WARNING, logger="sidecast.hls.breaks"):
        breaks = breaks_from_playlist(pl)
    assert [(b.start, b.duration) for b in breaks] == [(4.0, 6.0)]
    assert "is still open" in caplog.text
    assert "no EXT-X-CUE-OUT opened a break" in caplog.text


def test_cue_out_without_duration_that_never_ends_is_dropped(caplog):
    pl = parse_media(_playlist({6: ["#EXT-X-CUE-OUT"]}))
    with caplog.at_level(logging.WARNING, logger="sidecast.hls.breaks"):
        assert breaks_from_playlist(pl) == []
    assert "no duration" in caplog.text


def test_scte35_dateranges_out_and_in_make_a_break():
    raw = splice_insert(55, True, 100.0, 8.0)
    start = format_pdt(T0 + timedelta(seconds=6))
    end = format_pdt(T0 + timedelta(seconds=12))
    pl = parse_media(_playlist({
        3: [f'#EXT-X-DATERANGE:ID="splice-55",START-DATE="{start}",PLANNED-DURATION=8,SCTE35-OUT=0x{raw.hex()}'],
        6: [f'#EXT-X-DATERANGE:ID="splice-55",START-DATE="{end}",SCTE35-IN=0x{raw.hex()}'],
    }))
    [b] = breaks_from_playlist(pl)
    assert (b.id, b.start, b.duration, b.source) == ("splice-55", 6.0, 6.0, "daterange")


def test_scte35_in_daterange_without_out_is_ignored(caplog):
    pl = parse_media(_playlist({3: [f'#EXT-X-DATERANGE:ID="x",START-DATE="{format_pdt(T0)}",SCTE35-IN=0xFC']}))
    with caplog.at_level(logging.WARNING, logger="sidecast.hls.breaks"):
        assert breaks_from_playlist(pl) == []
    assert "no SCTE35-OUT with that ID" in caplog.text


def test_vod_breaks_at_start_and_end_are_pre_and_post_rolls():
    pl = parse_media(_playlist({0: ["#EXT-X-CUE-OUT:4"], 2: ["#EXT-X-CUE-IN"]}, n=5, end=True, pdt=False))
    [b] = breaks_from_playlist(pl)
    assert b.position == "pre" and b.start_date is None


def test_path_objects_are_accepted(tmp_path: Path):
    ts = ts_with_cues(tmp_path / "one.ts", [splice_insert(1, True, 12.0, 4.0)])
    assert breaks_from_ts(str(ts)) == breaks_from_ts(ts)


def test_breaks_from_mpegts_can_be_placed_on_the_wall_clock_for_live(tmp_path):
    ts = ts_with_cues(tmp_path / "c.ts", [splice_insert(5, True, 22.0, 6.0)])
    [b] = with_wall_clock(breaks_from_ts(ts), T0)
    assert b.start_date == T0 + timedelta(seconds=12) and b.duration == 6.0


@settings(max_examples=300, deadline=None)
@given(st.binary(min_size=11, max_size=200), st.sampled_from([0x05, 0x06, 0x00, 0x07, 0xFF]))
def test_hostile_sections_with_a_valid_crc_decode_or_raise_cue_error(body: bytes, command: int) -> None:
    """Past the checks of our own (length, table, CRC) a section goes to threefive: whatever it makes of
    it ends in a Splice or a CueError, never another exception."""
    payload = bytearray(body)
    payload[10] = command  # splice_command_type, so that threefive gets past the header
    section_length = len(payload) + 4
    head = bytes([0xFC, 0x30 | (section_length >> 8) & 0x0F, section_length & 0xFF])
    section = head + bytes(payload)
    section += int(threefive.crc.crc32(section)).to_bytes(4, "big")
    try:
        sp = decode_cue(section)
    except CueError as exc:
        assert str(exc)
    else:
        assert sp.kind in ("out", "in") and sp.raw == section


def test_threefive_diagnostics_do_not_reach_the_process_stderr() -> None:
    """threefive prints "N bits requested, but only M bits remain" on a truncated command, to the stderr it
    bound at import: a live source with bad cues must not spray that over the core's log (checked in a
    process of its own, where nothing else has replaced stderr)."""
    # a splice_insert that runs past its section (random bytes with a valid CRC, found by fuzzing)
    section = "fc3022c621fb333f2ae4c8b01205dde4d99c40eea56658cea06417bc266e03e12050a0cb4e"
    code = f"from sidecast.hls.scte35 import try_decode_cue; print(try_decode_cue(bytes.fromhex('{section}')))"
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith(("Splice(", "None")) and "bits requested" not in res.stderr + res.stdout


def _signalled(breaks: list[Break], n: int, seg: float = 2.0) -> list[Segment]:
    """n segments of ``seg`` seconds signalled the way the core signals them."""
    out = []
    for k in range(n):
        pdt = T0 + timedelta(seconds=seg * k)
        tags_, dateranges = segment_signal(breaks, seg * k, pdt)
        out.append(Segment(f"s{k}.ts", seg, program_date_time=pdt, tags=tags_, dateranges=dateranges))
    return out


def test_what_the_core_writes_the_ads_read_back_one_break_each() -> None:
    raw = splice_insert(42, True, 30.0, 6.0)
    written = [Break("break-1", 4.0, 4.0, source="cli"), Break("scte35-42", 12.0, 6.0, scte35=raw),
               Break("open", 24.0, None)]
    pl = MediaPlaylist(target_duration=2, segments=_signalled(written, 16), endlist=True)
    text = pl.dumps()
    assert text.count("#EXT-X-CUE-OUT:DURATION=4.000") == 1 and text.count("#EXT-X-CUE-IN") == 2
    assert f"SCTE35-OUT=0x{raw.hex().upper()}" in text and "#EXT-X-CUE-OUT-CONT:ElapsedTime=2.000" in text
    read = breaks_from_playlist(parse_media(text))
    # one break per break: the SCTE-35 one is read from its DATERANGE (its ID, its section), not twice;
    # the open one (no duration, no CUE-IN yet) is not a break the ads can act on
    assert [(b.id, b.start, b.duration, b.start_date, b.source, b.scte35) for b in read] == [
        ("cue-" + str(int((T0 + timedelta(seconds=4)).timestamp() * 1000)), 4.0, 4.0, T0 + timedelta(seconds=4),
         "cue-tags", b""),
        ("scte35-42", 12.0, 6.0, T0 + timedelta(seconds=12), "daterange", raw)]


def test_a_scte35_break_keeps_its_id_on_every_reload_of_a_live_window() -> None:
    raw = splice_insert(7, True, 30.0, 8.0)
    brk = Break("scte35-7", 10.0, 8.0, scte35=raw)
    live = LivePlaylist(None, 2.0, 3)
    seen = []
    for k, s in enumerate(_signalled([brk], 14)):
        live.add(s)
        found = breaks_from_playlist(parse_media(live.render()))
        seen.append((k, [(b.id, b.start_date) for b in found]))
    # segments 5..8 are the break: from the reload that lists segment 5 to the last one that lists segment 8,
    # the ads see one break with one ID (the DATERANGE stays at the head after its segment slid out)
    assert seen == [(k, [("scte35-7", T0 + timedelta(seconds=10))] if 5 <= k <= 10 else []) for k in range(14)]


def test_breaks_from_mpegts_unwrap_across_the_33_bit_clock(tmp_path: Path) -> None:
    # two cues either side of the PTS wrap: the second is later in media time, not 26.5 h earlier
    near_end = timebase.WRAP_SECONDS - 3.0
    ts = ts_with_cues(tmp_path / "wrap.ts", [splice_insert(1, True, near_end, 2.0),
                                             splice_insert(2, True, 5.0, 2.0)])
    breaks = breaks_from_ts(ts, pts_zero=0.0)
    assert [b.id for b in breaks] == ["scte-1", "scte-2"]
    assert breaks[1].start - breaks[0].start == pytest.approx(8.0)
