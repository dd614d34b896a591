"""Fill rate of live SSAI breaks with and without prefetch, when the ad decision is slow.

A live origin on disk gains one 1 s segment per second (a real ffmpeg encode, cut into a sliding window);
breaks are scheduled ahead of time (as an API-scheduled break or a SCTE-35 splice with pre-roll would be);
each break is decided by the real decisioning service (SQLite store) whose upstream VAST ad server, on
loopback, answers after `--upstream-delay` seconds with an ad conditioned to the content. Several
sessions reload the playlist every second, like players, through the real session service.

    .venv/bin/python bench/prefetch.py [--sessions 8] [--upstream-delay 3] [--lead 10]

Fill rate = ad seconds in the break slots a session was served / break seconds (MediaTailor's "avail
fill rate"). Without prefetch a break is decided when its first segment reaches the window, and the
playlist waits at most `--decision-wait` (the service's default, 2 s) for it; with prefetch the decision
starts `--lead` seconds before the break. The playlist response time is reported beside it: waiting for
a decision is what a player feels.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
T0 = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)


def ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-nostdin", "-y", "-v", "error", *args], check=True, timeout=300)


def make_source(out: Path, seconds: int) -> None:
    """A VOD source in the core's layout (one 180p rendition + audio, 1 s segments, PDT on every one)."""
    from sidecast.hls import parse_media

    (out / "video" / "180p").mkdir(parents=True)
    (out / "audio").mkdir()
    hls = ["-f", "hls", "-hls_time", "1", "-hls_playlist_type", "vod", "-hls_segment_type", "mpegts"]
    ffmpeg("-f", "lavfi", "-i", f"testsrc2=size=320x180:rate=25:duration={seconds}",
           "-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=48000:duration={seconds}",
           "-map", "0:v", "-an", "-c:v", "libx264", "-preset", "ultrafast", "-g", "25", "-keyint_min", "25",
           "-sc_threshold", "0", *hls, "-hls_segment_filename", str(out / "video/180p/seg_%06d.ts"),
           str(out / "video/180p/index.m3u8"),
           "-map", "1:a", "-vn", "-c:a", "aac", "-b:a", "64k", *hls,
           "-hls_segment_filename", str(out / "audio/seg_%06d.ts"), str(out / "audio/index.m3u8"))
    from dataclasses import replace

    for key in ("video/180p/index.m3u8", "audio/index.m3u8"):
        pl = parse_media((out / key).read_text())
        pl.segments = [replace(s, program_date_time=T0 + timedelta(seconds=i)) for i, s in
                       enumerate(s for s in pl.segments if s.duration >= 0.25)]
        (out / key).write_text(pl.dumps())
    (out / "master.m3u8").write_text(
        "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"aud\",NAME=\"main\",DEFAULT=YES,"
        "AUTOSELECT=YES,CHANNELS=\"2\",URI=\"audio/index.m3u8\"\n"
        "#EXT-X-STREAM-INF:BANDWIDTH=400000,RESOLUTION=320x180,FRAME-RATE=25.000,CODECS=\"avc1.640015,mp4a.40.2\","
        "AUDIO=\"aud\"\nvideo/180p/index.m3u8\n")


def publish(src: Path, origin: Path, last: int, window: int) -> None:
    from sidecast.hls import parse_media

    for key in ("video/180p/index.m3u8", "audio/index.m3u8"):
        pl = parse_media((src / key).read_text())
        first = max(0, last - window)
        pl.segments = pl.segments[first:last]
        pl.media_sequence = first
        pl.endlist, pl.playlist_type = False, None
        tmp = origin / (key + ".tmp")
        tmp.write_text(pl.dumps())
        tmp.replace(origin / key)


class Files(ThreadingHTTPServer):
    daemon_threads = True


