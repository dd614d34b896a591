"""Decisions per second and latency of the ad decisioning API under concurrent load on loopback.

Starts the real service (`python -m ads.api.cli serve`, uvicorn) in a subprocess, once on the embedded
SQLite store and once on Redis (a redis-server it starts on a free port), seeds a small catalog, and drives
POST /v1/decisions from a bounded asyncio load loop (keep-alive HTTP/1.1 over raw sockets, so the load
generator costs as little CPU as possible on the same machine). GET /healthz on the same server is the
baseline: the framework's own floor, measured in the same run.

    .venv/bin/python bench/decisions.py [--seconds 8] [--concurrency 32] [--stores sqlite,redis] [--slow-upstream]

Target (issue 8): >= 1,500 decisions/s with p99 <= 25 ms on 2 cores; issue 15 raised it to >= 2,000/s on SQLite.
The load generator shares the cores with the server, and on a shared machine other work does too: figures
are noisy, compare within one run.

`--slow-upstream` adds one more run on SQLite: an upstream VAST source on loopback that answers after 1 s
with ~2,000 ads (the size of a response that used to stall the event loop), decisions driven at it, and
`GET /healthz` probed on its own connection all the while; its p99 is the figure to watch (target < 50 ms).

The server is whatever `python -m sidecast.ads.api.cli` imports: run the same script with
`PYTHONPATH=<a checkout's import tree>` to measure another version in the same session (bench/README-style
before/after, see docs/ads-api.md).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from devkit.ports import free_port  # noqa: E402

KEY = "bench-key"




def wait_http(url: str, proc: subprocess.Popen[bytes], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited early with status {proc.returncode}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise SystemExit(f"server at {url} did not come up in {timeout} s")


def seed(base: str) -> None:
    c = httpx.Client(base_url=base, headers={"X-API-Key": KEY})
    durations = [5, 10, 15, 15, 20, 30, 6, 12, 15, 30, 10, 15]
    for i, d in enumerate(durations):
        c.post("/v1/creatives", json={"id": f"cr{i}", "media_url": f"https://cdn.example/cr{i}/master.m3u8",
                                      "duration": d, "tracking": {"impression": [f"https://t.example/i/{i}"]}})
    for k in range(6):
        body = {"id": f"camp{k}", "creative_ids": [f"cr{2 * k}", f"cr{2 * k + 1}"], "advertiser": f"adv{k % 4}",
                "priority": 1 + k % 5, "frequency_cap": 50}
        if k == 5:
            body["targeting"] = {"genre": ["sports"]}
        c.post("/v1/campaigns", json=body).raise_for_status()
    c.close()


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used (Linux /proc), to cost a request independently of how
    busy the rest of the machine is."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def request_bytes(path: str, body: dict[str, object] | None) -> bytes:
    if body is None:
        return f"GET {path} HTTP/1.1\r\nHost: bench\r\n\r\n".encode()
    data = json.dumps(body).encode()
    return (f"POST {path} HTTP/1.1\r\nHost: bench\r\nX-API-Key: {KEY}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(data)}\r\n\r\n").encode() + data


async def read_response(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    if length:
        await reader.readexactly(length)
    return status


async def load(port: int, path: str, decisions: bool, seconds: float, concurrency: int,
               pids: list[int]) -> dict[str, float]:
    lat: list[float] = []
    errors = 0
    total = 0
    stop_at = 0.0
    record_from = 0.0

    async def worker(wid: int) -> None:
        nonlocal errors, total
        rnd = random.Random(wid)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while time.perf_counter() < stop_at:
                body = None
                if decisions:
                    body = {"session_id": f"s{rnd.randrange(20000)}", "duration": rnd.choice([15, 30, 30, 60]),
                            "position": "mid", "key_values": {"genre": rnd.choice(["sports", "news"])}}
                t0 = time.perf_counter()
                writer.write(request_bytes(path, body))
                status = await read_response(reader)
                t1 = time.perf_counter()
                total += 1
                if status != 200:
                    errors += 1
                if t0 >= record_from:
                    lat.append(t1 - t0)
        finally:
            writer.close()

    warmup = 1.0
    cpu0 = sum(cpu_seconds(p) for p in pids)
    start = time.perf_counter()
    record_from = start + warmup
    stop_at = record_from + seconds
    await asyncio.gather(*(worker(i) for i in range(concurrency)))
    cpu = sum(cpu_seconds(p) for p in pids) - cpu0
    lat.sort()
    n = len(lat)
    return {"rps": n / seconds, "p50_ms": lat[n // 2] * 1000 if n else 0, "p99_ms": lat[int(n * 0.99)] * 1000 if n else 0,
            "n": n, "errors": errors, "cpu_ms": cpu / max(total, 1) * 1000}


def process_tree(pid: int) -> list[int]:
    """``pid`` and its children (uvicorn's worker processes), from /proc."""
    out = [pid]
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


def big_vast(n: int = 2000) -> bytes:
    one = ('<Ad id="a{n}"><InLine><AdSystem>S</AdSystem><AdTitle>t</AdTitle><Creatives><Creative><Linear>'
           '<Duration>00:00:05</Duration><MediaFiles><MediaFile delivery="progressive" type="video/mp4">'
           'https://cdn.example/{n}.mp4</MediaFile></MediaFiles></Linear></Creative></Creatives></InLine></Ad>')
    return ("<VAST version='4.0'>" + "".join(one.format(n=i) for i in range(n)) + "</VAST>").encode()


def slow_upstream(delay: float, body: bytes) -> tuple[str, object]:
    """A loopback ad server that answers every request after `delay` seconds with `body`."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            time.sleep(delay)
            self.send_response(200)
            self.send_header("Content-Type", "application/xml")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            try:
                self.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError):
                pass

        def log_message(self, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{httpd.server_address[1]}/vast.xml", httpd


async def probe_healthz(port: int, until: float) -> list[float]:
    """GET /healthz on its own connection, one after another (~every 10 ms), until `until`."""
    lat: list[float] = []
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        while time.perf_counter() < until:
            t0 = time.perf_counter()
            writer.write(request_bytes("/healthz", None))
            await read_response(reader)
            lat.append(time.perf_counter() - t0)
            await asyncio.sleep(0.01)
    finally:
        writer.close()
    return lat


def run_slow_upstream(seconds: float, tmp: Path) -> list[tuple[str, dict[str, float]]]:
    body = big_vast()
    url, httpd = slow_upstream(1.0, body)
    port = free_port()
    cmd = [sys.executable, "-m", "sidecast.ads.api.cli", "serve", "--port", str(port), "--db", str(tmp / "slow.db"),
           "--api-key", KEY, "--allow-private-upstreams", "--upstream-timeout", "5"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        base = f"http://127.0.0.1:{port}"
        wait_http(base + "/healthz", proc)
        seed(base)
        r = httpx.post(base + "/v1/sources", headers={"X-API-Key": KEY}, json={"id": "slow", "vast_url": url})
        if r.status_code != 201:
            raise SystemExit(f"could not register the slow upstream: {r.status_code} {r.text}")

        async def both() -> tuple[dict[str, float], list[float]]:
            until = time.perf_counter() + 1.0 + seconds
            probe = asyncio.create_task(probe_healthz(port, until))
            decided = await load(port, "/v1/decisions", True, seconds, 8, process_tree(proc.pid))
            return decided, await probe

        alone = asyncio.run(probe_healthz(port, time.perf_counter() + 3.0))
        decided, lat = asyncio.run(both())
        rows = []
        for name, values in (("slow upstream: GET /healthz, idle", alone), ("slow upstream: GET /healthz, under load", lat)):
            values.sort()
            n = len(values)
            rows.append((name, {"rps": n / (3.0 if "idle" in name else seconds + 1.0), "p50_ms": values[n // 2] * 1000,
                                "p99_ms": values[int(n * 0.99)] * 1000, "n": n, "errors": 0, "cpu_ms": 0.0,
                                "max_ms": values[-1] * 1000}))
        rows.append(("slow upstream: POST /v1/decisions", decided))
        return rows
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        httpd.shutdown()  # type: ignore[attr-defined]


def run_store(store: str, seconds: float, concurrency: int, tmp: Path, redis_url: str | None,
              redis_pid: int | None, workers: int = 1) -> list[tuple[str, dict[str, float]]]:
    port = free_port()
    cmd = [sys.executable, "-m", "sidecast.ads.api.cli", "serve", "--port", str(port), "--db", str(tmp / f"{store}.db"),
           "--api-key", KEY]
    if store == "redis":
        assert redis_url
        import redis as redis_client

        redis_client.Redis.from_url(redis_url).flushdb()  # every run seeds the same catalog afresh
        cmd += ["--redis", redis_url, "--workers", str(workers)]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        base = f"http://127.0.0.1:{port}"
        wait_http(base + "/healthz", proc)
        seed(base)
        pids = process_tree(proc.pid) + ([redis_pid] if store == "redis" and redis_pid else [])
        store = f"{store} ({workers} workers)" if workers > 1 else store
        return [(f"{store}: GET /healthz (baseline)",
                 asyncio.run(load(port, "/healthz", False, seconds / 2, concurrency, pids))),
                (f"{store}: POST /v1/decisions",
                 asyncio.run(load(port, "/v1/decisions", True, seconds, concurrency, pids)))]
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--stores", default="sqlite,redis")
    ap.add_argument("--redis-workers", type=int, default=2,
                    help="also run the Redis store with this many server processes (replicas); 1 = skip")
    ap.add_argument("--slow-upstream", action="store_true",
                    help="also measure GET /healthz while decisions wait on a slow upstream with ~2,000 ads")
    ap.add_argument("--label", default="", help="a name for the server version measured (printed)")
    args = ap.parse_args()
    stores = [s.strip() for s in args.stores.split(",") if s.strip()]
    print(f"machine: {os.cpu_count()} CPUs (load generator and server share them; the machine may be shared too)")
    import sidecast.ads.api.app as served

    print(f"server code: {Path(served.__file__).resolve().parent.parent}" + (f" ({args.label})" if args.label else ""))
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    try:
        import uvloop  # noqa: F401
        loop_impl = "uvloop"
    except ImportError:
        loop_impl = "asyncio"
    try:
        import httptools  # noqa: F401
        http_impl = "httptools"
    except ImportError:
        http_impl = "h11"
    print(f"server: uvicorn, 1 process, {loop_impl} loop, {http_impl} parser; concurrency {args.concurrency}, "
          f"{args.seconds:g} s per run after 1 s warm-up")
    rows: list[tuple[str, dict[str, float]]] = []
    with tempfile.TemporaryDirectory() as td:
        tmp = Path(td)
        redis_proc = None
        redis_url = None
        if "redis" in stores:
            exe = shutil.which("redis-server")
            if not exe:
                raise SystemExit("redis-server is not installed (./dev.sh install)")
            rport = free_port()
            redis_proc = subprocess.Popen([exe, "--port", str(rport), "--bind", "127.0.0.1", "--save", "",
                                           "--appendonly", "no"], stdout=subprocess.DEVNULL)
            redis_url = f"redis://127.0.0.1:{rport}/0"
            import redis as redis_client
            deadline = time.monotonic() + 10
            while True:
                try:
                    redis_client.Redis.from_url(redis_url).ping()
                    break
                except redis_client.ConnectionError:
                    if time.monotonic() > deadline:
                        raise SystemExit("redis-server did not start") from None
                    time.sleep(0.05)
        try:
            for store in stores:
                rows += run_store(store, args.seconds, args.concurrency, tmp, redis_url,
                                  redis_proc.pid if redis_proc else None)
                if store == "redis" and args.redis_workers > 1:
                    # Redis is the store for replicas: the same service as several processes sharing it.
                    rows += run_store(store, args.seconds, args.concurrency, tmp, redis_url,
                                      redis_proc.pid if redis_proc else None, workers=args.redis_workers)
            if args.slow_upstream:
                rows += run_slow_upstream(args.seconds, tmp)
        finally:
            if redis_proc is not None:
                redis_proc.terminate()
                redis_proc.wait(10)
    print(f"\n{'run':38} {'req/s':>7} {'p50 ms':>7} {'p99 ms':>7} {'errors':>6} {'CPU ms/req':>10} {'req/s/core':>10}")
    for name, r in rows:
        print(f"{name:38} {r['rps']:7.0f} {r['p50_ms']:7.2f} {r['p99_ms']:7.2f} {int(r['errors']):6d} "
              f"{r['cpu_ms']:10.3f} {1000 / max(r['cpu_ms'], 1e-9):10.0f}")
    print("\nCPU ms/req: server CPU (plus redis-server's, for Redis) per request, from /proc: it depends less")
    print("on other load than req/s does; req/s/core = what one free core would sustain at that cost.")
    for name, r in rows:
        if "max_ms" in r:
            print(f"  {name}: max {r['max_ms']:.1f} ms over {int(r['n'])} probes")
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print("\ntargets: >= 2000 decisions/s on SQLite (>= 1500 otherwise), p99 <= 25 ms on 2 cores; "
          "/healthz p99 < 50 ms under a slow upstream")
    for name, r in rows:
        if "decisions" in name and "slow" not in name:
            floor = 2000 if name.startswith("sqlite") else 1500
            verdict = "meets" if r["rps"] >= floor and r["p99_ms"] <= 25 else "MISSES"
            print(f"  {name}: {verdict} the target")
        if "healthz, under load" in name:
            print(f"  {name}: {'meets' if r['p99_ms'] < 50 else 'MISSES'} the target")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
