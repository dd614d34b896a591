"""Playlist GETs per second and tail latency of the HLS server with many concurrent players, against the
server it replaced (the `http.server` version, kept below as the baseline), measured in the same run.

Each server runs in its own process (this script started again with `--serve`), serving a folder laid out
like `sidecast run` output. The load generator is one asyncio process (uvloop when installed) holding N
keep-alive HTTP/1.1 connections over raw sockets, each asking for `video/720p/index.m3u8` again as soon
as the previous answer arrived. All N players arrive at once, so connection set-up counts: the first
request's latency includes its TCP connect. Two modes: `saturate` (each player asks again as soon as it
has its answer: the most a server delivers) and `live` (each player polls every 2 s from a random phase,
as hls.js polls a live playlist: the latency viewers get at that audience). Reported: completed
requests/s, p50/p99/max latency, failed requests (refused, reset, timed out or not 200) and the server's
CPU time per request.

    flock /tmp/sidecast-cpu.lock .venv/bin/python bench/serving.py [--clients 200,1000] [--seconds 8]

The load generator shares the machine's cores with the server: compare within one run. (Not named
bench/http.py: every script in bench/ runs with bench/ first on sys.path, where an http.py would shadow
the standard library's http package for all of them.)
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

PLAYLIST = "/video/720p/index.m3u8"


# ---------------------------------------------------------------- the baseline: core/serve.py before uvicorn
# Its request handler and server, as they were (JSON API and player page left out: only files are measured).
# The path, MIME, cache and range rules are the same pure functions the new server uses.

def _baseline_server(root: Path, host: str, port: int) -> ThreadingHTTPServer:
    from sidecast.core.serve.files import (
        RangeNotSatisfiable,
        UnsafePath,
        cache_control_for,
        content_type_for,
        parse_range,
        request_path,
        resolve_file,
    )

    cors = {"Access-Control-Allow-Origin": "*",
            "Access-Control-Expose-Headers": "Content-Length, Content-Range, Accept-Ranges"}

    class _Server(ThreadingHTTPServer):
        daemon_threads = True

        def handle_error(self, request: Any, client_address: Any) -> None:
            pass

    class _Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "sidecast"
        sys_version = ""
        timeout = 60

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            pass

        def _send(self, status: int, body: bytes, content_type: str, extra: Mapping[str, str] = {}) -> None:  # noqa: B006
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            for k, v in {**cors, "Cache-Control": "no-cache", **extra}.items():
                self.send_header(k, v)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _text(self, status: int, message: str) -> None:
            self._send(status, (message + "\n").encode(), "text/plain; charset=utf-8")

        def do_HEAD(self) -> None:  # noqa: N802
            self.do_GET()

        def do_GET(self) -> None:  # noqa: N802
            path = request_path(self.path)
            try:
                file = resolve_file(root, self.path)
            except (UnsafePath, UnicodeDecodeError):
                self._text(HTTPStatus.BAD_REQUEST, "bad path: it must stay inside the served folder")
                return
            if file is None:
                self._text(HTTPStatus.NOT_FOUND, f"not found: {path}")
                return
            self._send_file(file)

        def _send_file(self, file: Path) -> None:
            try:
                f = file.open("rb")
            except OSError:
                self._text(HTTPStatus.NOT_FOUND, f"not found: {file.name}")
                return
            with f:
                size = os.fstat(f.fileno()).st_size
                headers = {"Cache-Control": cache_control_for(file), "Accept-Ranges": "bytes"}
                try:
                    byte_range = parse_range(self.headers.get("Range"), size)
                except RangeNotSatisfiable:
                    self._send(HTTPStatus.REQUESTED_RANGE_NOT_SATISFIABLE, b"", "text/plain",
                               {**headers, "Content-Range": f"bytes */{size}"})
                    return
                if byte_range is None:
                    status, first, length = HTTPStatus.OK, 0, size
                else:
                    first, last = byte_range
                    status, length = HTTPStatus.PARTIAL_CONTENT, last - first + 1
                    headers["Content-Range"] = f"bytes {first}-{last}/{size}"
                self.send_response(status)
                self.send_header("Content-Type", content_type_for(file))
                self.send_header("Content-Length", str(length))
                for k, v in {**cors, **headers}.items():
                    self.send_header(k, v)
                self.end_headers()
                if self.command == "HEAD":
                    return
                f.seek(first)
                remaining = length
                while remaining > 0:
                    chunk = f.read(min(remaining, 256 * 1024))
                    if not chunk:
                        break
                    self.wfile.write(chunk)
                    remaining -= len(chunk)

    return _Server((host, port), _Handler)


# ---------------------------------------------------------------- server process

def serve(kind: str, root: Path, port_file: Path) -> None:
    """Run one server until stdin closes; write its port to port_file once it accepts connections."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # both servers get the same fd headroom
    if kind == "old":
        server = _baseline_server(root, "127.0.0.1", 0)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        port = server.server_address[1]
    else:
        from sidecast.core.serve import start_server

        handle = start_server(root, 0, host="127.0.0.1")
        port = handle.port
    port_file.write_text(str(port))
    sys.stdin.read()  # the parent closes our stdin to stop us


