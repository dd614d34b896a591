"""Incremental voice activity detection (engine.StreamVad) on real recorded speech: Silero runs once over
each piece of new audio instead of over the whole buffer at every pass, and finds the same speech.
(Silero VAD only: no Whisper model is loaded here.)"""

from __future__ import annotations

import numpy as np
import pytest
from faster_whisper.vad import get_vad_model

from devkit import realspeech as rs
from sidecast.sidecars.stt import engine

SR = 16_000


@pytest.fixture(scope="module")
def programme() -> rs.Programme:
    return rs.programme("tuning", "en", 0.5, seed=1)


class Buffer:
    """What StreamVad reads from a recogniser: where its buffer starts (absolute samples)."""

    buf_start = 0


def test_the_regions_rule_is_faster_whispers_own_on_the_same_probabilities(programme: rs.Programme) -> None:
    model = get_vad_model()
    for length in (len(programme.audio), 13 * SR + 77, 5 * SR + 300):
        audio = programme.audio[:length]
        probs = np.asarray(model(np.pad(audio, (0, 512 - len(audio) % 512)))).reshape(-1)
        assert engine.regions_from_probs(probs, len(audio)) == engine.speech_regions(audio)


def test_a_moving_buffer_runs_each_sample_through_the_model_once_and_finds_the_same_speech(
        programme: rs.Programme) -> None:
    audio = programme.audio
    rec = Buffer()
    vad = engine.StreamVad().follow(rec)
    passes = close = 0
    for end in range(SR // 2, len(audio), SR // 2):  # a pass every 0.5 s over a buffer of up to 12 s
        rec.buf_start = max(0, end - 12 * SR) // 7 * 7  # trimmed at arbitrary samples, as a recogniser does
        buf = audio[rec.buf_start:end]
        mine, whole = vad(buf), engine.speech_regions(buf)
        passes += 1
        close += len(mine) == len(whole) and all(abs(a - c) <= 0.25 and abs(b - d) <= 0.25
                                                 for (a, b), (c, d) in zip(mine, whole, strict=True))
        assert all(0.0 <= a < b <= len(buf) / SR for a, b in mine)
    # Each sample through Silero once (the whole-buffer VAD ran ~24 s of audio per second here), and the
    # regions read from the cache match a cold run over the buffer (Silero's state differs a little at the
    # buffer's start; a boundary may move by a few windows).
    assert vad.samples_run <= len(audio)
    assert close >= 0.9 * passes, (close, passes)


def test_pieces_give_the_probabilities_of_one_run_and_a_gap_starts_afresh(programme: rs.Programme) -> None:
    audio = programme.audio[: 20 * SR]
    rec = Buffer()
    vad = engine.StreamVad().follow(rec)
    for end in range(3 * 1600, len(audio), 1600 * 3 + 11):  # uneven pieces, none a whole number of windows
        vad(audio[:end])
    full = audio[: len(vad._probs) * 512]
    one = np.asarray(get_vad_model()(full)).reshape(-1)
    # (faster-whisper's run zeroes the last 64 samples of its input's last window: that one differs)
    assert np.array_equal(vad._probs[:-1], one[:-1]) and len(one) == len(vad._probs) > 500
    # A buffer that starts after what the model heard (a gap in the stream) restarts the cache there.
    rec.buf_start = 25 * SR
    later = programme.audio[25 * SR: 30 * SR]
    cold = np.asarray(get_vad_model()(later[: len(later) // 512 * 512])).reshape(-1)
    assert vad(later) == engine.regions_from_probs(cold, len(later))
    with pytest.raises(RuntimeError, match="follow"):
        engine.StreamVad()(audio)
