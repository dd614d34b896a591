"""Where the streaming recogniser lost or invented words that offline decoding of the same real speech gets
right (found on the held-out real-speech programme with devkit/sttdiag.py, reproduced on tuning clips):
one regression test per cause, on short programmes of real recorded speech (Asterisk prompts, LibriVox)
with real tiny.en inference, replayed deterministically (a pass every 0.5 s of audio); and the guard each
cause needed, as a pure function.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from devkit import realspeech as rs
from sidecast.contract.records import Word
from sidecast.sidecars.stt import engine
from sidecast.sidecars.stt.engine import DecodeOptions, Decoder
from sidecast.sidecars.stt.guards import DecodedWord, cut_squeezed
from sidecast.sidecars.stt.recognizer import SAMPLE_RATE, StreamConfig, StreamingRecognizer
from tests.stt_passes import SharedPasses


@pytest.fixture(scope="module")
def decoder() -> Iterator[Decoder]:
    model = engine.load_model(engine.resolve_spec(None, "cpu", "int8", 2))  # one load for the module
    # the policies' replays of one programme share the passes they both ask for (tests/stt_passes.py)
    yield SharedPasses(model, DecodeOptions(language=None, beam_size=3))


def replay(decoder: Decoder, clips: list[str], gaps: list[float], policy: str,
           onset_confirm: float = StreamConfig.onset_confirm) -> tuple[list[Word], rs.Programme]:
    prog = rs.tuning_programme(clips, gaps)  # held-out clips are for measuring only
    cfg = StreamConfig(policy=policy, onset_confirm=onset_confirm)  # type: ignore[arg-type]
    rec = StreamingRecognizer(decoder.decode, engine.speech_regions, cfg)
    words: list[Word] = []
    for i in range(0, len(prog.audio), 1600):
        rec.append(prog.audio[i:i + 1600], i)
        if (end := rec.next_pass_end()) is not None:
            words += rec.step(end).committed
    words += rec.finish().committed
    assert all(a.start <= b.start for a, b in zip(words, words[1:], strict=False))  # committed in order
    return words, prog


def text(words: list[Word]) -> str:
    return " ".join(w.text for w in words)


@pytest.mark.parametrize("policy", ["alignatt", "agreement"])
def test_a_short_sentence_said_again_after_a_pause_is_captioned_both_times(decoder: Decoder, policy: str) -> None:
    # "You are now unmuted. | You are now unmuted." 0.8 s apart: the copy check took the second one for
    # the committed tail decoded again (its text equals the tail) and dropped the whole sentence, although
    # the VAD heard it begin anew after a pause; on the held-out programme every short repeat was lost.
    words, prog = replay(decoder, ["asterisk-en/confbridge-locked", "asterisk-en/conf-unmuted",
                                   "asterisk-en/conf-unmuted", "asterisk-en/vm-nomore", "asterisk-en/vm-nomore"],
                         [1.6, 0.8, 2.0, 0.8, 2.0], policy)
    said = rs.normalise(text(words)).split()
    assert said.count("unmuted") == 2 and said.count("messages") == 2, text(words)
    assert rs.wer(prog.reference, text(words)) <= 0.1, text(words)


@pytest.mark.parametrize("policy", ["alignatt", "agreement"])
def test_sentences_that_begin_alike_are_each_captioned_once(decoder: Decoder, policy: str) -> None:
    # "The conference is now locked." / "... unlocked." / "...has left the conference.": with the earlier
    # sentences kept as context, tiny.en sometimes transcribes them once more after the new one; the copy
    # is timed as words squeezed into no time after the committed point, and was committed (held-out and
    # the hard tuning programme; this short programme does not provoke the copy, the pure test below
    # covers the cut). Here: the copy checks and the squeeze cut keep every real sentence, once.
    words, prog = replay(decoder, ["asterisk-en/confbridge-locked", "asterisk-en/confbridge-unlocked",
                                   "asterisk-en/confbridge-has-left", "asterisk-en/conf-userswilljoin",
                                   "asterisk-en/conf-hasjoin"], [0.7, 1.6, 2.6, 0.7, 1.6], policy)
    said = rs.normalise(text(words)).split()
    assert said.count("conference") == 5, text(words)
    assert rs.wer(prog.reference, text(words)) <= 0.1, text(words)
    # No word is squeezed into no time (what a copy of text without audio looks like).
    assert all(b.end - a.start >= 0.05 for a, b in zip(words, words[1:], strict=False)), text(words)


def test_a_copy_squeezed_into_no_time_is_cut_with_what_follows() -> None:
    w = [DecodedWord("Please", 1.0, 1.3), DecodedWord("enter", 1.3, 1.6), DecodedWord("The", 1.62, 1.62),
         DecodedWord("conference", 1.62, 1.62), DecodedWord("has", 1.62, 1.63), DecodedWord("ended.", 1.63, 1.9)]
    assert [x.text for x in cut_squeezed(w)] == ["Please", "enter"]
    # One short word (Whisper aligns "a" or "you" to a few ms) is speech: two in a row within 50 ms are not.
    ok = [DecodedWord("you", 2.0, 2.0), DecodedWord("marry", 2.0, 2.3), DecodedWord("a", 2.3, 2.32)]
    assert cut_squeezed(ok) == ok


def test_a_word_whose_start_moved_back_across_the_committed_point_is_kept(decoder: Decoder) -> None:
    # The pass after "... The conference" was committed aligned "has" from 0.1 s earlier than the pass
    # before had; the time filter at the committed point dropped it ("The conference been extended").
    rec = StreamingRecognizer(decoder.decode, engine.speech_regions)
    rec.committed = [Word("The", 1.0, 1.3), Word("conference", 1.3, 1.79)]
    rec.commit_end = round(1.79 * SAMPLE_RATE)
    new = [Word("has", 1.69, 2.09), Word("been", 2.09, 2.3)]
    assert [w.text for w in rec._merge(new, [(0.9, 3.0)], closed=0.0)] == ["has", "been"]
    # ... while the committed word decoded again, a little shifted, is still dropped.
    again = [Word("conference", 1.33, 1.81), Word("has", 1.81, 2.09)]
    assert [w.text for w in rec._merge(again, [(0.9, 3.0)], closed=0.0)] == ["has"]


@pytest.mark.parametrize("policy", ["alignatt", "agreement"])
def test_a_new_speakers_first_words_wait_for_a_second_pass(decoder: Decoder, policy: str) -> None:
    # The LibriVox reader after a card call and a 5 s pause: tiny.en's first pass over 1 s of her speech
    # says "a less to be rather", the next "unless to be rather cold". The attention policy committed the
    # first guess from one pass (and, forced as the prefix, it stayed); a new region's first second of
    # words needs two passes that agree with onset_confirm (off by default: see StreamConfig).
    words, prog = replay(decoder, ["cards/001", "librivox/0890"], [5.0, 1.2], policy, onset_confirm=1.0)
    said = rs.normalise(text(words)).split()
    assert "unless" in said and "selfish" in said, text(words)
    assert rs.wer(prog.reference, text(words)) <= 0.06, text(words)


@pytest.mark.parametrize("cut", [0.9, 1.3, 2.9, 3.3])
def test_a_pass_that_cuts_a_sentence_early_does_not_cost_its_first_word(decoder: Decoder, cut: float) -> None:
    # Whisper on a buffer cut early drops a sentence's first word ("The city council ..." read as "City
    # council ..."); the attention policy committed that from one pass and the next pass continued after it.
    # Under load the passes fall anywhere, so this is what made a sidecar test flaky (WER 0.33 on 9 words).
    # Synthetic speech (espeak-ng), where the words and their times are known exactly.
    from devkit import speech as synth

    audio, said = synth.programme([synth.SENTENCES[1]], seed=5)
    rec = StreamingRecognizer(decoder.decode, engine.speech_regions, StreamConfig())
    end = int(cut * SAMPLE_RATE)
    rec.append(audio[:end], 0)
    words = list(rec.step(end).committed)
    rec.append(audio[end:], end)
    words += rec.finish().committed
    assert rs.normalise(text(words)) == rs.normalise(said[0].text), (cut, text(words))


@pytest.mark.parametrize("cut", [8.0, 11.5])
def test_held_words_are_committed_when_the_audio_stops_coming(decoder: Decoder, cut: float) -> None:
    # A file run: the core reads faster than real time and stops once its caption output waits for these
    # captions. The audio came in one burst, so one pass heard it all and the first words of a speech
    # region wait for a second pass that needs new audio: without settle_idle the frontier stayed at the
    # region's onset and the core waited 10 s for its stall timeout (docs/captions.md). Real speech: two
    # LibriVox readers, the second after 0.3 s.
    prog = rs.tuning_programme(["librivox/0870", "librivox/0890"], [1.0, 0.3])
    rec = StreamingRecognizer(decoder.decode, engine.speech_regions, StreamConfig())
    end = int(cut * SAMPLE_RATE)
    rec.append(prog.audio[:end], 0)
    first = rec.step(end)
    assert not first.committed and first.hypothesis and first.frontier < 1.5  # the stalled state
    settled = rec.settle_idle()
    limit = cut - StreamConfig.idle_context
    assert settled.committed and all(w.end <= limit for w in settled.committed)
    assert all(w.end > limit for w in settled.hypothesis)          # the words near the cut still wait
    assert settled.frontier >= limit - 0.6                         # a cue open since the onset can close
    assert rec.settle_idle().committed == []                       # nothing more without new audio
    rec.append(prog.audio[end:], end)
    words = [*settled.committed, *rec.finish().committed]
    assert all(a.start <= b.start for a, b in zip(words, words[1:], strict=False))
    assert rs.wer(prog.reference, text(words)) <= 0.06, text(words)


@pytest.mark.parametrize("gap", [StreamConfig.context_gap, 3.0])
def test_the_kept_context_spans_a_long_pause_unless_context_gap_ends_it(decoder: Decoder, gap: float) -> None:
    # A card call after the telephone voice and a 4.2 s pause. By default the telephone sentence stays in
    # the buffer across the pause and is forced as the decoder's prefix, and tiny.en reads "Four queen of
    # clothes"; with the context ended by the pause (context_gap 1.5 or 3) it read "Queen of Cloves", the
    # "four" lost with a looping pass the guards dropped whole (since they keep a loop's words up to the
    # loop: "4 queen of clothes"). On the tuning material (realspeech.speaker_tuning and the two other tuning
    # programmes) every context_gap from 1.5 to 5 s did worse than keeping the context (docs/captions.md,
    # "The context after a long pause"). context_gap=N still ends it after a pause over N s.
    assert StreamConfig.context_gap == 0.0  # the decided default: change it only with new tuning figures
    prog = rs.tuning_programme(["asterisk-en/vm-nobodyavail", "cards/002"], [4.2, 1.0])
    rec = StreamingRecognizer(decoder.decode, engine.speech_regions, StreamConfig(context_gap=gap))
    inner = rec.decode
    prefixes: list[tuple[float, str]] = []

    def decode(audio, prompt, prefix):  # type: ignore[no-untyped-def]
        prefixes.append((rec.pass_end / SAMPLE_RATE, prefix))
        return inner(audio, prompt, prefix)

    rec.decode = decode  # type: ignore[method-assign]
    words: list[Word] = []
    late: list[float] = []
    for i in range(0, len(prog.audio), 1600):
        rec.append(prog.audio[i:i + 1600], i)
        if (end := rec.next_pass_end()) is not None:
            got = rec.step(end).committed
            words += got
            late += [end / SAMPLE_RATE - w.end for w in got]
    words += rec.finish().committed
    first, second = prog.utterances
    over = [p for t, p in prefixes if t >= second.start + 0.5]  # passes that heard the new speaker
    assert over, prefixes
    said = rs.normalise(text([w for w in words if w.start >= second.start - 0.3])).split()
    assert rs.wer(first.text, text([w for w in words if w.end <= first.end + 0.3])) <= 0.15, text(words)
    assert late and max(late) <= 3.0, late
    if gap:
        assert over[0] == "", over[0]                       # the pause ended the context
        assert "queen" in said, said
    else:
        assert "available" in over[0].lower(), over[0]      # the other speaker's sentence, kept as context
        assert said[:3] == ["4", "queen", "of"], said       # ... and the first word is not lost
