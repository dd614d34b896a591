"""Cue shaping and the recogniser's guards and agreement policy: pure functions, no model."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from sidecast.contract.records import Word
from sidecast.sidecars.stt.guards import (
    DecodedSegment,
    DecodedWord,
    cut_repetitions,
    filter_segments,
    segment_is_speech,
)
from sidecast.sidecars.stt.recognizer import StreamConfig, StreamingRecognizer
from sidecast.sidecars.stt.shaping import CaptionStyle, CueBuilder, break_lines, group_words, shape_cues


def words_from(text: str, start: float = 0.0, per_word: float = 0.3, gap: float = 0.0) -> list[Word]:
    out, t = [], start
    for w in text.split():
        out.append(Word(w, t, t + per_word))
        t += per_word + gap
    return out


def test_short_text_stays_on_one_line() -> None:
    assert break_lines("Good evening and welcome.".split()) == ["Good evening and welcome."]


def test_lines_break_after_punctuation_rather_than_in_the_middle() -> None:
    lines = break_lines("Heavy rain is expected in the north, while the south stays dry and warm.".split())
    assert lines == ["Heavy rain is expected in the north,", "while the south stays dry and warm."]


def test_lines_never_strand_an_article() -> None:
    lines = break_lines("The council approved the budget for the new bridge over the river today".split())
    assert lines is not None and len(lines) == 2
    assert lines[0].split()[-1].lower() not in {"the", "a", "an"}
    assert all(len(ln) <= 42 for ln in lines)


def test_text_that_cannot_fit_two_lines_is_refused() -> None:
    assert break_lines(("word " * 30).split()) is None


@settings(max_examples=60, deadline=None)
@given(st.lists(st.text(alphabet="abcdefghij,.", min_size=1, max_size=14), min_size=1, max_size=80),
       st.lists(st.floats(min_value=0.0, max_value=2.0), min_size=1, max_size=80))
def test_shaped_cues_obey_broadcast_rules(tokens: list[str], gaps: list[float]) -> None:
    words, t = [], 0.0
    for i, tok in enumerate(tokens):
        t += gaps[i % len(gaps)]
        words.append(Word(tok, t, t + 0.25))
        t += 0.25
    style = CaptionStyle()
    cues = shape_cues(words, style)
    assert [w for c in cues for w in c.words] == words  # nothing lost, nothing reordered
    for c in cues:
        assert 1 <= len(c.lines) <= 2 and all(len(ln) <= 42 for ln in c.lines)
        assert c.end - c.start <= style.max_duration + 1e-9
        assert c.end > c.start
    for a, b in zip(cues, cues[1:], strict=False):
        assert a.end <= b.start + 1e-9  # never two captions at once


def test_cues_start_at_sentences_and_pauses_and_hold_the_minimum_duration() -> None:
    words = words_from("Yes. The bridge will close on Friday", 0.0) + words_from("for repairs.", 5.0)
    groups = [" ".join(w.text for w in g) for g in group_words(words)]
    assert groups == ["Yes.", "The bridge will close on Friday", "for repairs."]
    cues = shape_cues(words)
    assert cues[0].end - cues[0].start >= 0.3  # "Yes." is short, but held until the next cue needs the screen
    assert cues[2].end - cues[2].start >= 1.0


def test_cue_builder_publishes_finals_once_and_partials_with_the_next_id() -> None:
    b = CueBuilder(max_open=2.5)
    finals, partial = b.update([], words_from("good evening", 1.0), frontier=1.0)
    assert finals == [] and partial is not None and not partial.final and partial.id == "cc-0"
    finals, partial = b.update(words_from("good evening and welcome.", 1.0), [], frontier=2.6)
    assert [(c.text, c.final, c.id) for c in finals] == [("good evening and welcome.", True, "cc-0")]
    assert partial is None
    finals, partial = b.update(words_from("the news", 4.0), words_from("at six", 4.6), frontier=4.6)
    assert finals == [] and partial is not None and partial.text == "the news at six" and partial.id == "cc-1"
    assert b.open_start == 4.0  # the watermark waits for this open cue
    finals, _ = b.update([], [], frontier=8.0)  # silence: the open cue is settled
    assert [c.id for c in finals] == ["cc-1"] and finals[0].start >= 2.0


def test_a_cue_is_final_once_open_max_open_seconds_and_the_sidecar_uses_the_same_default() -> None:
    """The first words of a long sentence wait for their cue to close: 1.5 s of media at most by default
    (2.5 s before the eleventh session; on the tuning programme it cut the median word -> cue time by
    0.3 s)."""
    import argparse

    from sidecast.sidecars.stt.sidecar import SttSidecar

    assert CueBuilder().max_open == CueBuilder.MAX_OPEN == 1.5
    assert SttSidecar().max_open == CueBuilder.MAX_OPEN
    parser = argparse.ArgumentParser()
    SttSidecar.add_arguments(parser)
    assert parser.parse_args([]).max_open == CueBuilder.MAX_OPEN
    words = words_from("the council met this morning to", 20.0)  # 1.8 s of one sentence, no pause
    b = CueBuilder()
    assert b.update(words[:4], words[4:], frontier=21.4)[0] == []  # open 1.4 s: still open
    finals, partial = b.update(words[4:], [], frontier=21.5)
    assert [c.text for c in finals] == ["the council met this morning to"] and partial is None
    assert finals[0].start == 20.0 and finals[0].end - finals[0].start >= 1.0 - 1e-9


@settings(max_examples=80, deadline=None)
@given(st.lists(st.sampled_from(["the", "rain", "north,", "falls.", "and", "tomorrow", "x", "well;",
                                 "extraordinarily", "it"]), min_size=1, max_size=60),
       st.lists(st.floats(min_value=0.0, max_value=1.5), min_size=1, max_size=20),
       st.lists(st.integers(min_value=1, max_value=5), min_size=1, max_size=20),
       st.sampled_from([0.5, 1.0, 1.5, 2.5]))
def test_cue_builder_finals_keep_every_word_in_order_without_overlap(
        tokens: list[str], gaps: list[float], chunks: list[int], max_open: float) -> None:
    """Whatever max_open: the final cues hold every committed word once, in order,
    each cue fits two lines, starts no earlier than the previous one ended, and lasts the minimum display
    time unless the next cue's first word needs the screen sooner."""
    words, t = [], 0.0
    for i, tok in enumerate(tokens):
        t += gaps[i % len(gaps)] * (i % 3 == 0)
        words.append(Word(tok, t, t + 0.3))
        t += 0.3
    style = CaptionStyle()
    b = CueBuilder(style, max_open=max_open)
    finals, i, k = [], 0, 0
    while i < len(words):
        n = chunks[k % len(chunks)]
        k += 1
        batch, i = words[i:i + n], i + n
        finals += b.update(batch, words[i:i + 2], frontier=batch[-1].end + 0.2)[0]
    finals += b.update([], [], frontier=t + 5.0, final=True)[0]
    assert [w for c in finals for w in c.words] == words
    assert [c.id for c in finals] == [f"cc-{n}" for n in range(len(finals))]
    for c in finals:
        assert c.final and c.end > c.start and all(len(ln) <= style.max_chars for ln in c.text.split("\n"))
    for a, nxt in zip(finals, finals[1:], strict=False):
        assert a.end <= nxt.start + 1e-9
        assert a.end - a.start >= style.min_duration - 1e-9 or a.end >= nxt.words[0].start - 1e-9


