"""Benchmark: the HLS model (sidecast.hls) against the m3u8 package, the parser a user would pick.

Three playlists, each parsed and dumped on one thread (CPU time from time.process_time):
- live: a 10-segment live window with PDT on every segment and one ad break in cue tags + a DATERANGE
  (what the SSAI service reads from an origin on every change);
- vod: a two-hour VOD rendition, 3,600 segments of 2 s with PDT (what ``sidecast ads stitch`` reads);
- ll: a low-latency window, 6 segments of 4 s with 8 parts each, a preload hint and rendition reports.
For each: parses per second and parse+dump round trips per second, ours and m3u8's, and whether each
round trip kept every DATERANGE of the source with all its attribute names ("-": the playlist has none).

    .venv/bin/python bench/hls_model.py [--seconds 2]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import m3u8  # noqa: E402

from sidecast.hls import parse_attributes, parse_media  # noqa: E402
from sidecast.hls.timebase import format_pdt  # noqa: E402

T0 = datetime(2031, 6, 1, 20, 0, tzinfo=UTC)


def live_window() -> str:
    lines = ["#EXTM3U", "#EXT-X-VERSION:3", "#EXT-X-TARGETDURATION:2", "#EXT-X-MEDIA-SEQUENCE:1200",
             "#EXT-X-INDEPENDENT-SEGMENTS"]
    for k in range(10):
        pdt = T0 + timedelta(seconds=2 * k)
        if k == 3:
            lines.append(f'#EXT-X-DATERANGE:ID="scte35-42",START-DATE="{format_pdt(pdt)}",PLANNED-DURATION=8.000,'
                         'CUE="ONCE",SCTE35-OUT=0xFC302500000000000000FFF01405000004A17FEFFE1B7BEB50FE005265C000010000000015626774')
            lines.append("#EXT-X-CUE-OUT:DURATION=8.000")
        elif 3 < k < 7:
            lines.append(f"#EXT-X-CUE-OUT-CONT:ElapsedTime={2 * (k - 3)}.000,Duration=8.000")
        elif k == 7:
            lines.append("#EXT-X-CUE-IN")
        lines += [f"#EXT-X-PROGRAM-DATE-TIME:{format_pdt(pdt)}", "#EXTINF:2.0,", f"seg_{1200 + k:06d}.ts"]
    return "\n".join(lines) + "\n"


def vod() -> str:
    lines = ["#EXTM3U", "#EXT-X-VERSION:3", "#EXT-X-TARGETDURATION:2", "#EXT-X-MEDIA-SEQUENCE:0",
             "#EXT-X-PLAYLIST-TYPE:VOD"]
    for k in range(3600):
        lines += [f"#EXT-X-PROGRAM-DATE-TIME:{format_pdt(T0 + timedelta(seconds=2 * k))}", "#EXTINF:2.0,",
                  f"seg_{k:06d}.ts"]
    lines += ["#EXT-X-ENDLIST", f'#EXT-X-DATERANGE:ID="post",CLASS="com.apple.hls.interstitial",START-DATE='
              f'"{format_pdt(T0 + timedelta(seconds=7200))}",CUE="POST",X-ASSET-LIST="https://ads.example/l?b=post"']
    return "\n".join(lines) + "\n"


def low_latency() -> str:
    lines = ["#EXTM3U", "#EXT-X-VERSION:9", "#EXT-X-TARGETDURATION:4", "#EXT-X-MEDIA-SEQUENCE:300",
             "#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=1.5", "#EXT-X-PART-INF:PART-TARGET=0.5",
             '#EXT-X-MAP:URI="init.mp4"']
    for k in range(6):
        lines.append(f"#EXT-X-PROGRAM-DATE-TIME:{format_pdt(T0 + timedelta(seconds=4 * k))}")
        lines += [f'#EXT-X-PART:DURATION=0.5,URI="p{300 + k}.{i}.m4s"' + (",INDEPENDENT=YES" if i % 4 == 0 else "")
                  for i in range(8)]
        lines += ["#EXTINF:4.0,", f"s{300 + k}.m4s"]
    lines += ['#EXT-X-PART:DURATION=0.5,URI="p306.0.m4s",INDEPENDENT=YES', '#EXT-X-PRELOAD-HINT:TYPE=PART,URI="p306.1.m4s"',
              '#EXT-X-RENDITION-REPORT:URI="../480p/live.m3u8",LAST-MSN=306,LAST-PART=0']
    return "\n".join(lines) + "\n"


def rate(fn: Callable[[], object], seconds: float) -> float:
    n, start = 0, time.process_time()
    while time.process_time() - start < seconds:
        fn()
        n += 1
    return n / (time.process_time() - start)


def dateranges(text: str) -> list[list[str]]:
    """Each DATERANGE's attribute names (values may be written differently and mean the same)."""
    return sorted(sorted(parse_attributes(ln.partition(":")[2])) for ln in text.splitlines()
                  if ln.startswith("#EXT-X-DATERANGE"))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=2.0, help="CPU seconds per measurement")
    args = ap.parse_args()
    print("HLS model vs the m3u8 package: per second on one thread (higher is better)")
    print(f"  {'playlist':9} {'ours: parse':>12} {'round trip':>11} {'m3u8: parse':>12} {'round trip':>11}"
          f"  DATERANGEs kept (ours / m3u8)")
    for name, text in (("live", live_window()), ("vod", vod()), ("ll", low_latency())):
        ours_p = rate(lambda t=text: parse_media(t), args.seconds)
        ours_rt = rate(lambda t=text: parse_media(t).dumps(), args.seconds)
        theirs_p = rate(lambda t=text: m3u8.loads(t), args.seconds)
        theirs_rt = rate(lambda t=text: m3u8.loads(t).dumps(), args.seconds)
        want = dateranges(text)
        kept = [dateranges(out) == want for out in (parse_media(text).dumps(), m3u8.loads(text).dumps())]
        verdict = " / ".join("-" if not want else "yes" if k else "NO" for k in kept)
        print(f"  {name:9} {ours_p:12,.0f} {ours_rt:11,.0f} {theirs_p:12,.0f} {theirs_rt:11,.0f}  {verdict}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