def serve(directory: Path, vast: dict[str, bytes], delay: float) -> tuple[str, Files]:
    """Loopback HTTP: /vast answers vast["body"] after `delay` s (the slow ad server), anything else a file."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            path = self.path.split("?", 1)[0]
            if path == "/vast":
                time.sleep(delay)
                body, ctype = vast["body"], "application/xml"
            else:
                f = directory / path.lstrip("/")
                if not f.is_file():
                    self.send_response(404)
                    self.end_headers()
                    return
                body, ctype = f.read_bytes(), "application/octet-stream"
            self.send_response(200)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    httpd = Files(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{httpd.server_address[1]}", httpd


def run(args: argparse.Namespace, tmp: Path, src: Path, ads: Path, lead: float, label: str) -> dict[str, float]:
    from sidecast.ads.api.service import AdService, Settings
    from sidecast.ads.session import StitchService
    from sidecast.ads.store import open_store
    from sidecast.hls import parse_media
    from sidecast.hls.breaks import Break

    holder: dict[str, bytes] = {}
    base, httpd = serve(ads, holder, args.upstream_delay)
    holder["body"] = (f'<VAST version="4.1"><Ad id="spot"><InLine><AdSystem>bench</AdSystem><AdTitle>spot</AdTitle><Creatives>'
            f'<Creative><Linear><Duration>00:00:{args.break_seconds:02d}</Duration><MediaFiles><MediaFile '
            f'delivery="streaming" type="application/x-mpegURL" width="320" height="180">{base}/master.m3u8'
            f'</MediaFile></MediaFiles></Linear></Creative></Creatives></InLine></Ad></VAST>').encode()
    settings = Settings(db_path=str(tmp / f"{label}.db"), api_keys=("k",), allow_private_upstreams=True,
                        upstream_timeout=args.upstream_delay + 5)
    store = open_store(settings.db_path)
    svc = AdService(settings, store)
    store.put("sources", "slow", {"id": "slow", "vast_url": f"{base}/vast?sid=[SESSION_ID]&b=[BREAK_ID]",
                                  "priority": 5, "positions": ["pre", "mid", "post"], "enabled": True})
    origin = tmp / f"origin-{label}"
    shutil.copytree(src, origin)
    breaks = [Break(f"b{k}", 0.0, float(args.break_seconds), "mid", T0 + timedelta(seconds=at), "api")
              for k, at in enumerate(args.breaks)]
    stitcher = StitchService(origin, svc.decide_for_break, lambda *a: None, schedule=lambda: breaks,
                             prefetch=lead, decision_wait=args.decision_wait, decision_threads=args.sessions * 2)
    served: dict[tuple[str, int], bool] = {}   # (session, media sequence) -> ad, as first served
    response: list[float] = []
    lock = threading.Lock()
    stop = threading.Event()
    window = 6
    end = max(args.breaks) + args.break_seconds + window + 2
    publish(src, origin, window, window)

    def viewer(sid: str) -> None:
        next_at = time.monotonic()
        while not stop.is_set():
            for key in ("video/180p/index.m3u8", "audio/index.m3u8"):
                t0 = time.monotonic()
                text = stitcher.render(sid, key)
                took = time.monotonic() - t0
                if key.startswith("video"):
                    pl = parse_media(text)
                    with lock:
                        response.append(took)
                        for i, s in enumerate(pl.segments):
                            served.setdefault((sid, pl.media_sequence + i), "/ad/" in s.uri)
            next_at += 1.0
            stop.wait(max(0.0, next_at - time.monotonic()))

    threads = [threading.Thread(target=viewer, args=(f"s{n}",), daemon=True) for n in range(args.sessions)]
    for t in threads:
        t.start()
    t_start = time.monotonic()
    for last in range(window + 1, end + 1):
        stop.wait(max(0.0, t_start + (last - window) - time.monotonic()))
        publish(src, origin, last, window)
    stop.set()
    for t in threads:
        t.join(30)
    stitcher.close()
    httpd.shutdown()
    store.close()
    filled = total = 0
    for at in args.breaks:
        for sid in (f"s{n}" for n in range(args.sessions)):
            for msn in range(at, at + args.break_seconds):
                if (sid, msn) in served:
                    total += 1
                    filled += served[(sid, msn)]
    response.sort()
    return {"fill": filled / max(total, 1), "slots": total, "p50": response[len(response) // 2] * 1000,
            "p99": response[int(len(response) * 0.99)] * 1000, "max": response[-1] * 1000}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sessions", type=int, default=8)
    ap.add_argument("--upstream-delay", type=float, default=3.0, help="seconds the ad server takes to answer")
    ap.add_argument("--decision-wait", type=float, default=2.0, help="the session service's wait budget")
    ap.add_argument("--lead", type=float, default=10.0, help="prefetch lead time, seconds")
    ap.add_argument("--break-seconds", type=int, default=5)
    ap.add_argument("--breaks", type=int, nargs="+", default=[12, 26, 40], help="break starts, seconds")
    args = ap.parse_args()
    print(f"machine: {os.cpu_count()} CPUs; load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    with tempfile.TemporaryDirectory() as td:
        tmp = Path(td)
        src, ads = tmp / "src", tmp / "ads"
        make_source(src, max(args.breaks) + args.break_seconds + 12)
        from sidecast.ads.condition import Conditioner

        ffmpeg("-f", "lavfi", "-i", f"color=c=red:size=426x240:rate=30:duration={args.break_seconds}",
               "-f", "lavfi", "-i", f"sine=frequency=880:duration={args.break_seconds}", "-c:v", "libx264",
               "-preset", "ultrafast", "-c:a", "aac", "-shortest", str(tmp / "spot.mp4"))
        conditioned = Conditioner(src / "master.m3u8", tmp / "cache")(tmp / "spot.mp4")
        shutil.copytree(conditioned.directory, ads)
        print(f"{args.sessions} sessions reloading every 1 s segment; breaks of {args.break_seconds} s at "
              f"{args.breaks} s, scheduled ahead; ad server answers in {args.upstream_delay:g} s; "
              f"playlist wait budget {args.decision_wait:g} s")
        rows = [("no prefetch", run(args, tmp, src, ads, 0.0, "plain")),
                (f"prefetch, {args.lead:g} s lead", run(args, tmp, src, ads, args.lead, "prefetch"))]
    print(f"\n{'run':24} {'fill rate':>9} {'slots':>6} {'playlist p50 ms':>16} {'p99 ms':>8} {'max ms':>8}")
    for name, r in rows:
        print(f"{name:24} {r['fill'] * 100:8.1f}% {int(r['slots']):6d} {r['p50']:16.1f} {r['p99']:8.1f} {r['max']:8.1f}")
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    raise SystemExit(main())