def seg(text: str, start: float, end: float, **kw: float) -> DecodedSegment:
    ws = text.split()
    step = (end - start) / len(ws)
    words = tuple(DecodedWord(" " + w, start + i * step, start + (i + 1) * step) for i, w in enumerate(ws))
    return DecodedSegment(text=text, start=start, end=end, words=words, **kw)  # type: ignore[arg-type]


def test_silence_rule_and_garbage_rules_drop_segments() -> None:
    assert segment_is_speech(seg("hello there", 0, 1, avg_logprob=-0.3, no_speech_prob=0.1))
    assert not segment_is_speech(seg("hello there", 0, 1, avg_logprob=-1.1, no_speech_prob=0.8))
    assert not segment_is_speech(seg("hello there", 0, 1, avg_logprob=-1.6, no_speech_prob=0.0))
    assert not segment_is_speech(seg("the the the the", 0, 1, compression_ratio=3.1))
    assert not segment_is_speech(seg("[Music]", 0, 1))
    assert not segment_is_speech(seg("♪ ♪", 0, 1))


def test_words_outside_detected_speech_are_dropped() -> None:
    words = filter_segments([seg("the news at six", 0.0, 2.0), seg("thank you", 4.0, 5.0)], [(0.0, 2.1)])
    assert [w.text.strip() for w in words] == ["the", "news", "at", "six"]