def make_output(root: Path) -> None:
    """master.m3u8 and a 720p live media playlist (6 x 2 s segments) as `sidecast run` writes them."""
    (root / "video" / "720p").mkdir(parents=True)
    (root / "master.m3u8").write_text(
        "#EXTM3U\n#EXT-X-VERSION:6\n#EXT-X-INDEPENDENT-SEGMENTS\n"
        '#EXT-X-STREAM-INF:BANDWIDTH=3300000,RESOLUTION=1280x720,CODECS="avc1.64001f,mp4a.40.2"\n'
        "video/720p/index.m3u8\n")
    lines = ["#EXTM3U", "#EXT-X-VERSION:6", "#EXT-X-TARGETDURATION:2", "#EXT-X-MEDIA-SEQUENCE:1200"]
    for i in range(1200, 1206):
        sec = i * 2
        lines += [f"#EXT-X-PROGRAM-DATE-TIME:2026-12-01T10:{sec // 60 % 60:02d}:{sec % 60:02d}.000Z",
                  "#EXTINF:2.000000,", f"seg_{i:06d}.ts"]
        (root / "video" / "720p" / f"seg_{i:06d}.ts").write_bytes(b"\x47" * 188 * 10)
    (root / "video" / "720p" / "index.m3u8").write_text("\n".join(lines) + "\n")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# ---------------------------------------------------------------- load generator

REQUEST = f"GET {PLAYLIST} HTTP/1.1\r\nHost: bench\r\nUser-Agent: bench\r\n\r\n".encode()


