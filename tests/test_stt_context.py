"""Context under load (sidecar ``--load-context``): while the shared pass scheduler is behind (its pace
above 0: passes queue for a worker), a stream keeps less committed speech as context at its next trim, so
each of its passes re-encodes less audio; when the scheduler keeps up again, the full ``keep_context``
comes back. The scheduler's state is driven directly (no clock, no sleeps); the recogniser runs over the
scripted ``Timeline`` decoder of test_stt_shaping (what was said, at fixed media times)."""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Iterator

import numpy as np
import pytest

from sidecast.sidecars.stt import engine
from sidecast.sidecars.stt.engine import ModelError
from sidecast.sidecars.stt.recognizer import StreamConfig, StreamingRecognizer
from sidecast.sidecars.stt.sidecar import SttSidecar, _Track, smooth_pass_wall
from tests.test_stt_shaping import SPEECH, TWO_SENTENCES, Timeline, words_from

SR = 16_000


def run_through(sidecar: SttSidecar, track: _Track, tl: Timeline, seconds: float) -> StreamingRecognizer:
    """Feed ``seconds`` of audio to the track's recogniser, each pass through the sidecar's own step."""
    rec = track.recognizer
    for i in range(0, int(seconds * SR), 1600):
        rec.append(np.zeros(1600, dtype=np.float32), i)
        if (end := rec.next_pass_end()) is not None:
            sidecar._step(track, end)
    rec.finish()
    return rec


def timeline_track(sidecar: SttSidecar, real: _Track) -> tuple[_Track, Timeline]:
    """The sidecar's track with the scripted decoder in place of the model (same scheduler)."""
    tl = Timeline(TWO_SENTENCES, SPEECH)
    rec = StreamingRecognizer(tl.decode, tl.vad, sidecar.stream_config)
    tl.rec = rec
    return _Track(rec, real.builder, real.decoder), tl


@contextlib.contextmanager
def shared_batcher(track: _Track) -> Iterator[engine.PassBatcher]:
    """The process's shared pass scheduler behind ``track``, its pace and wait restored afterwards (the
    tests drive it by hand; the other tests in this process share it)."""
    assert track.decoder is not None and track.decoder.batcher is not None
    b = track.decoder.batcher
    saved = (b.pace, b.wait_avg)
    try:
        yield b
    finally:
        b.pace, b.wait_avg = saved


def test_streams_keep_less_context_while_the_shared_scheduler_is_behind() -> None:
    # The scheduler's pace: passes queue for a worker.
    spec = engine.resolve_spec(None, "cpu", "int8", 2)
    sidecar = SttSidecar(spec=spec, stream=StreamConfig(min_step=0.5, max_step=1.0, keep_context=8.0),
                         load_context=1.5)
    real = sidecar._make_tracks(0)[0]
    with shared_batcher(real) as b:
        b.pace, b.wait_avg = 0.0, 0.0
        assert sidecar.context_seconds(real) == 8.0  # keeping up: the full context
        track, tl = timeline_track(sidecar, real)
        rec = run_through(sidecar, track, tl, 8.0)
        assert " ".join(w.text for w in rec.committed) == "Doctors say walking is good. Heavy rain is expected tonight."
        assert max(tl.buffer_starts[-4:]) <= 0.2, tl.buffer_starts  # the first sentence stayed as context

        for _ in range(6):  # rounds whose passes waited 1 s for a worker: the model is behind
            b._adapt([1.0, 1.0])
        assert b.pace >= 1.0, b.pace
        assert sidecar.context_seconds(real) == 1.5
        track, tl = timeline_track(sidecar, real)
        rec = run_through(sidecar, track, tl, 8.0)
        assert " ".join(w.text for w in rec.committed) == "Doctors say walking is good. Heavy rain is expected tonight."
        # the 1.8 s first sentence no longer fits in the context: the buffer starts after it
        assert min(tl.buffer_starts[-4:]) >= 2.0, tl.buffer_starts

        b.pace = 0.5  # half way: part of the way down
        assert sidecar.context_seconds(real) == 8.0 - 6.5 * 0.5

        for _ in range(100):  # passes that find a worker free: the pace falls back, the context returns
            b._adapt([0.0])
            if b.pace == 0.0:
                break
        assert b.pace == 0.0 and sidecar.context_seconds(real) == 8.0
        b.pace = 1.0
        assert SttSidecar(spec=spec).context_seconds(real) == 3.0  # the default --load-context
        assert SttSidecar(spec=spec, load_context=None).context_seconds(real) == 8.0  # --load-context off


