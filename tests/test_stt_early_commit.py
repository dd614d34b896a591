"""Early commits (``StreamConfig.early_commit``, the sidecar's ``--early-commit``): a word a pass would hold
for a second opinion only because it ends near the newest audio, is the pass's last word or starts a speech
region, is committed from that one pass when the decoder was confident of it and it ends ``early_commit``
before the pass's audio does. Real tiny.en inference on real recorded speech (tuning clips of
devkit/realspeech.py), replayed deterministically with passes spaced as on a loaded CPU (one per 0.9 s of
audio, each taking that long), as bench/stt.py ``--replay-step 0.9`` does and as tests/test_stt_pause_commit.py
measures words at a pause."""

from __future__ import annotations

import statistics

import pytest

from devkit import realspeech as rs
from sidecast.sidecars.stt import engine
from sidecast.sidecars.stt.recognizer import StreamConfig
from sidecast.sidecars.stt.sidecar import EARLY_COMMIT, EARLY_COMMIT_S
from tests.stt_passes import Passes
from tests.test_stt_pause_commit import CLIPS, GAPS, STEP, replay


@pytest.fixture(scope="module")
def model() -> object:
    return engine.load_model(engine.resolve_spec(None, "cpu", "int8", 2))


@pytest.fixture(scope="module")
def prog() -> rs.Programme:
    return rs.tuning_programme(CLIPS, GAPS)  # tuning clips only


@pytest.fixture(scope="module")
def passes() -> Passes:
    return {}


def test_confident_held_words_come_out_a_pass_sooner_and_the_same(model: object, prog: rs.Programme,
                                                                  passes: Passes) -> None:
    before, before_at, _, _, old = replay(model, prog, StreamConfig(), passes)
    words, at, _, _, rec = replay(model, prog, StreamConfig(early_commit=EARLY_COMMIT_S), passes)
    assert old.early_commits == 0  # off by default in the recogniser: the sidecar turns it on
    said = " ".join(w.text for w in words)
    assert rs.wer(prog.reference, said) <= rs.wer(prog.reference, " ".join(w.text for w in before)), said
    assert rec.early_commits >= 3, rec.early_commits
    # The same words; several out a whole pass sooner, and far more sooner than later (a word can come a pass
    # later: the passes after an early commit see another committed point, and a word the old passes left to
    # a pause commit may wait for the next pass: 2 of the 12 that moved on this programme, 2026-12-02).
    assert [w.text for w in words] == [w.text for w in before], (said, " ".join(w.text for w in before))
    lead = [b - a for a, b in zip(at, before_at, strict=True)]
    sooner, later = sum(x >= STEP - 1e-6 for x in lead), sum(x < -1e-6 for x in lead)
    assert sooner >= 3 and sooner >= 3 * later, lead
    # On the whole, words are out sooner: the mean time from a word's end to its commit drops. (The last word
    # before each pause is committed at the pause on this short programme either way; on the 4-minute tuning
    # replay the last word of an utterance came 1.51 s after its end at the median against 1.78 s.)
    slow = statistics.mean(t - w.end for w, t in zip(before, before_at, strict=True))
    quick = statistics.mean(t - w.end for w, t in zip(words, at, strict=True))
    assert quick <= slow - 0.05, (slow, quick)


def test_an_unsure_or_unfinished_word_still_waits(model: object, prog: rs.Programme, passes: Passes) -> None:
    # A probability no word reaches: nothing is committed early, the output is that of the old rule.
    before = replay(model, prog, StreamConfig(), passes).words
    words, _, _, _, rec = replay(model, prog, StreamConfig(early_commit=EARLY_COMMIT_S, early_prob=1.01), passes)
    assert rec.early_commits == 0 and [w.text for w in words] == [w.text for w in before]


def test_the_sidecar_commits_early_by_default() -> None:
    assert EARLY_COMMIT == "on" and 0 < EARLY_COMMIT_S < 0.5  # closer to the newest audio than AlignAtt's 0.5 s
