"""The voice-change test (sidecars/stt/voice.py) on real recorded speech, and the recogniser dropping its
kept context on a change of voice after a pause, not on the same speaker's pause (``voice_change``).

The kept context (the last committed sentences as audio and forced prefix) helps the same speaker going
on after a pause and was thought to mislead tiny.en on another speaker's first words; the rule is an
option, off by default (docs/captions.md, "A change of voice and the kept context": on the tuning
programmes it lost more words than it won). Tuning recordings only: the held-out ones are for measuring.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

from devkit import realspeech as rs
from sidecast.contract.records import Word
from sidecast.sidecars.stt import engine, voice
from sidecast.sidecars.stt.engine import DecodeOptions, Decoder
from sidecast.sidecars.stt.recognizer import SAMPLE_RATE, StreamConfig, StreamingRecognizer

THRESHOLD = 0.25  # the threshold decided on the tuning programmes' distances (docs/captions.md)


def clip(cid: str) -> np.ndarray:
    pool = {c.id: c for c in (*rs.librivox(), *rs.prompts("en"), *rs.pocketsphinx_speakers())}
    assert pool[cid].split == "tuning"  # held-out recordings are for measuring only
    audio = rs.load(pool[cid].path)
    a, b = rs.speech_bounds(audio)
    return audio[a:b]


@pytest.mark.parametrize("before, after", [
    ("asterisk-en/vm-nobodyavail", "librivox/0870"),   # the telephone voice, then the LibriVox reader
    ("librivox/0870", "cards/003"),                     # the reader, then the card caller
    ("cards/003", "asterisk-en/speed-dial-empty"),      # the card caller, then the telephone voice
])
def test_another_speaker_is_a_change_of_voice(before: str, after: str) -> None:
    a = voice.speech_frames(clip(before))
    b = voice.speech_frames(clip(after)[: SAMPLE_RATE])  # the check hears the new speech's first second
    assert voice.distance(a, b) > THRESHOLD


@pytest.mark.parametrize("before, after", [
    ("librivox/0870", "librivox/0890"),                 # the reader goes on with another sentence
    ("librivox/0930", "librivox/0870"),
    ("asterisk-en/demo-thanks", "asterisk-en/vm-nobodyavail"),  # the telephone voice, another prompt
])
def test_the_same_speaker_saying_other_words_is_not(before: str, after: str) -> None:
    a = voice.speech_frames(clip(before))
    b = voice.speech_frames(clip(after)[: SAMPLE_RATE])
    assert voice.distance(a, b) < THRESHOLD


def test_too_little_speech_is_no_verdict() -> None:
    a = voice.speech_frames(clip("librivox/0870"))
    assert np.isnan(voice.distance(a, voice.speech_frames(clip("cards/003")[:1600])))  # 0.1 s
    assert np.isnan(voice.distance(a, voice.speech_frames(np.zeros(SAMPLE_RATE, dtype=np.float32))))


@pytest.fixture(scope="module")
def decoder() -> Iterator[Decoder]:
    model = engine.load_model(engine.resolve_spec(None, "cpu", "int8", 2))
    yield Decoder(model, DecodeOptions(language=None, beam_size=3))


def test_the_recogniser_drops_the_context_on_a_new_voice_and_keeps_it_for_the_same_one(decoder: Decoder) -> None:
    # The telephone voice, 3.5 s of silence, the LibriVox reader, 2.5 s, the reader again: the first pause
    # is a change of voice (the context is dropped: the reader's first pass has no forced prefix and its
    # buffer starts at her speech), the second is the same voice going on (the context is kept).
    prog = rs.tuning_programme(["asterisk-en/vm-nobodyavail", "librivox/0870", "librivox/0890"], [3.5, 2.5, 1.0])
    # Off by default: on the tuning programmes dropping the context on a new voice cost more words than
    # it saved (docs/captions.md, "A change of voice"); change the default only with new tuning figures.
    assert StreamConfig.voice_change == 0.0
    cfg = StreamConfig(voice_change=THRESHOLD)
    rec = StreamingRecognizer(decoder.decode, engine.speech_regions, cfg)
    words: list[Word] = []
    prefixes: list[tuple[float, float, str]] = []  # (pass end, buffer start, forced prefix), seconds
    for i in range(0, len(prog.audio), 1600):
        rec.append(prog.audio[i:i + 1600], i)
        if (end := rec.next_pass_end()) is not None:
            words += rec.step(end).committed
            prefixes.append((end / SAMPLE_RATE, rec.buf_start / SAMPLE_RATE, rec._prefix()))
    words += rec.finish().committed
    reader, again = prog.utterances[1], prog.utterances[2]
    checks = {min(prog.utterances, key=lambda u: abs(u.start - onset - 0.15)).clip: dropped
              for onset, _, dropped in rec.voice_checks}
    assert checks == {"librivox/0870": True, "librivox/0890": False}, rec.voice_checks
    # After the change, the passes over the reader's first words hear neither the telephone voice's
    # audio nor its text as forced prefix (only the reader's own words, once committed); after the
    # same-speaker pause the reader's sentence is kept, audio and prefix.
    after_change = [p for p in prefixes if reader.start + 1.2 <= p[0] <= reader.start + 2.5]
    assert after_change and all(b >= prog.utterances[0].end and "available" not in x.lower()
                                for _, b, x in after_change), after_change
    after_same = [p for p in prefixes if again.start + 1.2 <= p[0] <= again.start + 2.5]
    assert after_same and all(b < reader.end and x for _, b, x in after_same), after_same
    assert rs.wer(prog.reference, " ".join(w.text for w in words)) <= 0.15, " ".join(w.text for w in words)