async def load(port: int, clients: int, seconds: float, interval: float = 0.0,
               timeout: float = 10.0, path: str = PLAYLIST) -> dict[str, float]:
    """N players on keep-alive connections; interval 0: back to back (saturation), else each player polls
    every `interval` seconds from a random phase, as hls.js polls a live playlist once per target duration.
    `path`: what they ask for (bench/server.py points it at a stream of `sidecast server`)."""
    request = REQUEST if path == PLAYLIST else \
        f"GET {path} HTTP/1.1\r\nHost: bench\r\nUser-Agent: bench\r\n\r\n".encode()
    latencies: list[float] = []
    connects: list[float] = []
    failed = 0
    reasons: collections.Counter[str] = collections.Counter()
    started = time.perf_counter()
    stop_at = started + seconds
    phases = random.Random(7)

    async def player() -> None:
        nonlocal failed
        next_poll = started + phases.uniform(0, interval)
        if interval:
            await asyncio.sleep(next_poll - time.perf_counter())
        t0 = time.perf_counter()
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), timeout)
        except (OSError, TimeoutError) as exc:
            failed += 1
            reasons[f"connect: {type(exc).__name__}"] += 1
            return
        connects.append(time.perf_counter() - t0)
        try:
            while t0 < stop_at:
                writer.write(request)
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout)
                length = 0
                for line in head.split(b"\r\n"):
                    if line[:15].lower() == b"content-length:":
                        length = int(line[15:])
                if length:
                    await asyncio.wait_for(reader.readexactly(length), timeout)
                now = time.perf_counter()
                if head[9:12] != b"200":
                    failed += 1
                    reasons[f"HTTP {head[9:12].decode()}"] += 1
                elif now <= stop_at:
                    latencies.append(now - t0)
                if interval:
                    next_poll += interval
                    await asyncio.sleep(max(0.0, next_poll - now))
                    now = time.perf_counter()
                t0 = now
        except (OSError, TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as exc:
            failed += 1
            reasons[f"request: {type(exc).__name__}"] += 1
        finally:
            writer.close()

    await asyncio.gather(*(player() for _ in range(clients)))
    latencies.sort()
    connects.sort()
    n = len(latencies)

    def pct(xs: list[float], q: float) -> float:
        return xs[min(len(xs) - 1, int(len(xs) * q))] * 1000 if xs else float("nan")

    return {"rps": n / seconds, "p50_ms": pct(latencies, 0.5), "p99_ms": pct(latencies, 0.99),
            "max_ms": latencies[-1] * 1000 if n else float("nan"), "connect_p99_ms": pct(connects, 0.99),
            "requests": n, "failed": failed, "failures": dict(reasons)}


def run_one(kind: str, root: Path, clients: int, seconds: float, interval: float) -> dict[str, float]:
    port_file = root.parent / f"port-{kind}"
    port_file.unlink(missing_ok=True)
    proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--serve", kind, str(root), str(port_file)],
                            stdin=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        while not port_file.exists() or not port_file.read_text():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"the {kind} server did not start")
            time.sleep(0.05)
        port = int(port_file.read_text())
        cpu0 = cpu_seconds(proc.pid)
        result = asyncio.run(load(port, clients, seconds, interval))
        result["cpu_ms_per_req"] = (cpu_seconds(proc.pid) - cpu0) / max(result["requests"], 1) * 1000
        return result
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clients", default="200,1000", help="concurrent players, comma-separated (default 200,1000)")
    ap.add_argument("--seconds", type=float, default=8.0, help="length of each measurement (default 8)")
    ap.add_argument("--servers", default="old,new", help="which servers: old (http.server), new (uvicorn)")
    ap.add_argument("--modes", default="saturate,live",
                    help="saturate: each player asks again at once; live: each polls every --poll seconds")
    ap.add_argument("--poll", type=float, default=2.0, help="live mode: seconds between a player's polls (default 2)")
    ap.add_argument("--json", action="store_true", help="also print the results as one JSON line")
    ap.add_argument("--serve", nargs=3, metavar=("KIND", "DIR", "PORT_FILE"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve:
        serve(args.serve[0], Path(args.serve[1]), Path(args.serve[2]))
        return 0
    try:
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    except ImportError:
        pass
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    from sidecast.core.serve import ServerOptions

    opts = ServerOptions()
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} at start "
          f"(the load generator and the server share the cores)")
    print(f"new: uvicorn http={opts.http} limit_concurrency={opts.limit_concurrency} "
          f"keep_alive={opts.keep_alive}s backlog={opts.backlog}; old: ThreadingHTTPServer, backlog 5, "
          f"a thread per connection")
    print(f"GET {PLAYLIST} ({len(REQUEST)} B request) on keep-alive connections, {args.seconds:g} s per run")
    print(f"modes: saturate = each player asks again as soon as it has its answer; live = each player polls "
          f"every {args.poll:g} s (hls.js on a live playlist)\n")
    names = {"old": "http.server (old)", "new": "uvicorn (new)"}
    header = f"{'mode':<10}{'server':<19}{'players':>8}{'req/s':>8}{'p50 ms':>8}{'p99 ms':>8}{'max ms':>8}" \
             f"{'conn p99':>9}{'failed':>7}{'cpu ms/req':>11}"
    print(header)
    results = []
    failures: dict[str, int] = {}
    with tempfile.TemporaryDirectory(prefix="sidecast-bench-http-") as tmp:
        root = Path(tmp) / "out"
        make_output(root)
        for mode in (m.strip() for m in args.modes.split(",")):
            interval = 0.0 if mode == "saturate" else args.poll
            for clients in (int(c) for c in args.clients.split(",")):
                for kind in (k.strip() for k in args.servers.split(",")):
                    r = run_one(kind, root, clients, args.seconds, interval)
                    results.append({"mode": mode, "server": kind, "clients": clients, **r})
                    print(f"{mode:<10}{names[kind]:<19}{clients:>8}{r['rps']:>8.0f}{r['p50_ms']:>8.1f}"
                          f"{r['p99_ms']:>8.1f}{r['max_ms']:>8.0f}{r['connect_p99_ms']:>9.1f}{r['failed']:>7}"
                          f"{r['cpu_ms_per_req']:>11.3f}", flush=True)
                    failures.update({f"{names[kind]}, {mode}, {clients}: {k}": v for k, v in r["failures"].items()})
    if failures:
        print("\nfailed requests by cause:")
        for what, count in failures.items():
            print(f"  {what}: {count}")
    print(f"\nload average {os.getloadavg()[0]:.2f} at the end")
    if args.json:
        print(json.dumps(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
