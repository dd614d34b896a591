"""Extra video feeds (``Description.extra_video``) with real processes and real gRPC: a sidecar declaring two
feeds gets both, in order, at their own rate and size; one-feed sidecars are untouched; hostile requests
are refused at Describe time without hurting the stream; a sidecar talking to a core that does not deliver
its extra feed says so once and keeps working on its main feed."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import grpc
import m3u8
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sidecast.contract import codec, pb2, pb2_grpc
from sidecast.contract.errors import ContractError
from sidecast.contract.records import Description, FrameHeader, VideoFeed, VideoWants
from sidecast.core.fanout import feed_kind
from sidecast.core.links import Outgoing, SidecarLink
from sidecast.core.timeline import Timeline
from tests.conftest import make_clip
from tests.test_sidecar_contract import Proc, run_pipeline, sock_dir  # noqa: F401 (fixture)

THUMBS = VideoWants(fps=0, width=48, height=27, pixel_format="rgb24")


@pytest.fixture(scope="module")
def clip3(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """3 s of 640x360 at 30 fps: 90 source frames."""
    return make_clip(tmp_path_factory.mktemp("feeds") / "clip3.mp4", 3.0, "640x360")


def results(out: Path) -> list[dict[str, object]]:
    path = out / "results.jsonl"
    return [json.loads(ln) for ln in path.read_text().splitlines()] if path.exists() else []


def by(rs: list[dict[str, object]], sidecar: str, kind: str) -> list[dict[str, object]]:
    return [r for r in rs if r["sidecar"] == sidecar and r["kind"] == kind]


def test_a_sidecar_with_two_feeds_gets_both_and_old_one_feed_sidecars_are_untouched(
        clip3: Path, tmp_path: Path, sock_dir: Path) -> None:  # noqa: F811
    two = Proc(sock_dir / "two.sock", "--mode", "feeds")
    old = Proc(sock_dir / "old.sock")  # the ticker as it always was: one main feed
    thumb = Proc(sock_dir / "thumb.sock", "--mode", "thumb-main")  # wants the thumbnail as its main feed
    try:
        p = run_pipeline(clip3, tmp_path, {"two": two.target, "old": old.target, "thumb": thumb.target})
    finally:
        for pr in (two, old, thumb):
            pr.stop()
    assert p.fanout is not None and all(lk.failed is None for lk in p.links)
    rs = results(tmp_path)
    extra = by(rs, "two", "feed")
    main = by(rs, "two", "tick")
    # (the tick carries what StreamStart said: a result from on_start may come before results.jsonl opens)
    assert main and all(r["data"]["feeds"] == ["thumbs"] for r in main)  # type: ignore[index]
    # the extra feed: every source frame, 48x27 rgb24 whatever the source's aspect, its own seq counter
    assert 88 <= len(extra) <= 90
    assert all(r["data"] == {"feed": "thumbs", "seq": r["data"]["seq"], "w": 48, "h": 27,  # type: ignore[index]
                             "fmt": "rgb24", "shape": [27, 48, 3]} for r in extra)
    assert [r["data"]["seq"] for r in extra] == list(range(1, len(extra) + 1))  # type: ignore[index]
    steps = np.diff([float(r["start"]) for r in extra])  # type: ignore[arg-type]
    assert np.allclose(steps, 1 / 30, atol=2e-3), "one frame per source frame at 30 fps"
    # the main feed: 10 fps at 320x180 gray, and each main frame came after the extra frame of its time
    assert 29 <= len(main) <= 31
    assert all(r["data"]["w"] == 320 and r["data"]["h"] == 180 and r["data"]["feed"] == "" for r in main)  # type: ignore[index]
    assert all(abs(float(r["data"]["last_extra"]) - float(r["start"])) < 1e-6 for r in main)  # type: ignore[index,arg-type]
    # the one-feed sidecar shares the main conversion and never sees the extra feed
    old_ticks = by(rs, "old", "tick")
    assert len(old_ticks) == len(main) and not by(rs, "old", "feed")
    # the thumbnail asked for as a main feed shares the extra feed's conversion: two groups in all
    groups = {(g.width, g.height): g for g in p.fanout.video_groups}
    assert sorted(groups) == [(48, 27), (320, 180)]
    g = groups[(48, 27)]
    assert sorted((lk.name, feed) for lk, feed in g.subs) == [("thumb", ""), ("two", "thumbs")]
    assert g.conversions == len(extra) == len(by(rs, "thumb", "tick"))
    assert g.interpolation == "AREA"
    assert p.links[[lk.name for lk in p.links].index("two")].feed_limits == {"feed:thumbs": 24}  # 8 x 30/10


HOSTILE = [
    ("feeds-absurd", "8000x8000 frames in its extra feed 'huge'"),
    ("feeds-unknown-format", "unknown pixel format (99) in its extra feed 'odd'"),
    ("feeds-too-many", "5 extra video feeds; at most 4"),
    ("feeds-bad-name", "names an extra video feed 'Thumbs/../x'"),
    ("feeds-same-twice", "asks for the same video twice (extra feed 'again')"),
]


@pytest.fixture(scope="module")
def hostile_run(clip3: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[dict[str, SidecarLink], Path]]:
    """One stream with every hostile sidecar and one well-behaved one beside them: each refusal is its own
    link's, decided at Describe time, so one run shows them all (a run per request cost a stream and two
    sidecar starts each)."""
    import os
    import shutil

    socks = Path(f"/tmp/sc-{os.getpid()}-hostile")
    socks.mkdir(exist_ok=True)
    out = tmp_path_factory.mktemp("hostile")
    procs = {mode: Proc(socks / f"{mode}.sock", "--mode", mode) for mode, _ in HOSTILE}
    procs["good"] = Proc(socks / "good.sock")
    try:
        p = run_pipeline(clip3, out, {name: pr.target for name, pr in procs.items()})
    finally:
        for pr in procs.values():
            pr.stop()
        shutil.rmtree(socks, ignore_errors=True)
    yield {lk.name: lk for lk in p.links}, out


@pytest.mark.parametrize(("mode", "message"), HOSTILE)
def test_hostile_extra_requests_are_refused_at_describe_time_and_the_stream_goes_on(
        mode: str, message: str, hostile_run: tuple[dict[str, SidecarLink], Path]) -> None:
    links, out = hostile_run
    assert links[mode].failed is not None and message in links[mode].failed, links[mode].failed
    assert links["good"].failed is None and len(by(results(out), "good", "tick")) >= 29
    assert m3u8.load(str(out / "video" / "360p" / "index.m3u8")).is_endlist


def test_a_core_without_extra_feeds_gets_the_main_feed_and_the_sidecar_says_so_once(
        sock_dir: Path) -> None:  # noqa: F811
    """What an older core sends is a StreamStart without ``video_feeds`` and frames without ``feed``: the
    same bytes on the wire as these messages (proto3 leaves unset fields out)."""
    proc = Proc(sock_dir / "oldcore.sock", "--mode", "feeds")
    try:
        with grpc.insecure_channel(proc.target) as ch:
            stub = pb2_grpc.SidecarStub(ch)
            desc = stub.Describe(pb2.DescribeRequest(contract_version=1), timeout=5)
            assert [(v.feed, v.width, v.height) for v in desc.extra_video] == [("thumbs", 48, 27)]
            pixels = bytes(320 * 180)
            for _ in range(2):  # two streams: the warning is logged once per process, not per stream
                msgs = [pb2.CoreMessage(start=pb2.StreamStart(stream_id="s", source_width=640, source_height=360,
                                                              source_fps=30.0, segment_duration=2.0))]
                msgs += [pb2.CoreMessage(video=pb2.VideoFrame(seq=i + 1, pts=i / 10, width=320, height=180,
                                                              pixel_format=pb2.PIXEL_FORMAT_GRAY8, pixels=pixels))
                         for i in range(3)]
                msgs += [pb2.CoreMessage(video=pb2.VideoFrame(seq=1, pts=0.3, width=48, height=27, feed="nosuch",
                                                              pixel_format=pb2.PIXEL_FORMAT_RGB24,
                                                              pixels=bytes(48 * 27 * 3))),
                         pb2.CoreMessage(end=pb2.StreamEnd())]
                events = [codec.decode_sidecar(m) for m in stub.Stream(iter(msgs), timeout=20)]
                kinds = [getattr(e, "kind", None) for e in events]
                assert kinds.count("tick") == 3 and "feed" not in kinds
                assert [e.data for e in events if getattr(e, "kind", None) == "feeds_delivered"] == [{"feeds": []}]
                assert any("did not declare ('nosuch')" in getattr(e, "message", "") for e in events)
    finally:
        proc.stop()
    log = proc.p.stdout.read() if proc.p.stdout else ""
    assert log.count("does not deliver the extra video feed(s) thumbs") == 1, log


def test_an_extra_feed_fills_its_own_queue_and_never_pushes_out_main_frames() -> None:
    link = SidecarLink("x", "unix:///nonexistent", Timeline())
    link.connected.set()  # a live link whose sidecar reads nothing (never started): the live drop policy
    link.feed_limits[feed_kind("thumbs")] = 40
    msg = codec.encode_core(FrameHeader(1, 0.0, 2, 2, "gray8", pixels=bytes(4)))
    for _ in range(8):
        assert link.offer(Outgoing(msg, "video"))
    for _ in range(100):
        assert link.offer(Outgoing(msg, "feed:thumbs"))
    kinds = [o.kind for o in link._q]
    assert kinds.count("video") == 8 and kinds.count("feed:thumbs") == 40
    assert link.stats.dropped == 60


def test_feed_descriptions_round_trip_and_old_descriptions_read_as_one_feed() -> None:
    d = Description(name="x", video=VideoWants(fps=5, width=480, pixel_format="bgr24"),
                    extra_video=(VideoFeed("shots", THUMBS),))
    back = codec.description_from_pb(codec.description_to_pb(d))
    assert back.extra_video == d.extra_video and back.video == d.video
    assert codec.scaled_size(1280, 720, THUMBS) == (48, 27) and codec.scaled_size(640, 480, THUMBS) == (48, 27)
    old = codec.description_to_pb(Description(name="y", video=VideoWants()))
    assert codec.description_from_pb(old).extra_video == ()


video_requests = st.builds(
    pb2.VideoRequest,
    fps=st.floats(allow_nan=True, allow_infinity=True, width=64),
    width=st.integers(0, 2**32 - 1), height=st.integers(0, 2**32 - 1), max_side=st.integers(0, 2**32 - 1),
    pixel_format=st.integers(0, 2**31 - 1), feed=st.text(max_size=40),
)


@settings(max_examples=300, deadline=None)
@given(main=video_requests, extra=st.lists(video_requests, max_size=6))
def test_any_extra_feed_request_is_either_valid_or_one_contract_error(main: pb2.VideoRequest,
                                                                      extra: list[pb2.VideoRequest]) -> None:
    msg = pb2.Description(name="h", contract_version=1, video=main, extra_video=extra)
    try:
        d = codec.description_from_pb(msg)
    except ContractError as exc:
        assert "\n" not in str(exc) and str(exc).startswith("sidecar 'h'")
        return
    assert d.video is not None and len(d.extra_video) <= codec.MAX_VIDEO_FEEDS
    for w in (d.video, *(f.wants for f in d.extra_video)):
        width, height = codec.scaled_size(1920, 1080, w)
        assert 0 < width * height <= max(codec.MAX_EXACT_PIXELS, 1920 * 1080) and 0 <= w.fps <= codec.MAX_FPS
