"""Decision rules as pure functions: pod filling, priorities, competitive separation, frequency caps,
targeting, flight dates and positions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sidecast.ads.api.decide import (
    Candidate,
    Catalog,
    Creative,
    DecisionRequest,
    LineItem,
    Source,
    build_pod,
    eligible,
    local_candidates,
    upstream_candidates,
)
from sidecast.ads.vast import MediaFile, ResolvedAd

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


def cand(cid: str, duration: float, advertiser: str = "", priority: int = 5, seq: int | None = None) -> Candidate:
    return Candidate(creative_id=cid, line_id=f"l-{cid}", advertiser=advertiser, duration=duration,
                     priority=priority, uri=f"https://cdn/{cid}.m3u8", sequence=seq)


def ids(pod: list[Candidate]) -> list[str]:
    return [c.creative_id for c in pod]


def test_pod_fills_the_break_exactly_when_a_combination_exists() -> None:
    pod = build_pod([cand("a", 20), cand("b", 15), cand("c", 10), cand("d", 5)], 30)
    assert sum(c.duration for c in pod) == 30


def test_pod_never_runs_over_the_break_and_gets_as_close_as_possible() -> None:
    pod = build_pod([cand("a", 20), cand("b", 17), cand("c", 12)], 35)
    assert ids(pod) == ["a", "c"]  # 32 s: the closest fill under 35 s
    assert build_pod([cand("a", 31)], 30) == []


def test_durations_with_milliseconds_fill_without_rounding_over() -> None:
    pod = build_pod([cand("a", 14.97), cand("b", 15.03), cand("c", 15.04)], 30)
    assert sorted(ids(pod)) == ["a", "b"]


def test_equal_fill_prefers_the_more_important_ads() -> None:
    pod = build_pod([cand("low", 30, priority=9), cand("hi", 15, priority=1), cand("mid", 15, priority=5)], 30)
    assert ids(pod) == ["hi", "mid"]


def test_fill_comes_before_priority() -> None:
    # a sponsorship that leaves half the break empty loses to a full break of less important ads
    pod = build_pod([cand("sponsor", 20, priority=1), cand("x", 15, priority=8), cand("y", 15, priority=8)], 30)
    assert sorted(ids(pod)) == ["x", "y"]


def test_no_two_ads_of_one_advertiser_share_a_pod() -> None:
    pod = build_pod([cand("a1", 15, "Acme"), cand("a2", 15, "acme "), cand("b", 10, "Globex")], 30)
    assert len([c for c in pod if c.advertiser.strip().lower() == "acme"]) == 1
    assert sum(c.duration for c in pod) == 25


def test_ads_without_an_advertiser_are_not_separated() -> None:
    assert len(build_pod([cand("a", 10), cand("b", 10), cand("c", 10)], 30)) == 3


def test_play_order_is_priority_then_upstream_sequence() -> None:
    pod = build_pod([cand("buffet", 5, "V", 5), cand("p3", 5, "I", 5, 3), cand("p1", 5, "U", 5, 1),
                     cand("house", 5, "H", 1)], 20)
    assert ids(pod) == ["house", "p1", "p3", "buffet"]


def test_max_ads_bounds_the_pod() -> None:
    assert len(build_pod([cand(str(i), 5) for i in range(10)], 60, max_ads=3)) == 3


def test_many_odd_length_candidates_fill_a_long_break() -> None:
    # 40 odd-length ads: the sparse knapsack must stay bounded (this would explode if it enumerated subsets)
    cs = [cand(f"c{i}", 5 + (i * 37 % 250) / 10, f"adv{i}") for i in range(40)]
    pod = build_pod(cs, 120)
    assert 119 <= round(sum(c.duration for c in pod), 3) <= 120


def catalog(*lines: LineItem) -> Catalog:
    creatives = {f"c{i}": Creative(id=f"c{i}", media_url=f"https://cdn/c{i}.m3u8", duration=10,
                                   tracking={"impression": ("https://t/imp",), "complete": ("https://t/c",)})
                 for i in range(4)}
    return Catalog(creatives=creatives, lines=lines)


def req(**kw: object) -> DecisionRequest:
    base: dict[str, object] = {"session_id": "s1", "duration": 30}
    base.update(kw)
    return DecisionRequest(**base)  # type: ignore[arg-type]


def test_flight_dates_bound_a_line_item() -> None:
    running = LineItem("run", ("c0",), start=NOW - timedelta(days=1), end=NOW + timedelta(days=1))
    future = LineItem("future", ("c1",), start=NOW + timedelta(seconds=1))
    ended = LineItem("ended", ("c2",), end=NOW)  # the end is exclusive
    naive = LineItem("naive", ("c3",), start=datetime(2026, 6, 1, 11, 0), end=datetime(2026, 6, 1, 13, 0))
    got = {c.line_id for c in local_candidates(catalog(running, future, ended, naive), req(), NOW, {})}
    assert got == {"run", "naive"}


def test_key_value_targeting_needs_every_key_to_match_one_value() -> None:
    line = LineItem("sports", ("c0",), targeting={"genre": ("sports", "news"), "country": ("de",)})
    assert eligible(line, req(key_values={"genre": ("news",), "country": ("de", "at")}), NOW, {})
    assert not eligible(line, req(key_values={"genre": ("news",)}), NOW, {})
    assert not eligible(line, req(key_values={"genre": ("drama",), "country": ("de",)}), NOW, {})


def test_frequency_cap_counts_per_session_and_line() -> None:
    line = LineItem("capped", ("c0",), frequency_cap=2)
    assert eligible(line, req(), NOW, {"capped": 1})
    assert not eligible(line, req(), NOW, {"capped": 2})
    src = Source("up", "https://ads/vast", frequency_cap=1)
    assert eligible(src, req(), NOW, {"capped": 5})
    assert not eligible(src, req(), NOW, {"source:up": 1})


def test_positions_and_disabled_lines() -> None:
    pre_only = LineItem("pre", ("c0",), positions=("pre",))
    assert eligible(pre_only, req(position="pre"), NOW, {})
    assert not eligible(pre_only, req(position="mid"), NOW, {})
    assert not eligible(LineItem("off", ("c0",), enabled=False), req(), NOW, {})


def test_local_candidates_carry_the_creatives_trackers_and_the_lines_advertiser() -> None:
    (c,) = local_candidates(catalog(LineItem("l", ("c0", "missing"), advertiser="Acme", priority=2)), req(), NOW, {})
    assert (c.advertiser, c.priority, c.impressions, c.tracking) == ("Acme", 2, ("https://t/imp",),
                                                                    {"complete": ("https://t/c",)})


def test_upstream_ads_without_a_suitable_media_file_are_set_aside() -> None:
    def ad(id: str, files: tuple[MediaFile, ...]) -> ResolvedAd:
        return ResolvedAd(id=id, sequence=None, ad_system="", title="", advertiser="X", duration=15,
                          media_files=files, impressions=("https://t/i",), tracking={}, errors=("https://t/e",))
    ok, bad = upstream_candidates(Source("up", "https://ads/vast", priority=3), [
        ad("good", (MediaFile("https://cdn/a.mp4", "video/mp4", height=720),)),
        ad("vpaid", (MediaFile("https://cdn/a.js", "application/javascript", api_framework="VPAID"),))])
    assert [c.creative_id for c in ok] == ["vast:up:good:-"]
    assert ok[0].line_id == "source:up" and ok[0].priority == 3
    assert [a.id for a in bad] == ["vpaid"]
