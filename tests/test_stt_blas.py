"""The stt model's process runs OpenBLAS on one thread (``engine.load_model``; docs/server.md, "The shared
stt's CPU, nineteenth session"): the log-mel's small matrix product was the only BLAS call of a pass, and
with one OpenBLAS thread per core its features took ~4x the CPU (the idle thread spins) for the same bits.

The OpenBLAS library is found and driven here with the test's own ctypes lookup, not the engine's, so the
first test says what the process's BLAS is left at whatever the engine does; the second checks on real
speech (tuning clips) that one thread gives exactly the features, so no word can change."""

from __future__ import annotations

import ctypes
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from devkit import realspeech as rs
from sidecast.sidecars.stt import engine


def openblas() -> Any:
    """numpy's OpenBLAS in this process, by its exported thread functions (None: another BLAS)."""
    for line in Path("/proc/self/maps").read_text().splitlines():
        path = line.split(None, 5)[-1]
        if "openblas" in Path(path).name.lower() and ".so" in path:
            lib = ctypes.CDLL(path)
            for suffix in ("scipy_openblas_%s_num_threads64_", "openblas_%s_num_threads64_", "openblas_%s_num_threads"):
                if hasattr(lib, suffix % "set"):
                    return getattr(lib, suffix % "get"), getattr(lib, suffix % "set")
    return None


@pytest.fixture
def blas() -> Any:
    found = openblas()
    assert found is not None, "numpy's wheels are linked with OpenBLAS; this numpy is not: say which BLAS it has"
    get, put = found
    before = get()
    yield get, put
    put(before)


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="OpenBLAS runs one thread on one core anyway")
def test_loading_the_model_leaves_openblas_on_one_thread(blas: Any) -> None:
    get, put = blas
    put(2)  # what OpenBLAS starts with on a 2-core box
    assert get() == 2
    model = engine.load_model(engine.resolve_spec(None, "cpu", "int8", 1, 1))
    assert model is not None
    assert get() == 1


def test_one_thread_gives_the_same_features_on_real_speech(blas: Any) -> None:
    get, put = blas
    from faster_whisper.feature_extractor import FeatureExtractor

    fe = FeatureExtractor()
    audio = rs.programme("tuning", "en", 0.5, seed=3).audio
    rng = np.random.default_rng(7)
    buffers = []
    for seconds in (0.6, 1.5, 3.3, 4.2, 8.0, 12.5, 20.0, 28.9):  # a chunk pass's to the longest buffer pass's
        at = int(rng.integers(0, len(audio) - int(seconds * 16000)))
        buffers.append(np.concatenate([audio[at:at + int(seconds * 16000)], np.zeros(16000, np.float32)]))
    put(2)
    many = [fe(b, padding=0) for b in buffers]
    put(1)
    one = [fe(b, padding=0) for b in buffers]
    assert get() == 1
    for a, b in zip(many, one, strict=True):
        assert a.shape == b.shape
        assert np.array_equal(a, b)


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="OpenBLAS runs one thread on one core anyway")
def test_the_sidecar_as_started_leaves_openblas_on_one_thread_and_0_keeps_the_default(blas: Any) -> None:
    # The path a server's shared stt takes: its arguments, then the model (and its warm-up passes).
    import argparse

    from sidecast.sidecars.stt.sidecar import SttSidecar

    get, put = blas
    ap = argparse.ArgumentParser()
    SttSidecar.add_arguments(ap)
    with pytest.raises(engine.ModelError, match="--blas-threads -1: 0 .OpenBLAS's default. or 1..64"):
        SttSidecar.from_args(ap.parse_args(["--blas-threads", "-1", "--warm-up", "off"]))
    try:
        put(2)
        SttSidecar.from_args(ap.parse_args(["--blas-threads", "0", "--warm-up", "off"]))
        assert get() == 2  # left as OpenBLAS had it: the behaviour before, for comparisons
        SttSidecar.from_args(ap.parse_args(["--warm-up", "off"]))
        assert get() == 1
    finally:
        engine.BLAS_THREADS = 1