def test_a_stream_whose_audio_piles_up_between_passes_keeps_less_context() -> None:
    # With fixed pacing (the default) a slow model shows in each stream's backlog, not in the queue:
    # every stream waits on its own pass, then takes a bigger step. Audio that arrived since the stream's
    # last pass: up to 1 s it keeps up (full context), from 2 s on it is behind (the least context).
    spec = engine.resolve_spec(None, "cpu", "int8", 2)
    sidecar = SttSidecar(spec=spec, load_context=3.0)
    track = sidecar._make_tracks(0)[0]
    rec = track.recognizer
    with shared_batcher(track) as b:
        b.pace = 0.0
        rec.append(np.zeros(SR, dtype=np.float32), 0)  # 1 s since the last pass: keeping up
        assert sidecar.context_seconds(track) == 8.0
        rec.append(np.zeros(SR // 2, dtype=np.float32), SR)  # 1.5 s: half way
        assert sidecar.context_seconds(track) == 8.0 - 5.0 * 0.5
        rec.append(np.zeros(SR, dtype=np.float32), 3 * SR // 2)  # 2.5 s: behind
        assert sidecar.context_seconds(track) == 3.0
        rec.pass_end = 2 * SR  # a pass took it up to 2 s: 0.5 s left, keeping up again
        assert sidecar.context_seconds(track) == 8.0
        assert SttSidecar(spec=spec, load_context=None).context_seconds(track) == 8.0  # --load-context off


@pytest.mark.parametrize("argv", [["--load-context", "soon"], ["--load-context", "nan"], ["--load-context", "-1"],
                                  ["--keep-context", "inf"], ["--keep-context", "-2"], ["--load-step", "nan"],
                                  ["--load-step", "7"], ["--load-step", "later"]])
def test_a_bad_context_option_is_one_clear_error(argv: list[str]) -> None:
    ap = argparse.ArgumentParser()
    SttSidecar.add_arguments(ap)
    with pytest.raises(ModelError, match="--load-context 0..20 or off"):
        SttSidecar.from_args(ap.parse_args(argv))


THREE_SENTENCES = (words_from("Doctors say walking is good.", start=0.2, per_word=0.36)
                   + words_from("Heavy rain is expected tonight.", start=2.2, per_word=0.36)
                   + words_from("The match starts at noon.", start=4.2, per_word=0.36))


@pytest.mark.parametrize("cut", ["now", "trim"])
def test_a_stream_that_falls_behind_mid_speech_sheds_its_context_at_once(cut: str) -> None:
    # One unbroken run of speech (no pause to trim at) and a buffer shorter than trim_sentence: before,
    # a lowered context waited for the next trim, so every pass still re-encoded the first sentence.
    # Now (--context-cut now, the default) the buffer's committed head is cut before the next pass, at a
    # committed sentence end; once the model keeps up, nothing more is cut and the context grows back.
    spec = engine.resolve_spec(None, "cpu", "int8", 2)
    sidecar = SttSidecar(spec=spec, stream=StreamConfig(min_step=0.5, max_step=1.0, keep_context=8.0),
                         load_context=1.5, shed=cut == "now")
    real = sidecar._make_tracks(0)[0]
    tl = Timeline(THREE_SENTENCES, [(0.2, 6.0)])
    rec = StreamingRecognizer(tl.decode, tl.vad, sidecar.stream_config)
    tl.rec = rec
    track = _Track(rec, real.builder, real.decoder)

    def feed(until: float) -> None:
        for i in range(rec.received_end, int(until * SR), 1600):
            rec.append(np.zeros(1600, dtype=np.float32), i)
            if (end := rec.next_pass_end()) is not None:
                sidecar._step(track, end)

    with shared_batcher(real) as b:
        b.pace = 0.0  # keeping up: the full context, the first sentence stays in the buffer
        feed(3.5)
        assert "good." in [w.text for w in rec.committed] and rec.buf_start == 0
        b.pace = 1.0  # behind: 1.5 s of context, too short for the 1.8 s first sentence
        seen = len(tl.buffer_starts)
        feed(5.0)
        behind = tl.buffer_starts[seen:]
        assert behind, "no pass ran while the model was behind"
        if cut == "now":
            assert min(behind) >= 2.0, behind  # cut after "good." before the first pass behind
            assert "good." not in tl.prefixes[seen]  # no longer forced as the decoder's prefix either
        else:
            assert max(behind) == 0.0, behind  # the old behaviour: the whole context until a trim
        b.pace = 0.0  # caught up: the full context again, the buffer is not cut any further
        start = rec.buf_start
        seen = len(tl.buffer_starts)
        feed(8.0)
        assert sidecar.context_seconds(track) == 8.0
        assert set(tl.buffer_starts[seen:]) == {start / SR}, tl.buffer_starts[seen:]
        assert tl.prefixes[-1].endswith("The match starts")  # the context grows back as it is committed
        rec.finish()
        assert " ".join(w.text for w in rec.committed) == \
            "Doctors say walking is good. Heavy rain is expected tonight. The match starts at noon."


def test_slow_passes_wait_for_more_audio_and_quick_ones_do_not() -> None:
    # --load-step: with fixed pacing a stream's passes ran back to back however slow the shared model was,
    # each paying again for its whole buffer. Once its passes take 0.5-1 s of wall time (smoothed), a
    # stream waits for up to --load-step of new audio; quick passes keep the 0.5 s step.
    spec = engine.resolve_spec(None, "cpu", "int8", 2)
    sidecar = SttSidecar(spec=spec, load_step=1.5)
    track = sidecar._make_tracks(0)[0]
    rec = track.recognizer
    rec.append(np.zeros(SR, dtype=np.float32), 0)  # 1 s of new audio
    track.pass_wall = 0.3  # quick passes: due after 0.5 s, as before
    assert sidecar.step_seconds(track) == 0.5 and sidecar.next_pass_end(track) == SR
    track.pass_wall = 0.75  # half way
    assert sidecar.step_seconds(track) == 1.0 and sidecar.next_pass_end(track) == SR
    track.pass_wall = 2.0  # slow: 1.5 s of audio first
    assert sidecar.step_seconds(track) == 1.5 and sidecar.next_pass_end(track) is None
    rec.append(np.zeros(SR // 2, dtype=np.float32), SR)
    assert sidecar.next_pass_end(track) == 3 * SR // 2
    assert SttSidecar(spec=spec).step_seconds(track) == 0.5  # --load-step off: the old pacing
    # the smoothed wall time follows the passes: quick ones bring the step back down
    for _ in range(12):
        track.pass_wall = smooth_pass_wall(track.pass_wall, 0.2)
    assert sidecar.step_seconds(track) == 0.5


def test_with_a_load_step_slow_passes_also_lower_the_context() -> None:
    # With --load-step a slow stream takes longer steps, so the audio waiting at its pass (1-2 s: behind)
    # says only half behind; its slow passes say it: the least context. Without --load-step, unchanged.
    spec = engine.resolve_spec(None, "cpu", "int8", 2)
    track = SttSidecar(spec=spec)._make_tracks(0)[0]
    with shared_batcher(track) as b:
        b.pace = 0.0
        track.recognizer.append(np.zeros(3 * SR // 2, dtype=np.float32), 0)  # 1.5 s waiting: half way
        track.pass_wall = 1.2  # slow passes
        assert SttSidecar(spec=spec, load_step=1.5).context_seconds(track) == 3.0
        assert SttSidecar(spec=spec).context_seconds(track) == 8.0 - 5.0 * 0.5  # --load-step off: as before
        track.pass_wall = 0.2  # quick again: the backlog alone decides
        assert SttSidecar(spec=spec, load_step=1.5).context_seconds(track) == 8.0 - 5.0 * 0.5