def test_thank_you_on_weak_speech_evidence_is_dropped_but_kept_when_clearly_spoken() -> None:
    phrase = [seg("Thank you.", 3.0, 4.0, no_speech_prob=0.5, avg_logprob=-0.4)]
    assert filter_segments(phrase, [(3.6, 4.0)]) == []
    clear = [seg("Thank you.", 3.0, 4.0, no_speech_prob=0.05, avg_logprob=-0.2)]
    assert [w.text.strip() for w in filter_segments(clear, [(2.9, 4.1)])] == ["Thank", "you."]


def test_repetition_loops_are_cut() -> None:
    def dw(text: str) -> list[DecodedWord]:
        return [DecodedWord(w, i, i + 1) for i, w in enumerate(text.split())]

    assert [w.text for w in cut_repetitions(dw("I know I know I know I know what"))] == "I know I know".split()
    assert [w.text for w in cut_repetitions(dw("no no no"))] == ["no", "no", "no"]
    assert [w.text for w in cut_repetitions(dw("no no no no no"))] == ["no", "no", "no"]
    assert len(cut_repetitions(dw("a plain sentence with no loop"))) == 6


class ScriptedPasses:
    """Stands in for Whisper's answers, pass by pass, to test the commit policy on its own."""

    def __init__(self, answers: list[str]) -> None:
        self.answers = answers
        self.prompts: list[str] = []

    def __call__(self, audio: np.ndarray, prompt: str, prefix: str = "") -> list[DecodedSegment]:
        self.prompts.append(prompt)
        text = self.answers.pop(0)
        seconds = len(audio) / 16000
        return [seg(text, 0.1, min(seconds, 0.1 + 0.4 * len(text.split())), avg_logprob=-0.2)] if text else []


def test_local_agreement_commits_only_what_two_passes_agree_on_and_never_rewrites() -> None:
    passes = ScriptedPasses(["the quick brow", "the quick brown fox", "the quick brown fox jumps"])
    rec = StreamingRecognizer(passes, lambda a: [(0.0, len(a) / 16000)],
                              StreamConfig(policy="agreement", min_step=0.5, max_step=1.0))
    rec.append(np.zeros(16000 * 3, dtype=np.float32), 0)
    first = rec.step(16000)
    assert first.committed == [] and [w.text for w in first.hypothesis] == ["the", "quick", "brow"]
    assert first.frontier == 0.0  # nothing committed yet: the core must wait
    second = rec.step(32000)
    assert [w.text for w in second.committed] == ["the", "quick"]
    third = rec.step(48000)
    assert [w.text for w in third.committed] == ["brown", "fox"]
    assert [w.text for w in rec.committed] == ["the", "quick", "brown", "fox"]
    assert third.frontier <= third.hypothesis[0].start


