"""Chunk passes under load (sidecar ``--load-policy chunk``): while the shared model is behind, each
stream is decoded once per stretch of speech (when the VAD hears it end, or at ``--chunk-cap`` seconds,
cut at a quiet point) and the chunk's words are final from that one pass, instead of a pass every 0.5 s
re-decoding the whole buffer. Real tiny.en inference on real recorded speech (tuning clips of
devkit/realspeech.py), replayed deterministically; the shared scheduler's mode is driven by hand (no
clock, no sleeps), as in test_stt_context."""

from __future__ import annotations

import argparse
import contextlib
import time
from collections.abc import Iterator

import numpy as np
import pytest

from devkit import realspeech as rs
from sidecast.contract.records import Word
from sidecast.sidecars.stt import engine
from sidecast.sidecars.stt.engine import DecodeOptions, Decoder, ModelError
from sidecast.sidecars.stt.recognizer import SAMPLE_RATE, StreamConfig, StreamingRecognizer, quietest
from sidecast.sidecars.stt.sidecar import SttSidecar, _Track

CAP = 2.5
# A 7 s LibriVox sentence (longer than the cap: cut mid-speech at least twice), then two Asterisk prompts.
CLIPS = ["librivox/0870", "asterisk-en/agent-alreadyon", "asterisk-en/vm-nomore"]
GAPS = [1.0, 1.2, 1.5]


@pytest.fixture(scope="module")
def model() -> object:
    return engine.load_model(engine.resolve_spec(None, "cpu", "int8", 2))  # one load for the module


@pytest.fixture(scope="module")
def prog() -> rs.Programme:
    return rs.tuning_programme(CLIPS, GAPS)  # tuning clips only


def replay(model: object, prog: rs.Programme, chunk: bool) -> tuple[list[Word], list[float], int]:
    """The programme through one recogniser, every pass a chunk pass or none: the committed words, each
    word's lag (audio received when it was committed, less its end) and the decoder passes run."""
    decoder = Decoder(model, DecodeOptions(language=None, beam_size=3))
    vad = engine.StreamVad()
    rec = StreamingRecognizer(decoder.decode, vad, StreamConfig())
    vad.follow(rec)
    words: list[Word] = []
    lags: list[float] = []
    for i in range(0, len(prog.audio), 1600):
        rec.append(prog.audio[i:i + 1600], i)
        end = rec.chunk_pass_end(CAP) if chunk else rec.next_pass_end()
        if end is not None:
            got = rec.step(end, chunk=chunk).committed
            words += got
            lags += [rec.received_end / SAMPLE_RATE - w.end for w in got]
    words += rec.finish().committed
    return words, lags, decoder.passes


def test_chunk_passes_commit_a_recorded_programme_in_order_once_each_within_the_cap(model: object,
                                                                                   prog: rs.Programme) -> None:
    words, lags, passes = replay(model, prog, chunk=True)
    said = " ".join(w.text for w in words)
    assert all(a.start <= b.start + 0.05 for a, b in zip(words, words[1:], strict=False)), said  # in order
    norm = rs.normalise(said).split()
    assert all(a != b for a, b in zip(norm, norm[1:], strict=False)), said  # no word committed twice
    assert rs.wer(prog.reference, said) <= 0.12, said
    # Words are final about a cap after their end, none later than two (a word held at the end of one
    # chunk waits for the next); the sentence longer than the cap was cut mid-speech, not held to its end.
    assert float(np.median(lags)) <= 2.0 and max(lags) <= 2 * CAP, lags
    first = [w for w in words if w.end < 1.0 + 7.0]  # the LibriVox sentence
    assert min(lags[:len(first)]) < 2.0 and len(first) >= 15, said
    # Far fewer decoder passes than re-decoding every 0.5 s.
    _, _, normal = replay(model, prog, chunk=False)
    assert passes * 2 <= normal, (passes, normal)


def test_the_quietest_point_is_in_the_pause_between_words() -> None:
    sr = SAMPLE_RATE
    rng = np.random.default_rng(0)
    audio = (0.3 * rng.standard_normal(3 * sr)).astype(np.float32)
    audio[int(1.6 * sr):int(1.8 * sr)] *= 0.01  # a 0.2 s pause
    at = quietest(audio, 1.0, 2.5)
    assert 1.6 * sr <= at <= 1.8 * sr, at / sr
    assert quietest(audio, 2.95, 3.0) == 3 * sr  # too short to search: the end


@contextlib.contextmanager
def shared_batcher(track: _Track) -> Iterator[engine.PassBatcher]:
    """The process's shared scheduler behind ``track``, its mode restored afterwards."""
    assert track.decoder is not None and track.decoder.batcher is not None
    b = track.decoder.batcher
    saved = (b.chunked, b.chunk_since, list(b._busy), b.pace)
    try:
        yield b
    finally:
        b.chunked, b.chunk_since, b._busy, b.pace = saved[0], saved[1], saved[2], saved[3]


