"""Words at a pause (``StreamConfig.pause_commit``, the sidecar's ``--pause-commit``): the words a pass held
at the end of a stretch of speech are committed as soon as the VAD hears that speech end, between passes,
instead of by the next pass. Real tiny.en inference on real recorded speech (tuning clips of
devkit/realspeech.py), replayed deterministically with passes spaced as on a loaded CPU (one per 0.9 s of
audio, each taking that long: its words count when the next pass starts), as bench/stt.py
``--replay-step 0.9`` does."""

from __future__ import annotations

import argparse
import statistics
from typing import NamedTuple

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from devkit import realspeech as rs
from sidecast.contract.records import Word
from sidecast.sidecars.stt import engine
from sidecast.sidecars.stt.engine import DecodeOptions, Decoder
from sidecast.sidecars.stt.guards import DecodedSegment, DecodedWord
from sidecast.sidecars.stt.recognizer import SAMPLE_RATE, StreamConfig, StreamingRecognizer
from sidecast.sidecars.stt.sidecar import SttSidecar
from tests.stt_passes import Passes, SharedPasses

# A 7 s LibriVox sentence, then short prompts of another voice with pauses between them, as in the bench's
# programme (bench/latency.py's speech) and a presenter's sentences.
CLIPS = ["librivox/0870", "asterisk-en/agent-alreadyon", "asterisk-en/vm-nomore", "asterisk-en/conf-full",
         "asterisk-en/agent-loginok", "asterisk-en/conf-now-muted"]
GAPS = [1.0, 1.2, 1.5, 1.1, 1.3]
STEP = 0.9  # seconds of audio per pass, and each pass's wall time (back to back)


@pytest.fixture(scope="module")
def model() -> object:
    return engine.load_model(engine.resolve_spec(None, "cpu", "int8", 2))


@pytest.fixture(scope="module")
def prog() -> rs.Programme:
    return rs.tuning_programme(CLIPS, GAPS)  # tuning clips only


@pytest.fixture(scope="module")
def passes() -> Passes:
    """The passes the replays of this module ran: pause commits off and on ask for the same passes until
    the first pause commit (tests/stt_passes.py)."""
    return {}


class Replay(NamedTuple):
    words: list[Word]      # committed, in order
    out_at: list[float]    # when each was out (media seconds): a pass's words when the next pass starts,
                           # words at a pause when found, the words the end committed at the end
    paused: list[Word]     # the words commit_paused gave
    finished: int          # how many of the last words the end committed (not a pass or a pause)
    rec: StreamingRecognizer


def replay(model: object, prog: rs.Programme, cfg: StreamConfig, passes: Passes) -> Replay:
    """The programme through one recogniser, passes spaced STEP apart, each taking STEP (shared with
    tests/test_stt_early_commit.py)."""
    decoder = SharedPasses(model, DecodeOptions(language=None, beam_size=3), passes)
    vad = engine.StreamVad()
    rec = StreamingRecognizer(decoder.decode, vad, cfg)
    vad.follow(rec)
    words: list[Word] = []
    out_at: list[float] = []
    paused: list[Word] = []
    for i in range(0, len(prog.audio), 1600):
        rec.append(prog.audio[i:i + 1600], i)
        now = rec.received_end / SAMPLE_RATE
        if (end := rec.next_pass_end()) is None or (end - rec.pass_end) / SAMPLE_RATE < STEP - 1e-9:
            continue
        got = rec.commit_paused().committed
        paused += got
        words += got
        out_at += [now] * len(got)
        got = rec.step(end).committed
        words += got
        out_at += [now + STEP] * len(got)
    got = rec.finish().committed
    words += got
    out_at += [len(prog.audio) / SAMPLE_RATE] * len(got)
    return Replay(words, out_at, paused, len(got), rec)


def last_words(words: list[Word], out_at: list[float], pauses: list[int]) -> list[float]:
    """For the words at ``pauses`` (indices): how long after its end each was out."""
    return [out_at[i] - words[i].end for i in pauses]


def test_words_at_a_pause_come_out_sooner_and_the_same(model: object, prog: rs.Programme, passes: Passes) -> None:
    old = replay(model, prog, StreamConfig(pause_commit=False), passes)
    before, before_at = old.words, old.out_at
    assert old.paused == []  # off: only passes commit
    new = replay(model, prog, StreamConfig(pause_commit=True), passes)
    words, at, paused = new.words, new.out_at, new.paused
    said = " ".join(w.text for w in words)
    assert " ".join(w.text for w in before) == said  # the very same words, in the same order
    assert rs.wer(prog.reference, said) <= 0.12, said
    # Some held words were committed at a pause, each inside the speech (not after its end) ...
    assert paused, said
    assert all(any(a - 0.2 <= w.start and w.end <= b + 0.5 for a, b in engine.speech_regions(prog.audio))
               for w in paused), paused
    # ... and the last words before the pauses came out sooner: never later, and where a pause commit
    # took them half a second or more sooner.
    # (The last word before each pause of 0.8 s or more, as the passes alone timed it.)
    pauses = [i for i, w in enumerate(before[:-1]) if before[i + 1].start - w.end >= 0.8
              and i < len(before) - old.finished and i < len(words) - new.finished]  # timed by a pass or a pause
    slow, quick = last_words(before, before_at, pauses), last_words(words, at, pauses)
    assert len(pauses) >= 4, pauses
    assert all(q <= s + 1e-6 for q, s in zip(quick, slow, strict=True)), (slow, quick)
    assert sum(q <= s - 0.5 for q, s in zip(quick, slow, strict=True)) >= 2, (slow, quick)
    assert statistics.median(quick) <= statistics.median(slow), (slow, quick)


