"""One autocrop sidecar process serves many streams with one copy of each model: the runtime makes one
sidecar instance per stream, and each used to load its own YuNet, UNISAL and TransNetV2 sessions (~175 MB
per stream). The sessions are now shared per process; streams analysing at the same time on the shared
sessions get exactly what each gets alone, a model file replaced on disk is loaded afresh, and the models
are loaded and warmed before the sidecar listens."""

from __future__ import annotations

import argparse
import shutil
import threading
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from devkit import footage
from sidecast.contract.records import StreamInfo
from sidecast.sidecars.autocrop import detect
from sidecast.sidecars.autocrop.detect import FaceDetector, ModelNotFound, default_model_path
from sidecast.sidecars.autocrop.sidecar import AutocropSidecar


def started(sidecar: AutocropSidecar, w: int = 640, h: int = 360) -> AutocropSidecar:
    sidecar.on_start(StreamInfo(stream_id="s", source_width=w, source_height=h, source_fps=25.0,
                                segment_duration=2.0))
    return sidecar


def test_streams_of_one_process_share_each_model_session() -> None:
    a, b = started(AutocropSidecar()), started(AutocropSidecar())
    assert a._faces is not None and b._faces is not None and a._faces is not b._faces  # own detector state
    assert a._faces.session is b._faces.session
    assert a._objects is not None and b._objects is not None and a._objects.session is b._objects.session
    assert a._shots is not None and b._shots is not None and a._shots.session is b._shots.session
    # another thread count is another session (onnxruntime fixes it when the session is made)
    c = started(AutocropSidecar(threads=2))
    assert c._faces is not None and c._faces.session is not a._faces.session


def test_concurrent_streams_on_shared_sessions_get_what_each_gets_alone() -> None:
    """Two streams of different real footage analysed at once, frame by frame in two threads, on the same
    sessions: every subject found equals what a stream alone finds (nothing of one leaks into the other)."""
    times = [i / 5 for i in range(15)]
    frames = {name: [cv2.resize(img, (480, 270), interpolation=cv2.INTER_AREA)
                     for _, img in footage.clip(name).frames(times)] for name in ("talking_head", "pedestrians")}

    def subjects(sidecar: AutocropSidecar, imgs: list[np.ndarray], out: list[Any]) -> None:
        assert sidecar._faces is not None and sidecar._objects is not None
        for img in imgs:
            out.append((sidecar._faces.detect(img), sidecar._objects.detect(img)))

    alone: dict[str, list[Any]] = {}
    for name, imgs in frames.items():
        alone[name] = []
        subjects(started(AutocropSidecar()), imgs, alone[name])
    together: dict[str, list[Any]] = {name: [] for name in frames}
    threads = [threading.Thread(target=subjects, args=(started(AutocropSidecar()), imgs, together[name]))
               for name, imgs in frames.items()]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert together == alone
    assert any(faces for faces, _ in alone["talking_head"])  # the comparison is not of empty lists


def test_a_model_file_replaced_on_disk_is_loaded_again_and_a_broken_one_is_not_kept(tmp_path: Path) -> None:
    path = tmp_path / "faces.onnx"
    shutil.copy(default_model_path(), path)
    first = FaceDetector(path)
    assert FaceDetector(path).session is first.session
    path.write_bytes(b"not a model")
    with pytest.raises(ModelNotFound, match="cannot be loaded"):
        FaceDetector(path)
    shutil.copy(default_model_path(), path)  # a new file (new modification time): a new session
    again = FaceDetector(path)
    assert again.session is not first.session
    assert FaceDetector(path).session is again.session


def test_the_sidecar_loads_and_warms_its_models_before_it_listens() -> None:
    """``from_args`` runs before the gRPC server exists: the sessions are made there, and the first stream
    uses them instead of loading its own."""
    parser = argparse.ArgumentParser()
    AutocropSidecar.add_arguments(parser)
    detect._SESSIONS.clear()
    factory = AutocropSidecar.from_args(parser.parse_args([]))
    loaded = {Path(key[0]).name for key in detect._SESSIONS}
    assert loaded == {"face_detection_yunet_2023mar_dynamic.onnx", "unisal.onnx", "transnetv2.onnx"}
    sessions = set(map(id, detect._SESSIONS.values()))
    first = started(factory())
    assert first._faces is not None and first._objects is not None and first._shots is not None
    assert {id(first._faces.session), id(first._objects.session), id(first._shots.session)} == sessions
    # options that switch a model off do not load it
    detect._SESSIONS.clear()
    AutocropSidecar.from_args(parser.parse_args(["--no-objects", "--no-shot-model"]))
    assert {Path(key[0]).name for key in detect._SESSIONS} == {"face_detection_yunet_2023mar_dynamic.onnx"}