def test_streams_switch_to_chunks_when_behind_and_back_when_the_model_is_idle(model: object,
                                                                              prog: rs.Programme) -> None:
    spec = engine.resolve_spec(None, "cpu", "int8", 2)
    sidecar = SttSidecar(spec=spec, load_policy="chunk")
    track = sidecar._make_tracks(0)[0]
    rec = track.recognizer
    with shared_batcher(track) as b:
        b.chunked, b.pace, b._busy = False, 0.0, []
        rec.append(prog.audio[:SAMPLE_RATE], 0)  # 1 s since the last pass: keeping up
        assert not sidecar.chunk_active(track)
        assert SttSidecar(spec=spec).chunk_active(track) is False  # --load-policy off (the default)
        rec.append(prog.audio[SAMPLE_RATE:int(2.5 * SAMPLE_RATE)], SAMPLE_RATE)  # 2.5 s: behind
        assert SttSidecar(spec=spec).chunk_active(track) is False
        assert sidecar.chunk_active(track)
        # The stream's passes are chunks now: through the sidecar's own scheduling and step.
        words: list[Word] = []
        for i in range(int(2.5 * SAMPLE_RATE), len(prog.audio), 1600):
            rec.append(prog.audio[i:i + 1600], i)
            if (end := sidecar.next_pass_end(track)) is not None:
                assert track.chunk
                words += sidecar._step(track, end).committed
        assert rec.chunk_passes >= 4 and rec.chunk_passes == rec.passes, (rec.chunk_passes, rec.passes)
        assert rs.wer(prog.reference, " ".join(w.text for w in words)) <= 0.15, words
        # Held: busy workers (a batch that took 8 of the last 10 s on each) keep it on after CHUNK_HOLD ...
        now = time.monotonic()
        b.chunk_since = now - b.CHUNK_HOLD - 1
        b._busy = [(now, 8.0), (now, 8.0)]
        assert b.utilisation(now) >= 0.5
        assert sidecar.chunk_active(track)
        # ... idle workers turn it off, and the next pass is an ordinary one again.
        b._busy = [(now, 0.5)]
        assert b.utilisation(now) < b.CHUNK_LEAVE
        assert not sidecar.chunk_active(track)
        rec.append(np.zeros(SAMPLE_RATE, dtype=np.float32), rec.received_end)
        assert sidecar.next_pass_end(track) is not None and not track.chunk


@pytest.mark.parametrize("argv, message", [(["--load-policy", "fast"], "--load-policy fast: chunk or off"),
                                           (["--load-policy", "Chunk"], "--load-policy Chunk: chunk or off"),
                                           (["--chunk-cap", "0.5"], "--chunk-cap 0.5: 1..10 seconds"),
                                           (["--chunk-cap", "nan"], "--chunk-cap nan: 1..10 seconds"),
                                           (["--chunk-prompt", "-1"], "--chunk-prompt -1: 0 .as other passes. or 1..1000")])
def test_a_bad_load_policy_option_is_one_clear_error(argv: list[str], message: str) -> None:
    ap = argparse.ArgumentParser()
    SttSidecar.add_arguments(ap)
    with pytest.raises(ModelError, match=message):
        SttSidecar.from_args(ap.parse_args(argv))


def test_chunk_passes_run_with_their_own_beam_and_a_shorter_prompt(model: object, prog: rs.Programme) -> None:
    # --chunk-beam and --chunk-prompt apply to chunk passes only, over the stream's own options.
    spec = engine.resolve_spec(None, "cpu", "int8", 2)
    base = DecodeOptions(language="en", beam_size=3)
    sidecar = SttSidecar(spec=spec, load_policy="chunk", chunk_beam=1, chunk_prompt=60)
    assert sidecar.chunk_options(base) == DecodeOptions(language="en", beam_size=1, max_prompt_chars=60)
    assert SttSidecar(spec=spec, load_policy="chunk", chunk_prompt=None).chunk_options(base) == base
    assert SttSidecar(spec=spec).chunk_prompt == 60  # the default, with --load-policy chunk
    # Through the sidecar's own step: the chunk pass's prompt is cut to 60 characters, the stream's
    # options are its own again afterwards.
    track = sidecar._make_tracks(0)[0]
    assert track.decoder is not None
    seen: list[DecodeOptions] = []
    prepare = track.decoder.prepare

    def spy(audio: np.ndarray, prompt: str, prefix: str = "") -> engine.PassInput:
        seen.append(track.decoder.options)  # type: ignore[union-attr]
        return prepare(audio, prompt, prefix)

    track.decoder.prepare = spy  # type: ignore[method-assign]
    own = track.decoder.options
    rec = track.recognizer
    with shared_batcher(track) as b:
        b.chunked, b.chunk_since, b._busy = True, time.monotonic(), [(time.monotonic(), 9.0)] * 2
        for i in range(0, 12 * SAMPLE_RATE, 1600):
            rec.append(prog.audio[i:i + 1600], i)
            if (end := sidecar.next_pass_end(track)) is not None:
                assert track.chunk
                sidecar._step(track, end)
    assert seen and all((o.beam_size, o.max_prompt_chars) == (1, 60) for o in seen), seen
    assert track.decoder.options == own and own.max_prompt_chars == 200
