"""Benchmark: personalised SSAI playlist generation (ads/ssai.py + ads/session.py).

A live stream of 3 video renditions + audio, 2 s segments, a 10-segment window, one 30 s break per minute
(EXT-X-CUE-OUT/-CONT/-IN on the reference rendition), 10,000 concurrent sessions, each with its own pod
(1-2 ads from a pool of 40 conditioned creatives). The window slides through two minutes of stream time
while requests arrive, so breaks enter and leave the window as they would live.

Figures printed, all on one thread (= per core), CPU time from time.process_time:
- baseline: the origin playlist parsed-model dumped as is (what an origin serves), same run;
- pure: ``ssai.stitch`` + dump for a session's placements (the pure function, no session bookkeeping);
- service: ``StitchService.render`` (session lookup, cached pods, seams ledger, stitch, dump), the work
  behind every HTTP request;
- p50/p99 latency of ``render``; memory per session (tracemalloc, after all sessions are live);
- optional (--http): the router under uvicorn on loopback, driven by an httpx client in this process.

Target (issue 7): >= 2,000 playlists/s per core with p99 <= 20 ms.

    .venv/bin/python bench/ssai.py [--sessions 10000] [--requests 30000] [--http]
"""

from __future__ import annotations

import argparse
import gc
import random
import statistics
import sys
import time
import tracemalloc
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sidecast.ads.models import AdPod, PodAd  # noqa: E402
from sidecast.ads.session import Fetcher, StitchService  # noqa: E402
from sidecast.ads.ssai import stitch  # noqa: E402
from sidecast.hls import MasterPlaylist, MediaPlaylist, Segment, parse_master  # noqa: E402
from sidecast.hls.breaks import Break  # noqa: E402

T0 = datetime(2026, 6, 1, 20, 0, tzinfo=UTC)
RENDITIONS = ("720p", "480p", "360p")
KEYS = [f"video/{r}/index.m3u8" for r in RENDITIONS] + ["audio/index.m3u8"]
SEG = 2.0
WINDOW = 10
BREAK_EVERY = 30   # segments (one minute)
BREAK_LEN = 15     # segments (30 s)


def media_window(key: str, first: int, cues: bool) -> MediaPlaylist:
    segs = []
    for k in range(first, first + WINDOW):
        tags: list[str] = []
        if cues:
            pos = k % BREAK_EVERY
            if pos == 5:
                tags.append(f"#EXT-X-CUE-OUT:{BREAK_LEN * SEG:g}")
            elif 5 < pos < 5 + BREAK_LEN:
                tags.append(f"#EXT-X-CUE-OUT-CONT:ElapsedTime={(pos - 5) * SEG:g},Duration={BREAK_LEN * SEG:g}")
            elif pos == 5 + BREAK_LEN:
                tags.append("#EXT-X-CUE-IN")
        segs.append(Segment(f"seg_{k:06d}.ts", SEG, "", False, T0 + timedelta(seconds=k * SEG), tuple(tags)))
    return MediaPlaylist(target_duration=2, segments=segs, media_sequence=first, version=3)


MASTER = parse_master("\n".join([
    "#EXTM3U", "#EXT-X-VERSION:3",
    '#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID="aud",NAME="main",DEFAULT=YES,URI="audio/index.m3u8"',
    *[line for r, h in zip(RENDITIONS, (720, 480, 360), strict=True) for line in (
        f'#EXT-X-STREAM-INF:BANDWIDTH={h * 4000},RESOLUTION={h * 16 // 9}x{h},CODECS="avc1.640028,mp4a.40.2",'
        'AUDIO="aud"', f"video/{r}/index.m3u8")],
]))


class MemoryOrigin(Fetcher):
    """The origin's playlists as models in memory, moved along a live clock by ``advance``."""

    def __init__(self, ads: dict[str, MediaPlaylist]) -> None:
        super().__init__()
        self.first = 0
        self.ads = ads
        self.windows: dict[tuple[str, int], MediaPlaylist] = {}

    def advance(self, first: int) -> None:
        self.first = first

    def media(self, loc: str) -> MediaPlaylist:
        if loc in self.ads:
            return self.ads[loc]
        key = loc.split("/origin/", 1)[1]
        wk = (key, self.first)
        pl = self.windows.get(wk)
        if pl is None:
            pl = self.windows[wk] = media_window(key, self.first, cues=key == KEYS[0])
        return pl

    def master(self, loc: str) -> MasterPlaylist:
        return MASTER

    def playlist(self, loc: str) -> MediaPlaylist | MasterPlaylist:
        return MASTER if loc.endswith("master.m3u8") else self.media(loc)

    def text(self, loc: str) -> tuple[str, object]:
        if loc in self.ads:
            return self.ads[loc].dumps(), 0
        if loc.endswith("master.m3u8"):
            return MASTER.dumps(), 0
        return self.media(loc).dumps(), 0