def test_silence_after_speech_commits_the_tail_and_frees_the_watermark() -> None:
    passes = ScriptedPasses(["good evening", "good evening everyone"])
    speech = [(0.0, 1.4)]  # speech stops at 1.4 s, then silence
    rec = StreamingRecognizer(passes, lambda a: [r for r in speech if r[0] < len(a) / 16000],
                              StreamConfig(min_step=0.5, max_step=1.0))
    rec.append(np.zeros(16000 * 3, dtype=np.float32), 0)
    rec.step(16000)
    r = rec.step(32000)
    assert [w.text for w in rec.committed] == ["good", "evening", "everyone"]
    assert r.hypothesis == [] and r.frontier >= 2.0 - 0.3 - 1e-9


def test_no_speech_means_no_decoding_and_a_watermark_that_follows_the_audio() -> None:
    def never(audio: np.ndarray, prompt: str, prefix: str = "") -> list[DecodedSegment]:
        raise AssertionError("the decoder must not run on non-speech")

    rec = StreamingRecognizer(never, lambda a: [], StreamConfig(min_step=0.5, max_step=2.0))
    rec.append(np.zeros(16000 * 60, dtype=np.float32), 16000 * 3600)  # an hour into the stream
    while (end := rec.next_pass_end()) is not None:
        r = rec.step(end)
    assert r.frontier == 3600 + 60 - 0.3
    assert rec.buf_start >= 16000 * (3600 + 55)  # the buffer does not grow on silence


class Timeline:
    """A decoder that hears exactly what was said: each word at a fixed media time. A pass returns the
    words that lie inside the buffer, in buffer time, as Whisper would; ``loop_after`` makes passes also
    repeat the first sentence after the newest speech (the copy squeezed into its last 0.1 s), as tiny
    models do when a sentence sits in the buffer as context."""

    def __init__(self, words: list[Word], speech: list[tuple[float, float]]) -> None:
        self.words = words
        self.speech = speech
        self.rec: StreamingRecognizer | None = None
        self.loop_after: float | None = None
        self.buffer_starts: list[float] = []
        self.prefixes: list[str] = []

    def decode(self, audio: np.ndarray, prompt: str, prefix: str = "") -> list[DecodedSegment]:
        assert self.rec is not None
        t0 = self.rec.buf_start / 16000
        t1 = t0 + len(audio) / 16000
        self.buffer_starts.append(t0)
        self.prefixes.append(prefix)
        heard = [DecodedWord(" " + w.text, w.start - t0, w.end - t0) for w in self.words
                 if w.start >= t0 - 1e-6 and w.end <= t1]
        heard = heard[len(prefix.split()):]  # the forced prefix is not decoded again
        if self.loop_after is not None and t1 > self.loop_after and heard:
            first = [w for w in heard if w.start < 2.0 - t0]
            end = min(t1, max(b for a, b in self.speech if a < t1)) - t0  # squeezed at the end of speech
            heard += [DecodedWord(w.text, end - 0.1, end - 0.05) for w in first]
        if not heard:
            return []
        return [DecodedSegment(text=" ".join(w.text for w in heard), start=heard[0].start, end=heard[-1].end,
                               words=tuple(heard), avg_logprob=-0.2)]

    def vad(self, audio: np.ndarray) -> list[tuple[float, float]]:
        assert self.rec is not None
        t0 = self.rec.buf_start / 16000
        t1 = t0 + len(audio) / 16000
        return [(max(a, t0) - t0, min(b, t1) - t0) for a, b in self.speech if b > t0 and a < t1]


def run_timeline(tl: Timeline, seconds: float, config: StreamConfig) -> StreamingRecognizer:
    rec = StreamingRecognizer(tl.decode, tl.vad, config)
    tl.rec = rec
    for i in range(0, int(seconds * 16000), 1600):
        rec.append(np.zeros(1600, dtype=np.float32), i)
        if (end := rec.next_pass_end()) is not None:
            rec.step(end)
    rec.finish()
    return rec


TWO_SENTENCES = words_from("Doctors say walking is good.", start=0.2, per_word=0.36) + \
    words_from("Heavy rain is expected tonight.", start=4.0, per_word=0.36)
