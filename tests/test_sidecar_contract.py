"""The sidecar contract with real processes: health and reflection, once-per-request conversion, shared
memory, crashes and restarts, stalls, and sidecars that break the contract."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import m3u8
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from sidecast.contract import PROTO_ROOT, SERVICE, pb2, pb2_grpc
from sidecast.contract.shm import SHM_DIR, ShmRing, sweep_stale
from sidecast.core.ladder import parse_ladder
from sidecast.core.pipeline import Pipeline, RunConfig
from tests.conftest import ROOT, SIDECAST, ffmpeg, make_clip, run_sidecast, wait_for

TICKER = str(ROOT / "tests" / "plugins" / "ticker.py")


class Proc:
    """A sidecar process on a unix socket, waited for until it serves."""

    def __init__(self, sock: Path, *args: str, env: dict[str, str] | None = None, cmd: list[str] | None = None):
        self.sock = sock
        self.target = f"unix://{sock}"
        cmd = cmd or [sys.executable, TICKER, "--listen", self.target, *args]
        self.p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                  env={**os.environ, **(env or {})})
        deadline = time.monotonic() + 30
        with grpc.insecure_channel(self.target) as ch:
            while True:
                ready = grpc.channel_ready_future(ch)
                try:
                    ready.result(timeout=0.5)
                    break
                except grpc.FutureTimeoutError:
                    ready.cancel()
                    if self.p.poll() is not None or time.monotonic() > deadline:
                        out = self.p.stdout.read() if self.p.stdout else ""
                        raise AssertionError(f"sidecar did not start: {out}") from None

    def kill9(self) -> None:
        self.p.send_signal(signal.SIGKILL)
        self.p.wait()

    def stop(self) -> None:
        if self.p.poll() is None:
            self.p.terminate()
            try:
                self.p.wait(5)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()


@pytest.fixture
def sock_dir(tmp_path: Path) -> Iterator[Path]:
    """A short directory for unix sockets (their paths are capped at 108 bytes), removed after the test."""
    d = Path(f"/tmp/sc-{os.getpid()}-{tmp_path.name[-12:]}")
    d.mkdir(exist_ok=True)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def run_pipeline(source: Path, out: Path, addrs: dict[str, str], **kw: object) -> Pipeline:
    cfg = RunConfig(source=str(source), outdir=out, sidecar_addrs=addrs, ladder=parse_ladder("360p:800k"),
                    snapshots_fps=0, progress=False, **kw)  # type: ignore[arg-type]
    p = Pipeline(cfg)
    p.run()
    return p


def ticks(out: Path) -> list[dict[str, object]]:
    path = out / "results.jsonl"
    if not path.exists():
        return []
    return [json.loads(ln) for ln in path.read_text().splitlines() if '"tick"' in ln]


def my_rings() -> list[Path]:
    return list(SHM_DIR.glob(f"sidecast-{os.getpid()}-*"))


# ------------------------------------------------------------------ the server side


def test_every_sidecar_serves_health_reflection_and_describe(sock_dir: Path) -> None:
    sock = sock_dir / "scenecut.sock"
    proc = Proc(sock, cmd=[SIDECAST, "sidecar", "scenecut", "--listen", f"unix://{sock}", "--threshold", "0.5"])
    try:
        with grpc.insecure_channel(proc.target) as ch:
            health = health_pb2_grpc.HealthStub(ch)
            for service in ("", SERVICE):
                resp = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
                assert resp.status == health_pb2.HealthCheckResponse.SERVING
            refl = reflection_pb2_grpc.ServerReflectionStub(ch)
            answers = list(refl.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")])))
            names = {s.name for s in answers[0].list_services_response.service}
            assert {SERVICE, "grpc.health.v1.Health"} <= names
            desc = pb2_grpc.SidecarStub(ch).Describe(pb2.DescribeRequest(contract_version=1), timeout=5)
            assert desc.name == "scenecut" and desc.contract_version == 1
            assert desc.video.width == 160 and desc.video.pixel_format == pb2.PIXEL_FORMAT_GRAY8
            with pytest.raises(grpc.RpcError) as err:
                pb2_grpc.SidecarStub(ch).Describe(pb2.DescribeRequest(contract_version=7), timeout=5)
            assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    finally:
        proc.stop()


def test_sidecar_cli_lists_plugins_and_their_options() -> None:
    listing = run_sidecast("sidecars", check=True).stdout
    assert re.search(r"^scenecut\s+1\.0\.0\s+wants video", listing, re.M)
    helptext = run_sidecast("sidecar", "scenecut", "--help", check=True).stdout
    assert "--threshold" in helptext and "--listen" in helptext
    bad = run_sidecast("sidecar", "nosuch", "--listen", "/tmp/x.sock")
    assert bad.returncode != 0 and "no sidecar named 'nosuch'" in bad.stderr


# ------------------------------------------------------------------ the core side


def test_three_sidecars_asking_the_same_frames_cost_one_conversion(clip_720: Path, tmp_path: Path,
                                                                  sock_dir: Path) -> None:
    procs = [Proc(sock_dir / f"t{i}.sock") for i in range(3)]
    try:
        p = run_pipeline(clip_720, tmp_path, {f"t{i}": pr.target for i, pr in enumerate(procs)})
    finally:
        for pr in procs:
            pr.stop()
    assert p.fanout is not None and len(p.fanout.video_groups) == 1
    group = p.fanout.video_groups[0]
    assert (group.width, group.height) == (320, 180)
    got = ticks(tmp_path)
    by_link: dict[str, list[dict[str, object]]] = {}
    for r in got:
        by_link.setdefault(str(r["sidecar"]), []).append(r)
    assert sorted(by_link) == ["t0", "t1", "t2"]
    counts = {len(v) for v in by_link.values()}
    assert counts == {group.conversions}, "each converted frame reached all three sidecars"
    assert 55 <= group.conversions <= 61, "10 fps of a 6 s clip"
    assert all(r["data"]["w"] == 320 and r["data"]["h"] == 180 for r in got)  # type: ignore[index]
    assert all(lk.transport == "shm" for lk in p.links)
    assert not my_rings(), "rings are unlinked at the end of the run"


def test_bytes_transport_delivers_the_same_frames(clip_720: Path, tmp_path: Path, sock_dir: Path) -> None:
    proc = Proc(sock_dir / "b.sock")
    try:
        p = run_pipeline(clip_720, tmp_path, {"b": proc.target}, transport="bytes")
    finally:
        proc.stop()
    assert p.links[0].transport == "bytes"
    got = ticks(tmp_path)
    assert len(got) == p.fanout.video_groups[0].conversions >= 55  # type: ignore[union-attr]
    means = [r["data"]["mean"] for r in got]  # type: ignore[index]
    assert len(set(means)) > 10, "real, changing pixels arrived"


def test_kill_9_mid_stream_keeps_hls_going_and_results_resume_after_restart(
        clip_small: Path, tmp_path: Path, sock_dir: Path) -> None:
    sock = sock_dir / "k.sock"
    proc = Proc(sock)
    first_pid = proc.p.pid
    events: dict[str, float] = {}

    playlist = tmp_path / "video" / "360p" / "index.m3u8"

    def listed() -> int:
        return playlist.read_text().count("#EXTINF") if playlist.exists() else 0

    def chaos() -> None:
        # kill once the first process's results are being published; restart once a segment has been
        # published while it was down (the stream went on without it)
        wait_for(lambda: any(float(r["start"]) >= 1.5 for r in ticks(tmp_path)), 30,  # type: ignore[arg-type]
                 "results from the first process")
        proc.kill9()
        events["killed"] = time.monotonic()
        at_kill = listed()
        wait_for(lambda: listed() > at_kill, 30, "a segment published while the sidecar is down")
        events["restart"] = time.monotonic()
        events["new"] = Proc(sock)  # type: ignore[assignment]

    t = threading.Thread(target=chaos)
    t.start()
    try:
        p = run_pipeline(clip_small, tmp_path, {"k": f"unix://{sock}"}, realtime=True, decision_window=0.5)
    finally:
        t.join()
        new = events.get("new")
        if isinstance(new, Proc):
            new.stop()
    pl = m3u8.load(str(tmp_path / "video" / "360p" / "index.m3u8"))
    assert [s.uri for s in pl.segments] == [f"seg_{i:06d}.ts" for i in range(4)], "no media-sequence gap"
    assert abs(sum(s.duration for s in pl.segments) - 8.0) < 0.2
    got = ticks(tmp_path)
    pids = {r["data"]["pid"] for r in got}  # type: ignore[index]
    assert first_pid in pids and len(pids) == 2, "results came from the first process and from its replacement"
    after = [r for r in got if r["data"]["pid"] != first_pid]  # type: ignore[index]
    assert len(after) >= 10 and max(float(r["start"]) for r in after) > 6.0  # type: ignore[arg-type]
    assert p.links[0].stats.reconnects >= 1


def test_a_sidecar_that_sleeps_forever_does_not_hold_segments_past_the_window(
        clip_small: Path, tmp_path: Path, sock_dir: Path) -> None:
    proc = Proc(sock_dir / "s.sock", "--mode", "sleep")
    try:
        # a drain of 1 s, not the default 5: the bound on the last segment is the same rule, reached sooner
        p = run_pipeline(clip_small, tmp_path, {"s": proc.target}, realtime=True, decision_window=0.5,
                         drain_timeout=1.0)
    finally:
        proc.stop()
    pl = m3u8.load(str(tmp_path / "video" / "360p" / "index.m3u8"))
    assert len(pl.segments) == 4 and pl.is_endlist
    *middle, last = p.result_waits
    assert middle and max(middle) <= 0.5 + 0.3, p.result_waits
    assert p.cfg.drain_timeout == 1.0 and last <= p.cfg.drain_timeout + 0.5, p.result_waits


@pytest.mark.parametrize(("mode", "message"), [
    ("wrong-version", "contract version 2"),
    ("impossible", "1000 fps"),
])
def test_sidecars_breaking_the_contract_are_disabled_with_a_clear_error(
        mode: str, message: str, clip_720: Path, tmp_path: Path, sock_dir: Path) -> None:
    proc = Proc(sock_dir / "w.sock", "--mode", mode)
    try:
        res = run_sidecast("run", str(clip_720), "-o", str(tmp_path), "--ladder", "360p:800k",
                           "--sidecar-addr", f"w={proc.target}", "--no-progress")
    finally:
        proc.stop()
    assert res.returncode == 0, res.stderr
    assert "Traceback" not in res.stderr
    assert "sidecar disabled" in res.stderr and message in res.stderr
    assert m3u8.load(str(tmp_path / "video" / "360p" / "index.m3u8")).is_endlist


def test_malformed_results_are_dropped_and_good_ones_kept(clip_720: Path, tmp_path: Path, sock_dir: Path) -> None:
    proc = Proc(sock_dir / "m.sock", "--mode", "malformed")
    try:
        p = run_pipeline(clip_720, tmp_path, {"m": proc.target})
    finally:
        proc.stop()
    got = ticks(tmp_path)
    sent = p.fanout.video_groups[0].conversions  # type: ignore[union-attr]
    assert abs(len(got) - sent / 3) <= 2, "every third result was well-formed and arrived"
    assert any("no kind" in e for e in p.links[0].stats.errors)
    assert any("invalid JSON" in e for e in p.links[0].stats.errors)


def test_a_v1_core_talks_to_a_sidecar_built_from_a_proto_with_extra_fields(
        clip_720: Path, tmp_path: Path, sock_dir: Path) -> None:
    newer = tmp_path / "newer-proto"
    src = PROTO_ROOT / "sidecast" / "sidecar" / "v1" / "sidecar.proto"
    dst = newer / "sidecast" / "sidecar" / "v1" / "sidecar.proto"
    dst.parent.mkdir(parents=True)
    text = src.read_text()
    text = text.replace("  repeated VideoRequest extra_video = 12;\n}",
                        "  repeated VideoRequest extra_video = 12;\n  string extra_note = 40;\n}")
    text = text.replace("    Generic generic = 6;\n  }\n}", "    Generic generic = 6;\n  }\n  double extra_score = 41;\n}")
    assert text.count("extra_note") == 1 and text.count("extra_score") == 1
    dst.write_text(text)
    proc = Proc(sock_dir / "n.sock", env={"SIDECAST_PROTO_ROOT": str(newer)})
    try:
        p = run_pipeline(clip_720, tmp_path / "out", {"n": proc.target})
    finally:
        proc.stop()
    assert p.links[0].failed is None
    assert len(ticks(tmp_path / "out")) >= 55


@pytest.fixture(scope="module")
def clip_2s(media_dir: Path) -> Path:
    """2 s of 640x360 with audio: what is checked here is sent when the stream starts, and a paced run of the
    8 s ``clip_small`` spent 8 s of real time to check it."""
    return make_clip(media_dir / "clip360-2s.mp4", 2.0, "640x360")


@pytest.mark.parametrize(("rate_control", "realtime"), [("crf", False), ("vbr", True)])
def test_the_static_rate_control_mode_and_whether_the_stream_is_live_reach_the_sidecar(
        clip_2s: Path, tmp_path: Path, sock_dir: Path, rate_control: str, realtime: bool) -> None:
    proc = Proc(sock_dir / "info.sock", "--mode", "echo-info")
    try:
        run_pipeline(clip_2s, tmp_path, {"info": proc.target}, rate_control=rate_control, realtime=realtime)
    finally:
        proc.stop()
    echoed = [json.loads(ln) for ln in (tmp_path / "results.jsonl").read_text().splitlines() if "stream_info" in ln]
    assert len(echoed) == 1, echoed
    rends = echoed[0]["data"]["renditions"]
    assert rends == [{"name": "360p", "max_bitrate": 800_000, "crf": 23.0, "rate_control": rate_control}]
    # A file run read as fast as it goes is not live (a sidecar must not skip any of it); paced, it is.
    assert echoed[0]["data"]["params"]["stream.live"] == ("true" if realtime else "false")


def test_a_rendition_without_the_rate_control_field_reads_as_capped_crf() -> None:
    """A core older than the field sends none (unset enum); an unknown newer value is read the same way."""
    from sidecast.contract import codec

    old_core = pb2.StreamStart(stream_id="s", renditions=[pb2.Rendition(name="720p", max_bitrate=3_000_000, crf=23)])
    newer = pb2.StreamStart(stream_id="s", renditions=[pb2.Rendition(name="720p", rate_control=7)])
    wire = pb2.StreamStart.FromString(old_core.SerializeToString())
    assert codec.stream_info_from_pb(wire).renditions[0].rate_control == "crf"
    assert codec.stream_info_from_pb(newer).renditions[0].rate_control == "crf"
    vbr = codec.stream_info_to_pb(codec.stream_info_from_pb(
        pb2.StreamStart(stream_id="s", renditions=[pb2.Rendition(name="720p", rate_control=pb2.RATE_CONTROL_VBR)])))
    assert vbr.renditions[0].rate_control == pb2.RATE_CONTROL_VBR


def test_a_hints_size_crosses_the_wire_and_an_older_sidecars_hint_means_the_renditions_size() -> None:
    from sidecast.contract import codec
    from sidecast.contract.records import BitrateHint, RenditionHint

    hint = BitrateHint(segment=3, start=6.0, end=8.0, renditions=(
        RenditionHint("720p", crf=27.5, max_bitrate=3_000_000, width=960, height=540), RenditionHint("360p")))
    wire = pb2.Result.FromString(codec.result_to_pb(hint).SerializeToString())
    assert codec.result_from_pb(wire) == hint
    # a sidecar built before the fields sends none: 0 x 0, "the rendition's own size"
    old = pb2.Result(start=0, end=2, bitrate=pb2.BitrateHint(segment=0, renditions=[
        pb2.RenditionHint(rendition="720p", crf=24)]))
    got = codec.result_from_pb(pb2.Result.FromString(old.SerializeToString()))
    assert isinstance(got, BitrateHint) and (got.renditions[0].width, got.renditions[0].height) == (0, 0)


def test_scenecut_plugin_finds_the_cuts_end_to_end(media_dir: Path, tmp_path: Path) -> None:
    parts = []
    for i, src in enumerate(["testsrc2", "smptebars", "mandelbrot"]):
        part = media_dir / f"shot{i}.mp4"
        ffmpeg("-f", "lavfi", "-i", f"{src}=size=640x360:rate=30:duration=1.5" if src != "mandelbrot"
               else "mandelbrot=size=640x360:rate=30", "-t", "1.5", "-c:v", "libx264", "-preset", "ultrafast",
               "-pix_fmt", "yuv420p", str(part))
        parts.append(part)
    lst = media_dir / "shots.txt"
    lst.write_text("".join(f"file '{p}'\n" for p in parts))
    clip = media_dir / "cuts.mp4"
    ffmpeg("-f", "concat", "-safe", "0", "-i", str(lst), "-c", "copy", str(clip))
    res = run_sidecast("run", str(clip), "-o", str(tmp_path), "--sidecars", "scenecut", "--ladder", "360p:800k",
                       "--no-progress", check=True)
    assert "scenecut: " in res.stdout
    cuts = [json.loads(ln) for ln in (tmp_path / "results.jsonl").read_text().splitlines()]
    times = sorted(c["start"] for c in cuts if c["kind"] == "scene_cut")
    assert len(times) == 2, times
    assert abs(times[0] - 1.5) <= 0.11 and abs(times[1] - 3.0) <= 0.11


def test_rings_left_by_a_crashed_core_are_swept(tmp_path: Path) -> None:
    # The ring lives in this test's own directory: every core and server in the other xdist workers
    # sweeps SHM_DIR when it starts, and one of them can take the stale ring before this test looks.
    code = ("import os,signal,sys; from pathlib import Path; from sidecast.contract.shm import ShmRing; "
            "r=ShmRing(1024, 4, directory=Path(sys.argv[1])); "
            "print(r.name, flush=True); os.kill(os.getpid(), signal.SIGKILL)")
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True,
                          cwd=ROOT)
    name = proc.stdout.strip()
    assert name.startswith("sidecast-") and (tmp_path / name).exists()
    removed = sweep_stale(tmp_path)
    assert name in removed and not (tmp_path / name).exists()
    with ShmRing(64, 2, directory=tmp_path) as live:
        assert live.name not in sweep_stale(tmp_path), "a live core's ring is never swept"


def test_shm_ring_reference_counting_never_leaks_a_slot() -> None:
    with ShmRing(16, 3) as ring:
        refs = [ring.write(b"x" * 16, refs=2) for _ in range(3)]
        assert all(r is not None for r in refs)
        assert ring.write(b"y", refs=1) is None, "full ring: the frame is skipped, never blocks"
        for slot, _gen in refs:  # type: ignore[misc]
            ring.release(slot)
            ring.release(slot)
            ring.release(slot)  # a bogus extra release is ignored
        assert ring.in_use == 0


def test_local_sidecars_are_started_and_restarted_by_the_core(clip_small: Path, tmp_path: Path) -> None:
    cfg = RunConfig(source=str(clip_small), outdir=tmp_path, sidecars=["scenecut"], realtime=True,
                    ladder=parse_ladder("360p:800k"), snapshots_fps=0, progress=False)
    p = Pipeline(cfg)
    killed: list[int] = []

    def chaos() -> None:
        deadline = time.monotonic() + 20
        while not p.local and time.monotonic() < deadline:
            time.sleep(0.1)
        while time.monotonic() < deadline and not p.timeline.live_sidecars():
            time.sleep(0.1)
        at_live = p.media_time  # kill it once the stream has run 2 s of media with it
        wait_for(lambda: p.media_time >= at_live + 2.0, 20, "2 s of media with the sidecar running")
        proc = p.local[0].proc
        assert proc is not None
        killed.append(proc.pid)
        os.kill(proc.pid, signal.SIGKILL)

    t = threading.Thread(target=chaos)
    t.start()
    p.run()
    t.join()
    assert killed and p.local[0].restarts >= 1
    assert p.links[0].stats.reconnects >= 1
    assert len(m3u8.load(str(tmp_path / "video" / "360p" / "index.m3u8")).segments) == 4


def test_a_plugin_named_neither_stt_nor_autocrop_gets_captions_and_a_vertical_from_what_it_declares(
        clip_small: Path, tmp_path: Path, sock_dir: Path) -> None:
    """Outputs follow the result kinds a sidecar declares in Describe, not its name: "ticker" declares cues and
    crops, so the core publishes a subtitle rendition and the vertical ladder for it."""
    proc = Proc(sock_dir / "cc.sock", "--mode", "captions-and-crops")
    try:
        run_pipeline(clip_small, tmp_path, {"ticker": proc.target})
    finally:
        proc.stop()
    master = m3u8.load(str(tmp_path / "master.m3u8"))
    subs = [m for m in master.media if m.type == "SUBTITLES"]
    assert [(m.language, m.uri) for m in subs] == [("en", "subs/en/index.m3u8")]
    vtt = "".join(p.read_text() for p in sorted((tmp_path / "subs" / "en").glob("seg_*.vtt")))
    assert "tick 1" in vtt and "tick 5" in vtt, vtt[:500]
    vertical = m3u8.load(str(tmp_path / "vertical.m3u8"))
    assert vertical.playlists and all(p.stream_info.resolution[0] < p.stream_info.resolution[1]
                                      for p in vertical.playlists)
    crops = [json.loads(ln) for ln in (tmp_path / "crops.jsonl").read_text().splitlines()]
    assert len(crops) >= 40 and max(c["x"] for c in crops) > min(c["x"] for c in crops), "the path moved"


def test_a_generic_only_plugin_gets_no_caption_or_vertical_rendition(
        clip_small: Path, tmp_path: Path, sock_dir: Path) -> None:
    proc = Proc(sock_dir / "g.sock")
    try:
        run_pipeline(clip_small, tmp_path, {"ticker": proc.target})
    finally:
        proc.stop()
    assert not [m for m in m3u8.load(str(tmp_path / "master.m3u8")).media if m.type == "SUBTITLES"]
    assert not (tmp_path / "vertical.m3u8").exists() and not (tmp_path / "subs").exists()
    assert len(ticks(tmp_path)) >= 70