def ad_library(n: int) -> tuple[dict[str, MediaPlaylist], list[PodAd]]:
    """n conditioned creatives (15 s each, 2 s segments) in the core layout, as playlists in memory."""
    lib: dict[str, MediaPlaylist] = {}
    ads = []
    for c in range(n):
        base = f"/ads/c{c:03d}"
        for key in KEYS:
            segs = [Segment(f"seg_{i:06d}.ts", 2.0 if i < 7 else 1.0) for i in range(8)]
            lib[f"{base}/{key}"] = MediaPlaylist(target_duration=2, segments=segs, endlist=True, version=3)
        rend = {r: f"{base}/video/{r}/index.m3u8" for r in RENDITIONS}
        rend["audio"] = f"{base}/audio/index.m3u8"
        ads.append(PodAd(f"creative-{c}", 15.0, f"{base}/master.m3u8", rendition_uris=rend))
    return lib, ads


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sessions", type=int, default=10_000)
    ap.add_argument("--requests", type=int, default=30_000)
    ap.add_argument("--http", action="store_true", help="also measure the router over HTTP on loopback")
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()
    rnd = random.Random(args.seed)

    lib, pool = ad_library(40)
    origin = MemoryOrigin(lib)

    def decide(sid: str, brk: Break) -> AdPod:
        h = hash((sid, brk.id))
        ads = (pool[h % len(pool)],) if h % 3 else (pool[h % len(pool)], pool[(h // 7) % len(pool)])
        return AdPod(brk.id, sid, ads, decision_id=f"{sid}:{brk.id}")

    def beacon(*_: str) -> None:
        return None

    svc = StitchService("/origin", decide, beacon, fetcher=origin)
    sids = [f"viewer-{i:05d}" for i in range(args.sessions)]
    # the stream's clock: two minutes of windows; requests walk through it in order
    firsts = list(range(0, 2 * BREAK_EVERY))

    # ---- sessions come alive (every session loads every rendition once per window position, at the break)
    gc.collect()
    tracemalloc.start()
    base_mem = tracemalloc.get_traced_memory()[0]
    origin.advance(8)  # a window holding the break's start
    for sid in sids:
        svc.render(sid, KEYS[0])
    mem_per_session = (tracemalloc.get_traced_memory()[0] - base_mem) / len(sids)
    tracemalloc.stop()

    plan = [(firsts[i * len(firsts) // args.requests], rnd.choice(sids), rnd.choice(KEYS))
            for i in range(args.requests)]

    # ---- baseline: the origin's playlist dumped as is
    t = time.process_time()
    for first, _, key in plan:
        origin.advance(first)
        origin.media(f"/origin/{key}").dumps()
    base_cpu = time.process_time() - t

    # ---- pure function: stitch + dump with a session's resolved placements
    from sidecast.ads.ssai import Placement

    placements_cache: dict[tuple[str, str, int], list[Placement]] = {}
    t = time.process_time()
    for first, sid, key in plan:
        origin.advance(first)
        content = origin.media(f"/origin/{key}")
        st = svc.sessions[sid]
        pk = (sid, key, first)
        pls = placements_cache.get(pk)
        if pls is None:
            pls = []
            for brk in svc.breaks(content):
                rp = svc.pod(sid, st, brk)
                if rp is not None:
                    pls.append(Placement(brk, svc.ad_media(rp, brk, key)))
            placements_cache[pk] = pls
        stitch(content, pls, st.prior_seams(first)).playlist.dumps()
    pure_cpu = time.process_time() - t

    # ---- the service: what every HTTP request runs
    lat: list[float] = []
    t = time.process_time()
    for first, sid, key in plan:
        origin.advance(first)
        t1 = time.perf_counter()
        svc.render(sid, key)
        lat.append(time.perf_counter() - t1)
    svc_cpu = time.process_time() - t
    sample = svc.render(sids[0], KEYS[0])
    assert "#EXTM3U" in sample
    n = len(plan)

    print(f"SSAI playlist generation: {len(sids)} sessions, {len(RENDITIONS)} video renditions + audio, "
          f"{WINDOW}-segment window, one {BREAK_LEN * SEG:g} s break per minute, {n} requests, one thread")
    print(f"  baseline (origin playlist dump)   {n / base_cpu:10.0f} playlists/s per core")
    print(f"  pure stitch + dump                {n / pure_cpu:10.0f} playlists/s per core")
    print(f"  service render (per request)      {n / svc_cpu:10.0f} playlists/s per core   "
          f"p50 {statistics.median(lat) * 1000:.3f} ms   p99 {pct(lat, 99) * 1000:.3f} ms   "
          f"max {max(lat) * 1000:.3f} ms")
    print(f"  memory per session                {mem_per_session / 1024:10.1f} KiB "
          f"({mem_per_session * len(sids) / 2**20:.1f} MiB for {len(sids)} sessions)")
    ok = n / svc_cpu >= 2000 and pct(lat, 99) <= 0.020
    print(f"  target >= 2000/s per core, p99 <= 20 ms: {'met' if ok else 'NOT met'}")

    if args.http:
        http_bench(svc, sids, rnd)
    return 0


def http_bench(svc: StitchService, sids: list[str], rnd: random.Random, requests: int = 3000) -> None:
    """The router under uvicorn on loopback; client and server share this machine's cores."""
    import socket
    import threading

    import httpx
    import uvicorn
    from fastapi import FastAPI

    from sidecast.ads import session as session_mod

    app = FastAPI()
    router = session_mod.make_router("/origin", svc.decide, svc.beacon)
    router.service.__dict__.update(svc.__dict__)  # type: ignore[attr-defined]  # share the warmed sessions
    app.include_router(router)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off", access_log=False))
    th = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    th.start()
    while not server.started:
        time.sleep(0.01)
    lat = []
    with httpx.Client(base_url=f"http://127.0.0.1:{port}") as c:
        t0 = time.perf_counter()
        for _ in range(requests):
            t1 = time.perf_counter()
            r = c.get(f"/session/{rnd.choice(sids)}/{rnd.choice(KEYS)}")
            lat.append(time.perf_counter() - t1)
            assert r.status_code == 200
        wall = time.perf_counter() - t0
    server.should_exit = True
    th.join(5)
    print(f"  HTTP on loopback (1 client, uvicorn, same process)  {requests / wall:8.0f} requests/s   "
          f"p50 {statistics.median(lat) * 1000:.2f} ms   p99 {pct(lat, 99) * 1000:.2f} ms")


if __name__ == "__main__":
    raise SystemExit(main())