SPEECH = [(0.2, 2.0), (4.0, 5.8)]


def test_a_committed_sentence_stays_in_the_buffer_as_context_and_is_committed_once() -> None:
    tl = Timeline(TWO_SENTENCES, SPEECH)
    rec = run_timeline(tl, 8.0, StreamConfig(min_step=0.5, max_step=1.0, keep_context=8.0))
    assert " ".join(w.text for w in rec.committed) == "Doctors say walking is good. Heavy rain is expected tonight."
    # While the second sentence was decoded, the first was still in the buffer (context for the decoder).
    assert max(tl.buffer_starts[-4:]) <= 0.2, tl.buffer_starts

    tl0 = Timeline(TWO_SENTENCES, SPEECH)
    rec0 = run_timeline(tl0, 8.0, StreamConfig(min_step=0.5, max_step=1.0, keep_context=0.0))
    assert [w.text for w in rec0.committed] == [w.text for w in rec.committed]
    assert min(tl0.buffer_starts[-4:]) >= 2.0  # without context the buffer starts after the first sentence


def test_a_decoder_loop_repeating_the_context_sentence_is_not_committed() -> None:
    tl = Timeline(TWO_SENTENCES, SPEECH)
    tl.loop_after = 4.5  # from here on every pass repeats "Doctors say walking is good." at its end
    rec = run_timeline(tl, 8.0, StreamConfig(min_step=0.5, max_step=1.0, keep_context=8.0))
    assert " ".join(w.text for w in rec.committed) == "Doctors say walking is good. Heavy rain is expected tonight."


def test_long_repeated_phrases_are_cut_as_loops() -> None:
    sentence = "please remember to switch off your phone during the show"
    ws = [DecodedWord(w, i, i + 1) for i, w in enumerate((sentence + " " + sentence).split())]
    assert " ".join(w.text for w in cut_repetitions(ws)) == sentence


def test_the_first_word_after_a_pause_starts_at_the_speech_onset() -> None:
    # Whisper's alignment puts the first word of a region late; the VAD's onset (padded by ~0.1 s) is better.
    speech = [(0.0, 1.2), (2.0, 3.5)]
    words = (DecodedWord(" one", 0.30, 0.60), DecodedWord(" two", 0.60, 1.10),
             DecodedWord(" Heavy", 2.35, 2.70), DecodedWord(" rain", 2.70, 3.10))
    kept = filter_segments([DecodedSegment("one two Heavy rain", 0.3, 3.1, words, avg_logprob=-0.2)], speech)
    assert [(w.text.strip(), round(w.start, 2)) for w in kept] == [("one", 0.30), ("two", 0.60), ("Heavy", 2.10),
                                                                   ("rain", 2.70)]
    # The region at the buffer's start is no onset (speech began before the buffer): left alone. And a
    # word far after its region's onset is not pulled back (something was missed before it).
    late = (DecodedWord(" later", 3.0, 3.3),)
    kept = filter_segments([DecodedSegment("later", 3.0, 3.3, late, avg_logprob=-0.2)], speech)
    assert round(kept[0].start, 2) == 3.0


def test_a_chunk_pass_closes_its_cue_at_once() -> None:
    # A chunk pass commits all it heard; the next words come a chunk later. Closed (close=True), its words
    # are one final cue now; left open, the same words wait: not a sentence end, not yet max_open old.
    words = [Word(text=t, start=10.0 + 0.3 * k, end=10.25 + 0.3 * k) for k, t in enumerate(["the", "quick", "brown"])]
    frontier = words[-1].end + 0.2
    assert frontier - words[0].start < CueBuilder.MAX_OPEN
    finals, partial = CueBuilder().update(words, [], frontier)
    assert finals == [] and partial is not None
    finals, partial = CueBuilder().update(words, [], frontier, close=True)
    assert [c.text for c in finals] == ["the quick brown"] and finals[0].final and partial is None
    assert finals[0].start == words[0].start