def test_nothing_is_committed_at_a_pause_while_the_speech_goes_on(model: object, prog: rs.Programme) -> None:
    decoder = Decoder(model, DecodeOptions(language=None, beam_size=3))
    vad = engine.StreamVad()
    rec = StreamingRecognizer(decoder.decode, vad, StreamConfig())
    vad.follow(rec)
    first = prog.utterances[0]  # the 7 s LibriVox sentence: speech all through
    mid = round((first.start + 4.0) * SAMPLE_RATE)
    rec.append(prog.audio[:mid], 0)
    rec.step(mid)
    assert rec.hypothesis  # the pass held its last words
    rec.append(prog.audio[mid:mid + SAMPLE_RATE // 2], mid)  # half a second more of the same sentence
    r = rec.commit_paused()
    assert r.committed == [] and rec.hypothesis, r
    assert not rec.pause_due()  # no new audio since: nothing to look at again


@pytest.mark.parametrize(("argv", "on"), [([], True), (["--pause-commit", "off"], False), (["--pause-commit", "on"], True)])
def test_the_sidecar_option_reaches_the_stream_config(argv: list[str], on: bool) -> None:
    ap = argparse.ArgumentParser()
    SttSidecar.add_arguments(ap)
    sidecar = SttSidecar.from_args(ap.parse_args(argv))()
    assert isinstance(sidecar, SttSidecar) and sidecar.stream_config.pause_commit is on
    assert sidecar._make_tracks(0)[0].recognizer.cfg.pause_commit is on


def test_a_bad_pause_commit_value_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    ap = argparse.ArgumentParser()
    SttSidecar.add_arguments(ap)
    with pytest.raises(SystemExit):
        ap.parse_args(["--pause-commit", "sometimes"])
    assert "--pause-commit: invalid choice: 'sometimes'" in capsys.readouterr().err


def test_silence_alone_commits_nothing(model: object) -> None:
    decoder = Decoder(model, DecodeOptions(language=None, beam_size=3))
    vad = engine.StreamVad()
    rec = StreamingRecognizer(decoder.decode, vad, StreamConfig())
    vad.follow(rec)
    rec.append(np.zeros(3 * SAMPLE_RATE, dtype=np.float32), 0)
    assert not rec.pause_due() and rec.commit_paused().committed == []


class _Passes:
    """One decoder answer for every pass: the commit policy on its own (no model)."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __call__(self, audio: np.ndarray, prompt: str, prefix: str = "") -> list[DecodedSegment]:
        words = self.text.split()
        end = min(len(audio) / SAMPLE_RATE, 0.1 + 0.4 * len(words))
        step = (end - 0.1) / len(words)
        dws = tuple(DecodedWord(w, 0.1 + i * step, 0.1 + (i + 1) * step, 0.9) for i, w in enumerate(words))
        return [DecodedSegment(text=self.text, start=0.1, end=end, words=dws, avg_logprob=-0.2)]


regions = st.lists(st.tuples(st.floats(-5.0, 10.0, allow_nan=False), st.floats(-5.0, 10.0, allow_nan=False)),
                   max_size=6)


@settings(max_examples=300, deadline=None)
@given(at_pass=regions, at_pause=regions, more=st.floats(0.1, 3.0), seconds=st.floats(1.6, 3.0))
def test_no_vad_answer_breaks_the_pause_check(at_pass: list[tuple[float, float]], at_pause: list[tuple[float, float]],
                                              more: float, seconds: float) -> None:
    # The held-out programme stopped the stt worker here (ValueError from the pause check) when the VAD heard
    # no speech after the committed point while words were held: an empty, reversed, overlapping, negative or
    # out-of-range VAD answer must leave the held words to the next pass or commit some of them, in order.
    answers = [[(0.0, seconds)]]
    rec = StreamingRecognizer(_Passes("good evening and welcome to the news"), lambda a: answers[0],
                              StreamConfig(policy="alignatt"))
    n = int(seconds * SAMPLE_RATE)
    rec.append(np.zeros(n, dtype=np.float32), 0)
    before = rec.step(n)
    answers[0] = at_pass
    rec.append(np.zeros(int(more * SAMPLE_RATE), dtype=np.float32), n)
    answers[0] = at_pause
    held = list(rec.hypothesis)
    r = rec.commit_paused()
    assert [w.text for w in r.committed] == [w.text for w in held[:len(r.committed)]]
    assert [w.text for w in rec.hypothesis] == [w.text for w in held[len(r.committed):]]
    assert r.frontier >= before.frontier
