"""`sidecast server` under load: control API latency, playlist serving, per-stream overhead, how many streams a
box holds, captions through one shared stt sidecar, publisher-connect to first segment.

Parts (``--parts``, default all), each against a baseline in the same run where one exists:

- ``api``: p50/p99 of control calls with 100 streams registered (status, get, list, create).
- ``playlists``: playlist GETs/s and p50/p99 with 1,000 concurrent players (bench/serving.py's load generator),
  on the player port for an open stream and a token-protected one, against `sidecast run --serve`'s stack
  (``python -m sidecast.core.serve``) on the same folder. The playlists and segments are written as a stream
  leaves them, so no encoder competes with the measurement.
- ``overhead``: N 360p pulls through the server against the same N as separate `sidecast run` processes:
  CPU seconds per stream per second and RSS per stream, each measured over the same window.
- ``capacity``: 360p single-rung transcoded pulls of a 720p25 H.264 live source, added one by one until one
  of them falls below real time: how many the box holds.
- ``captions``: pulls of real read speech (LibriVox, pocketsphinx-testdata) with captions, all through ONE
  shared stt sidecar (tiny.en): the sidecar's lag behind each stream at 1, 2, 4, 8 streams.
- ``connect``: publisher connect (a push session handed to the server) to the first segment in the stream's
  playlist.

Sources are live HLS on loopback: ffmpeg loops a clip in real time with ``-c copy`` (no encode cost).

    flock /tmp/sidecast-cpu.lock .venv/bin/python bench/server.py [--parts api,playlists] [--json]

Figures depend on what else runs on the machine: record ``uptime`` beside them (the script prints the load).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from devkit.ports import free_port  # noqa: E402

SIDECAST = str(Path(sys.executable).with_name("sidecast"))
ADMIN = "sk_bench_admin_key_000000000000000000"
LIBRIVOX = Path("/usr/share/pocketsphinx/test/data/librivox")


def load_avg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", "-y", *args], check=True, timeout=300)


def pct(xs: list[float], q: float) -> float:
    if not xs:
        return float("nan")
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * q))]


# ------------------------------------------------------------------------------ processes

def _proc_table() -> dict[int, tuple[int, float, int]]:
    """pid -> (ppid, cpu seconds, rss bytes) for every process."""
    tck = os.sysconf("SC_CLK_TCK")
    page = os.sysconf("SC_PAGE_SIZE")
    out = {}
    for p in Path("/proc").iterdir():
        if not p.name.isdigit():
            continue
        try:
            fields = (p / "stat").read_text().rsplit(")", 1)[1].split()
            rss = int((p / "statm").read_text().split()[1]) * page
        except (OSError, IndexError, ValueError):
            continue
        out[int(p.name)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / tck, rss)
    return out


def shared_sidecars(name: str) -> list[int]:
    """PIDs of this process's descendants that run ``sidecast sidecar NAME`` (the server's shared sidecar)."""
    table = _proc_table()
    mine: set[int] = {os.getpid()}
    grew = True
    while grew:
        more = {pid for pid, (ppid, _, _) in table.items() if ppid in mine} - mine
        grew = bool(more)
        mine |= more
    out = []
    for pid in mine:
        try:
            argv = (Path("/proc") / str(pid) / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if any(a == b"sidecar" and b == name.encode() for a, b in zip(argv, argv[1:], strict=False)):
            out.append(pid)
    return out


def tree(pids: list[int]) -> tuple[float, int, int]:
    """(cpu seconds, rss bytes, processes) of these processes and all their descendants, now."""
    table = _proc_table()
    children: dict[int, list[int]] = {}
    for pid, (ppid, _, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    seen: set[int] = set()
    todo = list(pids)
    while todo:
        pid = todo.pop()
        if pid in seen or pid not in table:
            continue
        seen.add(pid)
        todo.extend(children.get(pid, []))
    return sum(table[p][1] for p in seen), sum(table[p][2] for p in seen), len(seen)


@contextlib.contextmanager
def live_hls(work: Path, clip: Path, name: str = "src") -> Iterator[str]:
    """ffmpeg loops ``clip`` in real time into a live HLS playlist, served by sidecast's HTTP server."""
    from sidecast.core.serve import start_server

    out = work / name
    # A fresh folder each time: parts run one after another in one work folder, and a playlist and
    # segments left by an earlier part's ffmpeg (media sequence ~60 after two minutes) would pass the
    # wait below at once and be pulled; the new ffmpeg restarts at sequence 0, so the pulled stream
    # waited for a sequence number the source would reach only minutes later (capacity saw 0 streams).
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    proc = subprocess.Popen(
        ["ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", "-re", "-stream_loop", "-1", "-i", str(clip),
         "-c", "copy", "-f", "hls", "-hls_time", "2", "-hls_list_size", "6",
         "-hls_flags", "delete_segments+omit_endlist", str(out / "live.m3u8")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    handle = start_server(out, 0, host="127.0.0.1")
    try:
        wait(lambda: len(list(out.glob("*.ts"))) >= 2, 60, "the HLS source")
        yield handle.url + "live.m3u8"
    finally:
        handle.close()
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def wait(cond: Callable[[], Any], timeout: float, what: str, poll: float = 0.25) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(poll)
    raise SystemExit(f"timed out waiting for {what}")




class ServerProc:
    """`sidecast server` as a child process, with an API client."""

    def __init__(self, data: Path, *extra: str) -> None:
        self.api_port, self.media_port = free_port(), free_port()
        self.log = open(data.parent / f"{data.name}.log", "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [SIDECAST, "--log-level", "warning", "server", "--data-dir", str(data), "--api-port", str(self.api_port),
             "--media-port", str(self.media_port), "--media-host", "127.0.0.1", "--admin-key", ADMIN,
             "--rtmp-port", "0", "--srt-port", "0", *extra],
            stdout=subprocess.DEVNULL, stderr=self.log)
        self.api = httpx.Client(base_url=f"http://127.0.0.1:{self.api_port}", timeout=60,
                                headers={"X-API-Key": ADMIN})
        self.media = f"http://127.0.0.1:{self.media_port}/"

        def ready() -> bool:
            if self.proc.poll() is not None:
                raise SystemExit(f"sidecast server exited: see {self.log.name}")
            try:
                return self.api.get("/readyz").status_code == 200
            except httpx.HTTPError:
                return False

        wait(ready, 60, "the server")

    def create(self, doc: dict[str, Any]) -> dict[str, Any]:
        r = self.api.post("/v1/streams", json=doc)
        if r.status_code != 201:
            raise SystemExit(f"create failed: {r.status_code} {r.text}")
        return dict(r.json())

    def status(self, sid: str) -> dict[str, Any]:
        return dict(self.api.get(f"/v1/streams/{sid}/status").json())

    def close(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


# ------------------------------------------------------------------------------ parts

def part_api(work: Path, args: argparse.Namespace) -> dict[str, Any]:
    srv = ServerProc(work / "api")
    try:
        creates = []
        for i in range(100):
            t0 = time.perf_counter()
            srv.create({"id": f"cam{i:03d}", "ingest": "push", "options": {"ladder": "360p:800k"}})
            creates.append(time.perf_counter() - t0)

        async def run() -> dict[str, list[float]]:
            out: dict[str, list[float]] = {"status": [], "get": [], "list": []}
            rng = random.Random(1)
            stop = time.perf_counter() + args.seconds
            async with httpx.AsyncClient(base_url=str(srv.api.base_url), headers={"X-API-Key": ADMIN},
                                         timeout=30, limits=httpx.Limits(max_connections=16)) as client:
                async def user() -> None:
                    while time.perf_counter() < stop:
                        kind = rng.choices(["status", "get", "list"], [6, 3, 1])[0]
                        sid = f"cam{rng.randrange(100):03d}"
                        path = {"status": f"/v1/streams/{sid}/status", "get": f"/v1/streams/{sid}",
                                "list": "/v1/streams?limit=100"}[kind]
                        t0 = time.perf_counter()
                        r = await client.get(path)
                        r.raise_for_status()
                        out[kind].append(time.perf_counter() - t0)

                await asyncio.gather(*(user() for _ in range(16)))
            return out

        cpu0 = tree([srv.proc.pid])[0]
        lat = asyncio.run(run())
        cpu = tree([srv.proc.pid])[0] - cpu0
        n = sum(len(v) for v in lat.values())
        res = {"streams": 100, "concurrency": 16, "requests": n, "rps": round(n / args.seconds, 1),
               "server_cpu_ms_per_req": round(cpu / n * 1000, 2),
               "create_p50_ms": round(pct(creates, 0.5) * 1000, 1), "create_p99_ms": round(pct(creates, 0.99) * 1000, 1)}
        for k, v in lat.items():
            res[f"{k}_p50_ms"] = round(pct(v, 0.5) * 1000, 1)
            res[f"{k}_p99_ms"] = round(pct(v, 0.99) * 1000, 1)
        return res
    finally:
        srv.close()


def _write_stream(folder: Path, segments: int = 6) -> None:
    """A stream folder as the publisher leaves it: a 6-segment live playlist and its segments (~200 KB each)."""
    from datetime import UTC, datetime, timedelta

    from sidecast.hls import Segment
    from sidecast.hls.live import LivePlaylist

    (folder / "video/360p").mkdir(parents=True, exist_ok=True)
    pl = LivePlaylist(folder / "video/360p/index.m3u8", 2.0, 6)
    t0 = datetime.now(UTC)
    for i in range(100, 100 + segments):
        (folder / f"e/ev1/r1/video/360p/seg_{i:06d}.ts").parent.mkdir(parents=True, exist_ok=True)
        (folder / f"e/ev1/r1/video/360p/seg_{i:06d}.ts").write_bytes(os.urandom(200_000))
        pl.add(Segment(f"../../e/ev1/r1/video/360p/seg_{i:06d}.ts", 2.0, program_date_time=t0 + timedelta(seconds=2 * i)))


def part_playlists(work: Path, args: argparse.Namespace) -> dict[str, Any]:
    import serving  # bench/serving.py: the load generator

    srv = ServerProc(work / "pl")
    results: dict[str, Any] = {}
    try:
        srv.create({"id": "open", "ingest": "push", "enabled": False})
        srv.create({"id": "locked", "ingest": "push", "enabled": False, "settings": {"playback_protection": True}})
        for sid in ("open", "locked"):
            _write_stream(work / "pl" / "media" / sid)
        tok = srv.api.post("/v1/streams/locked/playback-token", json={"ttl": 3600}).json()["token"]
        targets = {"server: open stream": (srv.media_port, "/open/video/360p/index.m3u8", srv.proc.pid),
                   "server: token on every request": (srv.media_port, f"/locked/t/{tok}/video/360p/index.m3u8",
                                                      srv.proc.pid)}
        base_port = free_port()
        baseline = subprocess.Popen([sys.executable, "-m", "sidecast.core.serve", str(work / "pl" / "media" / "open"),
                                     "--port", str(base_port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        targets["baseline: sidecast run --serve stack"] = (base_port, "/video/360p/index.m3u8", baseline.pid)

        def baseline_up() -> bool:
            try:
                return httpx.get(f"http://127.0.0.1:{base_port}/video/360p/index.m3u8").status_code == 200
            except httpx.HTTPError:
                return False

        try:
            wait(baseline_up, 30, "the baseline server")
            for name, (port, path, pid) in targets.items():
                assert httpx.get(f"http://127.0.0.1:{port}{path}").status_code == 200, name
                for mode, interval in (("saturate", 0.0), ("live", 2.0)):
                    cpu0 = tree([pid])[0]
                    r = asyncio.run(serving.load(port, args.clients, args.seconds, interval, path=path))
                    r["cpu_ms_per_req"] = (tree([pid])[0] - cpu0) / max(r["requests"], 1) * 1000
                    results[f"{name} [{mode}]"] = {k: (round(v, 2) if isinstance(v, float) else v)
                                                   for k, v in r.items()}
        finally:
            baseline.terminate()
            baseline.wait(10)
    finally:
        srv.close()
    return {"clients": args.clients, "seconds": args.seconds, "results": results}


def _clip(work: Path, size: str, seconds: int, rate: int = 25) -> Path:
    out = work / f"clip-{size}.mp4"
    if not out.exists():
        ffmpeg("-f", "lavfi", "-i", f"testsrc2=size={size}:rate={rate}:duration={seconds}", "-f", "lavfi", "-i",
               f"sine=frequency=440:sample_rate=48000:duration={seconds}", "-c:v", "libx264", "-preset", "veryfast",
               "-g", str(rate * 2), "-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "96k", str(out))
    return out


def _publish_delays(readers: dict[str, Callable[[], str | None]], seconds: float) -> dict[str, dict[str, float]]:
    """For each stream, how long after its end each new segment appeared in the playlist (wall clock minus
    PROGRAM-DATE-TIME + duration: media time 0 is the wall clock when the source opened), sampled every 0.5 s.

    A stream that keeps up publishes every segment the same delay after its end; one that falls behind
    publishes each later than the last. ``growth`` (median delay of the second half of the window minus the
    first) says which, free of the 2 s granularity of a live HLS source that a media-time rate would show."""
    from datetime import UTC, datetime

    from sidecast.hls import parse_media

    seen: dict[str, dict[str, float]] = {sid: {} for sid in readers}
    t_start = time.monotonic()
    while time.monotonic() - t_start < seconds:
        now = datetime.now(UTC)
        for sid, read in readers.items():
            text = read()
            if not text:
                continue
            try:
                pl = parse_media(text)
            except Exception:
                continue
            for seg in pl.segments:
                if seg.uri not in seen[sid] and seg.program_date_time is not None:
                    end = seg.program_date_time.timestamp() + seg.duration
                    seen[sid][seg.uri] = now.timestamp() - end
        time.sleep(0.5)
    out = {}
    for sid, delays in seen.items():
        vals = list(delays.values())[1:]  # the first sighting may be an old segment
        half = len(vals) // 2
        if half < 2:
            out[sid] = {"segments": len(vals), "delay_median_s": float("nan"), "growth_s": float("inf")}
            continue
        out[sid] = {"segments": len(vals), "delay_median_s": round(statistics.median(vals), 2),
                    "growth_s": round(statistics.median(vals[half:]) - statistics.median(vals[:half]), 2)}
    return out


def _server_reader(srv: ServerProc, sid: str, rel: str = "video/360p/index.m3u8") -> Callable[[], str | None]:
    def read() -> str | None:
        try:
            r = httpx.get(f"{srv.media}{sid}/{rel}", timeout=5)
            return r.text if r.status_code == 200 else None
        except httpx.HTTPError:
            return None
    return read


def _file_reader(path: Path) -> Callable[[], str | None]:
    def read() -> str | None:
        try:
            return path.read_text()
        except OSError:
            return None
    return read


def _keeps_up(d: dict[str, float]) -> bool:
    return d["segments"] >= 4 and d["growth_s"] < 1.0


PULL_OPTS = {"ladder": "360p:800k", "snapshots_fps": 0, "window": 6}


def _run_media_time(outdir: Path) -> float:
    """Media seconds a `sidecast run` has published: the end of its last segment (segments.jsonl)."""
    end = 0.0
    try:
        for line in (outdir / "segments.jsonl").read_text().splitlines():
            doc = json.loads(line)
            end = max(end, float(doc["start"]) + float(doc["duration"]))
    except (OSError, ValueError, KeyError):
        pass
    return end


def part_overhead(work: Path, args: argparse.Namespace) -> dict[str, Any]:
    n = args.overhead_streams
    clip = _clip(work, "1280x720", 30)
    res: dict[str, Any] = {"streams": n, "source": "720p25 H.264 live HLS", "ladder": PULL_OPTS["ladder"]}
    with live_hls(work, clip) as src:
        srv = ServerProc(work / "oh")
        try:
            ids = [f"p{i}" for i in range(n)]
            for sid in ids:
                srv.create({"id": sid, "ingest": "pull", "source": src, "options": PULL_OPTS})
            wait(lambda: all(srv.status(s)["state"] == "live" for s in ids), 120, "the server's streams")
            time.sleep(10)
            cpu0, _, _ = tree([srv.proc.pid])
            t0 = time.monotonic()
            delays = _publish_delays({sid: _server_reader(srv, sid) for sid in ids}, args.window)
            cpu1, rss, procs = tree([srv.proc.pid])
            res["server"] = {"cpu_per_stream": round((cpu1 - cpu0) / (time.monotonic() - t0) / n, 3),
                             "rss_per_stream_mb": round(rss / n / 2**20, 1), "processes": procs,
                             "all_keep_up": all(_keeps_up(d) for d in delays.values()),
                             "publish_delay_median_s": round(statistics.median(d["delay_median_s"]
                                                                               for d in delays.values()), 2)}
        finally:
            srv.close()
        runs = []
        try:
            for i in range(n):
                out = work / f"run{i}"
                runs.append(subprocess.Popen([SIDECAST, "run", src, "-o", str(out), "--ladder", PULL_OPTS["ladder"],
                                              "--snapshots-fps", "0", "--window", "6", "--no-progress"],
                                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            wait(lambda: all(_run_media_time(work / f"run{i}") > 0 for i in range(n)), 120,
                 "the sidecast run processes")
            time.sleep(10)
            pids = [p.pid for p in runs]
            cpu0, _, _ = tree(pids)
            t0 = time.monotonic()
            delays = _publish_delays({f"run{i}": _file_reader(work / f"run{i}" / "video/360p/index.m3u8")
                                      for i in range(n)}, args.window)
            cpu1, rss, procs = tree(pids)
            dt = time.monotonic() - t0
            res["separate sidecast run"] = {
                "cpu_per_stream": round((cpu1 - cpu0) / dt / n, 3), "rss_per_stream_mb": round(rss / n / 2**20, 1),
                "processes": procs, "all_keep_up": all(_keeps_up(d) for d in delays.values()),
                "publish_delay_median_s": round(statistics.median(d["delay_median_s"] for d in delays.values()), 2)}
        finally:
            for p in runs:
                p.send_signal(signal.SIGINT)
            for p in runs:
                try:
                    p.wait(30)
                except subprocess.TimeoutExpired:
                    p.kill()
    s, r = res["server"], res["separate sidecast run"]
    res["overhead_per_stream"] = {"cpu": round(s["cpu_per_stream"] - r["cpu_per_stream"], 3),
                                  "rss_mb": round(s["rss_per_stream_mb"] - r["rss_per_stream_mb"], 1)}
    return res


def part_capacity(work: Path, args: argparse.Namespace) -> dict[str, Any]:
    clip = _clip(work, "1280x720", 30)
    steps = []
    held = 0
    with live_hls(work, clip) as src:
        srv = ServerProc(work / "cap")
        try:
            ids: list[str] = []
            for n in range(1, args.max_streams + 1):
                sid = f"c{n}"
                srv.create({"id": sid, "ingest": "pull", "source": src, "options": PULL_OPTS})
                ids.append(sid)
                try:
                    wait(lambda: all(srv.status(s)["state"] == "live" for s in ids), 90, "live")
                except SystemExit:
                    steps.append({"streams": n, "all_live": False})
                    break
                time.sleep(8)
                cpu0 = tree([srv.proc.pid])[0]
                t0 = time.monotonic()
                delays = _publish_delays({sid: _server_reader(srv, sid) for sid in ids}, args.window)
                cpu1, rss, _ = tree([srv.proc.pid])
                ok = all(_keeps_up(d) for d in delays.values())
                steps.append({"streams": n, "real_time": ok,
                              "delay_growth_worst_s": max(d["growth_s"] for d in delays.values()),
                              "publish_delay_median_s": round(statistics.median(
                                  d["delay_median_s"] for d in delays.values()), 2),
                              "cpu_cores": round((cpu1 - cpu0) / (time.monotonic() - t0), 2),
                              "rss_total_mb": round(rss / 2**20), "load": load_avg()})
                print(f"  capacity: {steps[-1]}", flush=True)
                if not ok:
                    break
                held = n
        finally:
            srv.close()
    return {"source": "720p25 H.264 live HLS (loopback)", "ladder": PULL_OPTS["ladder"], "held_in_real_time": held,
            "steps": steps}


def _speech_clip(work: Path) -> Path:
    out = work / "speech.mp4"
    if out.exists():
        return out
    wavs = sorted(LIBRIVOX.glob("*.wav"))
    if not wavs:
        raise SystemExit("pocketsphinx-testdata is missing (./dev.sh install)")
    listing = work / "wavs.txt"
    listing.write_text("".join(f"file '{w}'\n" for w in wavs))
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=320x180:rate=25", "-f", "concat", "-safe", "0", "-i", str(listing),
           "-shortest", "-c:v", "libx264", "-preset", "veryfast", "-g", "50", "-pix_fmt", "yuv420p",
           "-c:a", "aac", "-ar", "48000", "-b:a", "96k", str(out))
    return out


class InProcess:
    """`sidecast server` in this process (push sessions need the server's handler), with the same API client."""

    def __init__(self, data: Path, sidecar_args: dict[str, list[str]] | None = None) -> None:
        from sidecast.core.server.app import SidecastServer
        from sidecast.core.server.config import ServerConfig

        cfg = ServerConfig(data_dir=data, api_port=0, media_port=0, media_host="127.0.0.1", admin_key=ADMIN,
                           log_level="warning", rtmp_port=0, srt_port=0, sidecar_args=sidecar_args or {})
        self.server = SidecastServer(cfg).start()
        assert self.server.api is not None and self.server.media is not None
        self.api = httpx.Client(base_url=self.server.api.url, headers={"X-API-Key": ADMIN}, timeout=60)
        self.media = self.server.media.url

    def status(self, sid: str) -> dict[str, Any]:
        return dict(self.api.get(f"/v1/streams/{sid}/status").json())

    def push(self, sid: str, clip: Path, options: dict[str, Any]) -> Any:
        from devkit.pushsession import FfmpegSession

        r = self.api.post("/v1/streams", json={"id": sid, "ingest": "push", "options": options})
        key = r.json()["key"]["key"]
        self.server.authority.authorize("rtmp", key, "127.0.0.1:1")
        session = FfmpegSession(sid, clip, loop=True)
        self.server.push_handler.accept(session)
        return session

    def close(self) -> None:
        self.api.close()
        self.server.close()


def part_captions(work: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Pushed feeds (paced in real time, like a studio contribution) with captions, all through one stt.

    ``--stt-batch off,on`` runs the steps once per mode (a fresh server each), so the sidecar's pass
    batching is compared with one pass at a time (``sidecast sidecar stt --batch off``) in the same run."""
    out: dict[str, Any] = {"model": "tiny.en (shared, one process)", "feeds": "pushed LibriVox reading, paced in real time"}
    for mode in args.stt_batch.split(","):
        for workers in args.stt_workers.split(","):
            for k, variant in enumerate(args.stt_variants.split(";")):
                label = f"batch_{mode}_workers_{workers}" + (f"_{variant.strip()}" if variant.strip() else "")
                out[label] = _caption_steps(work, args, mode, workers, variant.split(), k)
    return out


def _caption_steps(work: Path, args: argparse.Namespace, mode: str, workers: str = "0",
                   extra: list[str] | None = None, k: int = 0) -> dict[str, Any]:
    clip = _speech_clip(work)
    opts = {"ladder": "180p:200k", "snapshots_fps": 0, "sidecars": ["stt"], "vertical": "off"}
    steps = []
    data = work / f"cc-{mode}-{workers}-{k}"
    srv = InProcess(data, sidecar_args={"stt": ["--batch", mode, "--workers", workers, *(extra or [])]})
    sessions = []
    try:
        ids: list[str] = []
        for n in (int(x) for x in args.caption_streams.split(",")):
            while len(ids) < n:
                sid = f"t{len(ids) + 1}"
                sessions.append(srv.push(sid, clip, opts))
                ids.append(sid)
            wait(lambda: all(srv.status(s)["state"] == "live" for s in ids), 180, "caption streams live")
            time.sleep(15)
            lags: dict[str, list[float]] = {s: [] for s in ids}
            t_end = time.monotonic() + args.window
            first = {s: srv.status(s) for s in ids}
            stt_pids = shared_sidecars("stt")
            stt_cpu0 = tree(stt_pids)[0]
            t0 = time.monotonic()
            while time.monotonic() < t_end:
                for s in ids:
                    for sc in srv.status(s)["sidecars"]:
                        if sc["name"] == "stt" and sc["lag"] is not None:
                            lags[s].append(sc["lag"])
                time.sleep(1.0)
            dt = time.monotonic() - t0
            # the shared stt's CPU over the window (the process and its children): per stream, CPU seconds per
            # second of audio while the feeds run in real time (speed_min ~1)
            stt_cpu = tree(stt_pids)[0] - stt_cpu0
            last = {s: srv.status(s) for s in ids}
            published = sum(last[s]["segments"] - first[s]["segments"] for s in ids)
            late = sum(last[s]["late_segments"] - first[s]["late_segments"] for s in ids)
            speeds = [((last[s]["media_time"] or 0) - (first[s]["media_time"] or 0)) / dt for s in ids]
            p95s = [pct(v, 0.95) for v in lags.values() if v]
            all_lags = [x for v in lags.values() for x in v]
            spans = {s: (first[s]["media_time"] or 0.0, last[s]["media_time"] or 0.0) for s in ids}
            reports = _stt_reports(data, spans)
            commits = _lags(reports, "commit_lag_s")
            # before 2026-12-01 11:15 UTC: every report that ENDS in the window, so 0-10 s of words from before it
            # (the start-up, for some streams) counted too, depending on where a stream's reports fell
            partial = _lags(_stt_reports(data, spans, whole=False), "commit_lag_s")
            if args.caption_dump:
                dump = Path(args.caption_dump)
                dump.mkdir(parents=True, exist_ok=True)
                (dump / f"{data.name}-{n}.json").write_text(json.dumps(
                    {"streams": n, "stt_args": " ".join(extra or []), "spans": spans, "load": load_avg(),
                     "reports": _stt_reports(data, {s: (0.0, 1e9) for s in ids})}))
                for log_file in data.rglob("sidecar-stt.log"):  # its batch trace: the start-up, slow batches
                    shutil.copyfile(log_file, dump / f"{data.name}-{n}-{log_file.name}")
            c95s = [pct(v, 0.95) for v in commits.values() if v]
            all_commits = [x for v in commits.values() for x in v]
            steps.append({"batch": mode, "workers": workers, "stt_args": " ".join(extra or []), "streams": n, "stt_lag_p50_s": round(pct(all_lags, 0.5), 2),
                          "stt_lag_p95_s_worst_stream": round(max(p95s), 2) if p95s else None,
                          "streams_lag_p95_within_3_5_s": sum(1 for p in p95s if p <= 3.5),
                          "words": len(all_commits), "commit_p50_s": round(pct(all_commits, 0.5), 2),
                          "commit_p95_s_worst_stream": round(max(c95s), 2) if c95s else None,
                          "commit_p95_s": round(pct(all_commits, 0.95), 2) if all_commits else None,
                          "commit_worst_s": round(max(all_commits), 2) if all_commits else None,
                          "streams_commit_within_targets": sum(_within(v) for v in commits.values()),
                          "streams_within_targets_and_6_s": sum(_within(v, worst=6.0) for v in commits.values()),
                          "per_stream_commit_p50_p95_max": {s: [round(pct(v, 0.5), 2), round(pct(v, 0.95), 2),
                                                               round(max(v), 2)] for s, v in commits.items() if v},
                          "per_stream_words_reports": {s: [len(commits[s]), len(reports[s])] for s in ids},
                          "streams_commit_within_targets_partial_reports": sum(_within(v) for v in partial.values()),
                          "commit_p50_p95_partial_reports": [round(pct(xs, 0.5), 2), round(pct(xs, 0.95), 2)]
                          if (xs := [x for v in partial.values() for x in v]) else None,
                          **_cue_figures(reports),
                          "chunk": _chunk_summary(reports),
                          "stt_processes": len(stt_pids), "stt_cpu_cores": round(stt_cpu / dt, 3),
                          "stt_cpu_per_stream": round(stt_cpu / dt / n, 4),
                          "speed_min": round(min(speeds), 3), "segments": published, "late_segments": late,
                          "load": load_avg()})
            print(f"  captions: {steps[-1]}", flush=True)
        sidecars = srv.api.get("/v1/server").json()["sidecars"]
    finally:
        for session in sessions:
            session.close()
        srv.close()
    return {"sidecar_processes": len(sidecars), "steps": steps}


def _stt_reports(data: Path, spans: dict[str, tuple[float, float]], whole: bool = True) -> dict[str, list[dict[str, Any]]]:
    """Per stream, the stt sidecar's ``stt_passes`` reports (results.jsonl, one every 10 s of audio) that cover
    audio within the stream's media-time span: each carries the commit latency of every word committed since
    the report before (media seconds between the word's end and the newest audio the sidecar had when it
    committed the word) and the shared model's load (pace, chunk mode, utilisation). ``whole``: only reports
    whose audio since the report before lies wholly in the span; otherwise every report that ends in it,
    which also counts up to 10 s of words from before the span (in a 30 s window, 2 or 3 reports a stream,
    depending on where its reports fall: 57 or 86 words a stream in one run)."""
    out: dict[str, list[dict[str, Any]]] = {s: [] for s in spans}
    for path in data.rglob("results.jsonl"):
        sid = path.parts[-4]  # <work>/<stream>/<event>/r<attempt>/results.jsonl
        if sid not in spans:
            continue
        lo, hi = spans[sid]
        recs = [json.loads(line) for line in path.read_text().splitlines()]
        recs = sorted((r for r in recs if r.get("kind") == "stt_passes"), key=lambda r: r["start"])
        for before, rec in zip([None, *recs], recs, strict=False):
            since = before["start"] if before is not None else 0.0
            if rec["start"] <= hi and (since >= lo if whole else rec["start"] > lo):
                out[sid].append(rec)
    return out


def _lags(reports: dict[str, list[dict[str, Any]]], name: str) -> dict[str, list[float]]:
    """Per stream, every latency its reports carry under ``name`` (``commit_lag_s``, ``cue_lag_s``)."""
    return {s: [x for r in reps for x in r["data"].get(name, [])] for s, reps in reports.items()}


def _within(lags: list[float], worst: float | None = None) -> bool:
    """A stream within the caption latency targets (issue #19's: median <= 2.0 s, p95 <= 3.5 s), and with
    ``worst``, no word later than that either."""
    return bool(lags) and pct(lags, 0.5) <= 2.0 and pct(lags, 0.95) <= 3.5 and (worst is None or max(lags) <= worst)


def _cue_figures(reports: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """Word -> final cue latency per stream (media seconds from the word's end to the audio the sidecar had
    when the word's cue was final: its commit plus the cue's closing, what a viewer waits on before the
    core's carriage), from the same whole reports as the commit figures; the same targets."""
    cues = _lags(reports, "cue_lag_s")
    everything = [x for v in cues.values() for x in v]
    if not everything:
        return {"cue_figures": None}
    return {"cue_p50_s": round(pct(everything, 0.5), 2), "cue_p95_s": round(pct(everything, 0.95), 2),
            "cue_p95_s_worst_stream": round(max(pct(v, 0.95) for v in cues.values() if v), 2),
            "streams_cue_within_targets": sum(_within(v, worst=6.0) for v in cues.values()),
            "per_stream_cue_p50_p95_max": {s: [round(pct(v, 0.5), 2), round(pct(v, 0.95), 2), round(max(v), 2)]
                                           for s, v in cues.items() if v}}


def _chunk_summary(reports: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """The shared model's state over the window, from the streams' reports: chunk mode on in how many
    reports, its switches, the workers' utilisation and the scheduler's pace."""
    reps = [r["data"] for v in reports.values() for r in v]
    if not reps:
        return {}
    util = [r["utilisation"] for r in reps if "utilisation" in r]
    return {"reports": len(reps), "chunked": sum(1 for r in reps if r.get("chunked")),
            "switches": max((r.get("chunk_switches", 0) for r in reps), default=0),
            "utilisation_min_max": [min(util), max(util)] if util else None,
            "pace_max": max(r.get("pace_s", 0.0) for r in reps),
            "wait_avg_max": max(r.get("wait_avg_s", 0.0) for r in reps)}


def part_connect(work: Path, args: argparse.Namespace) -> dict[str, Any]:
    clip = _clip(work, "1280x720", 30)
    srv = InProcess(work / "connect")
    firsts, playlists = [], []
    try:
        for i in range(args.connects):
            sid = f"push{i}"
            t0 = time.monotonic()
            session = srv.push(sid, clip, {"ladder": "720p:3000k,360p:800k"})
            wait(lambda sid=sid: srv.status(sid)["segments"] >= 1, 60, "a segment")
            firsts.append(time.monotonic() - t0)
            wait(lambda sid=sid: httpx.get(f"{srv.media}{sid}/master.m3u8").status_code == 200, 30,
                 "the master playlist")
            playlists.append(time.monotonic() - t0)
            session.close()
            srv.api.post(f"/v1/streams/{sid}/stop")
    finally:
        srv.close()
    return {"ladder": "720p:3000k,360p:800k from 720p25, 2 s segments", "connects": args.connects,
            "first_segment_s": [round(x, 2) for x in firsts], "median_first_segment_s": round(statistics.median(firsts), 2),
            "median_master_playlist_s": round(statistics.median(playlists), 2)}


PARTS = {"api": part_api, "playlists": part_playlists, "overhead": part_overhead, "capacity": part_capacity,
         "captions": part_captions, "connect": part_connect}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated, from {', '.join(PARTS)}")
    ap.add_argument("--seconds", type=float, default=8.0, help="api/playlists measurement length")
    ap.add_argument("--clients", type=int, default=1000, help="concurrent players (playlists)")
    ap.add_argument("--window", type=float, default=40.0, help="seconds each stream measurement covers")
    ap.add_argument("--overhead-streams", type=int, default=3)
    ap.add_argument("--max-streams", type=int, default=12, help="capacity: stop after this many")
    ap.add_argument("--caption-streams", default="1,2,4,8")
    ap.add_argument("--stt-workers", default="0",
                    help="captions: the stt sidecar's --workers (0: its default), or e.g. 1,2 for both in one run")
    ap.add_argument("--stt-variants", default="",
                    help="caption steps once per variant: ';'-separated extra stt sidecar arguments, e.g. "
                         "'--vad whole --pacing fixed;' (an empty variant: the defaults)")
    ap.add_argument("--stt-batch", default="on",
                    help="captions: the stt sidecar's --batch, or off,on for both in one run")
    ap.add_argument("--caption-dump", default="", metavar="DIR",
                    help="captions: write every stream's stt_passes reports of each step to DIR (JSON)")
    ap.add_argument("--connects", type=int, default=3)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    try:
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    except ImportError:
        pass
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    work = Path(tempfile.mkdtemp(prefix="sidecast-bench-server-"))
    report: dict[str, Any] = {"cpus": os.cpu_count(), "load_before": load_avg()}
    try:
        for name in args.parts.split(","):
            print(f"== {name} (load {load_avg()})", flush=True)
            t0 = time.monotonic()
            report[name] = PARTS[name](work, args)
            report[name]["load_after"] = load_avg()
            report[name]["wall_s"] = round(time.monotonic() - t0, 1)
            print(json.dumps(report[name], indent=2), flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if args.json:
        print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
