"""The one clock: 90 kHz ticks, the 33-bit wrap, the core's PTS offset, PDT text."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sidecast.hls import timebase as tb

DAY = 86_400.0


def test_the_core_writes_media_time_zero_at_pts_ten_seconds() -> None:
    assert tb.media_to_pts(0.0) == 900_000 == tb.PTS_OFFSET
    assert tb.media_to_pts(2.0) == 900_000 + 180_000
    assert tb.pts_to_media(900_000) == 0.0
    assert tb.WRAP == 2**33 and tb.WRAP_SECONDS == pytest.approx(95_443.7176889)  # about 26.5 h
    # the AAC writer's offset in 48 kHz samples is the same 10 s
    assert tb.PTS_OFFSET * 48_000 // tb.CLOCK == round(tb.PTS_OFFSET_SECONDS * 48_000) == 480_000


@given(st.floats(0, 10 * DAY), st.floats(-12 * 3600, 12 * 3600))
def test_media_time_survives_the_33_bit_wrap(t: float, skew: float) -> None:
    """A PTS read off the wire (wrapped) maps back to its media time from anywhere within half a wrap."""
    wire = tb.wrap(tb.media_to_pts(t))
    assert 0 <= wire < 2**33
    assert tb.pts_to_media(wire, near=max(0.0, t + skew)) == pytest.approx(t, abs=1 / tb.CLOCK)


@given(st.integers(-(2**40), 2**40), st.integers(-(2**40), 2**40))
def test_unwrap_picks_the_nearest_value_with_the_same_wire_form(pts: int, near: int) -> None:
    u = tb.unwrap(pts, near)
    assert tb.wrap(u) == tb.wrap(pts)
    assert -(2**32) <= u - near < 2**32


@given(st.floats(0, tb.WRAP_SECONDS, exclude_max=True), st.floats(0, 5 * DAY))
def test_unwrap_seconds_places_a_splice_time_next_to_now(pts_s: float, now: float) -> None:
    t = tb.unwrap_seconds(pts_s, now)
    assert abs(t - now) <= tb.WRAP_SECONDS / 2 + 1e-6
    k = (t - pts_s) / tb.WRAP_SECONDS   # a whole number of wraps away from the clock reading
    assert k == pytest.approx(round(k), abs=1e-9)


def test_a_splice_just_after_the_wrap_lands_after_now() -> None:
    now = tb.WRAP_SECONDS - 1.0   # media clock near the wrap; the cue's PTS has already wrapped to 3 s
    assert tb.unwrap_seconds(3.0, now) == pytest.approx(tb.WRAP_SECONDS + 3.0)
    assert tb.unwrap_seconds(tb.WRAP_SECONDS - 5.0, 2.0) == pytest.approx(-5.0)


def test_pdt_text_is_utc_with_milliseconds() -> None:
    dt = datetime(2031, 2, 3, 4, 5, 6, 789_999, tzinfo=UTC)
    assert tb.format_pdt(dt) == "2031-02-03T04:05:06.789Z"
    paris = timezone(timedelta(hours=1))
    assert tb.format_pdt(datetime(2031, 2, 3, 5, 5, 6, tzinfo=paris)) == "2031-02-03T04:05:06.000Z"
    assert tb.format_pdt(datetime(2031, 2, 3, 4, 5, 6)) == "2031-02-03T04:05:06.000Z"  # naive is UTC
    assert tb.parse_pdt("2031-02-03T04:05:06.789Z") == dt.replace(microsecond=789_000)
    assert tb.parse_pdt("2031-02-03T05:05:06+01:00") == datetime(2031, 2, 3, 4, 5, 6, tzinfo=UTC)
    assert tb.parse_pdt("2031-02-03T04:05:06").tzinfo is not None


@given(st.datetimes(min_value=datetime(1970, 1, 1), max_value=datetime(9000, 1, 1), timezones=st.just(UTC)))
def test_pdt_round_trips_to_the_millisecond(dt: datetime) -> None:
    assert tb.parse_pdt(tb.format_pdt(dt)) == dt.replace(microsecond=dt.microsecond // 1000 * 1000)


@given(st.text(max_size=40))
def test_bad_pdt_text_is_a_value_error_naming_it(text: str) -> None:
    try:
        tb.parse_pdt(text)
    except ValueError as exc:
        assert repr(text) in str(exc)
