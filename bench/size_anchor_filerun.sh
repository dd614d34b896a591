#!/bin/sh
# A whole file run with the bitrate sidecar, the measured size decision on (the default for a file) against
# --no-size-anchor, alternated PAIRS times: wall time, CPU (core and sidecars) and the main ladder's bytes.
#   setsid sh -c 'echo -10 > /proc/self/autogroup; exec flock /tmp/sidecast-cpu.lock bench/size_anchor_filerun.sh SOURCE [PAIRS]'
# SOURCE: any media file (the twentieth session used the 30 s `sidecast demo` sample).
set -eu
src=${1:?usage: bench/size_anchor_filerun.sh SOURCE [PAIRS]}
pairs=${2:-2}
cd "$(dirname "$0")/.."
tmp=$(mktemp -d /tmp/sidecast-filerun-XXXXXX)
trap 'rm -rf "$tmp"' EXIT
i=0
while [ "$i" -lt "$pairs" ]; do
  for mode in measured hints; do
    extra=""; [ "$mode" = hints ] && extra="--no-size-anchor"
    rm -rf "$tmp/$mode"
    /usr/bin/time -f "%e %U %S" -o "$tmp/time" .venv/bin/sidecast run "$src" -o "$tmp/$mode" \
      --sidecars stt,autocrop,bitrate --ladder 720p:3000k,480p:1400k,360p:800k --no-progress $extra 2>/dev/null
    .venv/bin/python - "$tmp/$mode/segments.jsonl" "$mode" "$(cat "$tmp/time")" <<'PY'
import json, sys
rows = [json.loads(ln) for ln in open(sys.argv[1])]
main = [r for r in rows if r.get("rendition") in ("720p", "480p", "360p")]
wall, user, sys_ = (float(x) for x in sys.argv[3].split())
print(f"{sys.argv[2]:9s} wall {wall:6.1f} s  CPU {user + sys_:6.1f} s  main ladder {sum(int(r['bytes']) for r in main):>10d} bytes"
      f"  segment-rungs {len(main)}, measured {sum(r.get('size_vmaf') is not None for r in main)}, "
      f"published smaller {sum(bool(r.get('size_chosen')) for r in main)}", flush=True)
PY
  done
  i=$((i + 1))
done
