"""Guards against the ways Whisper fails on live audio: text on silence, music or noise ("Thank you."),
decoding loops, and low-confidence garbage. Pure functions over plain decoded records, so every rule is
testable without a model.

Layered, cheapest first: the VAD keeps non-speech audio from being decoded at all; a decoded segment is
dropped on Whisper's own signals (no-speech probability, average log-probability, compression ratio);
words must overlap detected speech; repeated n-grams are cut; and, last, well-known hallucination phrases
are dropped unless the audio under them is clearly speech.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, replace


@dataclass(frozen=True)
class DecodedWord:
    text: str
    start: float       # seconds from the start of the decoded buffer
    end: float
    probability: float = 1.0


@dataclass(frozen=True)
class DecodedSegment:
    text: str
    start: float
    end: float
    words: tuple[DecodedWord, ...]
    avg_logprob: float = 0.0
    no_speech_prob: float = 0.0
    compression_ratio: float = 1.0


@dataclass(frozen=True)
class GuardConfig:
    no_speech_threshold: float = 0.6     # Whisper's silence rule: no_speech above this ...
    silence_logprob: float = -1.0        # ... and avg log-prob below this means "nothing was said"
    min_avg_logprob: float = -1.3        # below this a segment is garbage whatever no_speech says
    max_compression_ratio: float = 2.4   # gzip ratio above this means looping text
    min_speech_overlap: float = 0.3      # a word must overlap detected speech by this fraction ...
    min_speech_seconds: float = 0.2      # ... or, a pass's last word, by this many seconds (stretched_last_word)
    max_repeats: int = 2                 # an n-gram may appear this many times in a row


GUARDS = GuardConfig()

# Phrases Whisper produces from non-speech (learned from subtitle files at the end of videos).
HALLUCINATIONS = frozenset({
    "thank you", "thank you very much", "thanks for watching", "thank you for watching",
    "thanks for listening", "thank you for listening", "please subscribe", "subscribe",
    "like and subscribe", "you", "bye", "bye bye", "goodbye", "so", "oh", "uh", "um", "hmm",
    "subtitles by the amaraorg community", "transcribed by", "music", "applause", "laughter",
    "silence", "the end", "i'm sorry", "okay",
})
_NON_SPEECH_TAG = re.compile(r"^\s*([\[(*♪♫].*[\])*♪♫]|[♪♫\s.]+)\s*$")


def normalize(text: str) -> str:
    """Lower case, no punctuation: the form in which two decoder passes are compared."""
    return re.sub(r"[^\w' ]", "", text.lower().replace("-", " ")).strip()


def segment_is_speech(seg: DecodedSegment, cfg: GuardConfig = GUARDS) -> bool:
    """Whisper's own confidence signals say this segment is real speech."""
    if seg.no_speech_prob > cfg.no_speech_threshold and seg.avg_logprob < cfg.silence_logprob:
        return False
    if seg.avg_logprob < cfg.min_avg_logprob:
        return False
    if seg.compression_ratio > cfg.max_compression_ratio:
        return False
    if _NON_SPEECH_TAG.match(seg.text):
        return False
    return True


def overlap(start: float, end: float, regions: Sequence[tuple[float, float]]) -> float:
    """Seconds of [start, end) covered by the (sorted, disjoint) regions."""
    total = 0.0
    for a, b in regions:
        if b <= start:
            continue
        if a >= end:
            break
        total += min(b, end) - max(a, start)
    return total


def word_in_speech(w: DecodedWord, regions: Sequence[tuple[float, float]], cfg: GuardConfig = GUARDS) -> bool:
    span = max(w.end - w.start, 0.02)
    mid = (w.start + w.end) / 2
    if any(a <= mid <= b for a, b in regions):
        return True
    return overlap(w.start, w.start + span, regions) >= cfg.min_speech_overlap * span


def stretched_last_word(w: DecodedWord, regions: Sequence[tuple[float, float]], cfg: GuardConfig = GUARDS) -> bool:
    """A pass's last word that the alignment stretched over the silence after the speech: it starts
    inside a region, is heard there for ``min_speech_seconds``, and reaches no other speech. Whisper times
    the last word to the end of the audio, so a pass running 2 s past "now." timed it 2.3 s long, mostly
    silence, and the overlap rule dropped it. Only the last word: a word followed by others that spans a
    pause ("are" across 5 s between two speakers) is the alignment's filler, not a word said."""
    heard = overlap(w.start, max(w.end, w.start + 0.02), regions)
    return heard >= cfg.min_speech_seconds and any(
        a <= w.start < b and not any(b < c < w.end for c, _ in regions) for a, b in regions)


def snap_to_speech(w: DecodedWord, regions: Sequence[tuple[float, float]], pad: float = 0.1,
                   first: bool = False, lead: float = 0.6) -> DecodedWord:
    """Use the VAD to correct a word's start where Whisper is least precise: after a pause.

    Whisper often starts the first word after a pause too early (at the end of the silence it skipped),
    so a word never starts before the (padded) speech region it belongs to. And its cross-attention
    alignment puts a region's first word a little late (0.1-0.3 s), so with ``first`` the first word of a
    region that begins inside the buffer starts at the region's onset when it is within ``lead`` of it.
    The VAD pads regions by ~0.15 s, hence ``pad``.
    """
    i = _region_of(w, regions)
    if i < 0:
        return w
    a = regions[i][0]
    start = max(w.start, min(a + pad, w.end - 0.05))
    if first and a > 0.05 and a + pad < start <= a + pad + lead:
        start = a + pad
    return w if start == w.start else DecodedWord(w.text, start, w.end, w.probability)


def _region_of(w: DecodedWord, regions: Sequence[tuple[float, float]]) -> int:
    """Index of the first speech region the word touches, or -1."""
    for i, (a, b) in enumerate(regions):
        if a <= w.end and w.start <= b:
            return i
    return -1


def _repeat_limit(n: int, max_repeats: int) -> int:
    # "no, no, no" and "I know, I know" are speech; a phrase of three or more words said twice in a row
    # is, from Whisper, almost always the start of a decoding loop.
    return max_repeats + 1 if n == 1 else max_repeats if n == 2 else 1


def starts_region(w: DecodedWord, regions: Sequence[tuple[float, float]], lead: float = 0.6) -> bool:
    """The word begins a speech region the VAD found (an onset at most ``lead`` s before it, after a pause):
    audio evidence that it was said anew, which a decoder loop never has."""
    return any(a > 0.05 and a - 0.1 <= w.start <= a + lead for a, _ in regions)


def cut_repetitions(words: Sequence[DecodedWord], max_repeats: int = 2, max_n: int = 24,
                    regions: Sequence[tuple[float, float]] | None = None) -> list[DecodedWord]:
    """Cut a decoding loop: keep the allowed copies of a repeated n-gram, drop everything from the next.

    One word may appear ``max_repeats + 1`` times in a row, two words ``max_repeats`` times, longer
    phrases once. With the VAD's ``regions``, a copy that starts a new speech region after a pause is
    speech said again (phone menus and broadcasts repeat themselves), not a loop, and is kept.
    """
    toks = [normalize(w.text) for w in words]
    n_words = len(toks)
    for i in range(n_words):
        for n in range(1, max_n + 1):
            limit = _repeat_limit(n, max_repeats)
            if i + n * (limit + 1) > n_words:
                break
            gram = toks[i:i + n]
            if not any(gram):
                continue
            copies = 1
            while copies <= limit and toks[i + copies * n:i + (copies + 1) * n] == gram:
                if regions and n >= 2 and starts_region(words[i + copies * n], regions):
                    break  # said again after a pause: the copies from here are counted afresh
                copies += 1
            if copies > limit:
                return list(words[:i + limit * n])
    return list(words)


def has_loop(segments: Sequence[DecodedSegment], max_repeats: int = 2,
             regions: Sequence[tuple[float, float]] | None = None) -> bool:
    words = [w for s in segments for w in s.words]
    return len(cut_repetitions(words, max_repeats, regions=regions)) < len(words)


def cut_squeezed(words: Sequence[DecodedWord], min_span: float = 0.05) -> list[DecodedWord]:
    """Cut a pass at the first run of two or more words squeezed into less than ``min_span`` seconds.

    The cross-attention alignment puts text it finds no audio for into a sliver at the end of what it
    did align: a small model that ignores the committed context and transcribes it once more ("The
    conference has been extended." after the committed "... been extended. Please enter the conference
    PIN number.") gets its copy timed as five words in 0 s just after the committed point, where the
    copy checks, which compare time and exact text, let it through. Nobody says two words in 50 ms: the
    run and whatever the pass decoded after it are not in the audio (the next pass decodes that audio
    again)."""
    for i in range(len(words) - 1):
        if words[i + 1].end - words[i].start < min_span:
            return list(words[:i])
    return list(words)


def is_hallucination_phrase(text: str) -> bool:
    return normalize(text).replace(".", "") in HALLUCINATIONS


def filter_segments(segments: Sequence[DecodedSegment], speech: Sequence[tuple[float, float]],
                    cfg: GuardConfig = GUARDS, settled: float = 0.0) -> list[DecodedWord]:
    """The words of a decoder pass that survive every guard, in order.

    ``speech`` are the VAD's speech regions in buffer seconds. ``settled``: buffer time before which the
    speech is already committed (the pass continued after it): a region that began before it has had
    its first word, so its onset corrects no word of this pass.
    """
    words: list[DecodedWord] = []
    # speech regions that already have a word
    seen: set[int] = {i for i, (a, _) in enumerate(speech) if settled > 0 and a < settled - 0.05}
    for i, seg in enumerate(segments):
        if not segment_is_speech(seg, cfg):
            cut = _loop_cut(seg, cfg)
            if cut is None:
                continue
            seg = cut
        kept = []
        last = max((k for k, x in enumerate(seg.words) if x.text.strip()), default=-1)
        for k, heard in enumerate(seg.words):
            if not heard.text.strip():
                continue
            w: DecodedWord | None = heard
            if word_in_speech(heard, speech, cfg):
                pass
            elif k == last and i == len(segments) - 1 and stretched_last_word(heard, speech, cfg):
                # ends with its speech (plus the VAD's padding), not at the end of the audio
                end = next(b for a, b in speech if a <= heard.start < b)
                w = DecodedWord(heard.text, heard.start, min(heard.end, end + 0.1), heard.probability)
            else:
                w = _lead_in(heard, seg.words[k + 1:], speech, cfg, seen)
            if w is None:
                continue
            region = _region_of(w, speech)
            kept.append(snap_to_speech(w, speech, first=region >= 0 and region not in seen))
            seen.add(region)
        if not kept:
            continue
        text = " ".join(w.text.strip() for w in kept)
        if is_hallucination_phrase(text):
            span = max(kept[-1].end - kept[0].start, 0.1)
            if overlap(kept[0].start, kept[-1].end, speech) < 0.8 * span or seg.no_speech_prob > 0.2:
                continue
        words.extend(kept)
    return cut_repetitions(cut_squeezed(words), cfg.max_repeats, regions=speech)


def compression_ratio(text: str) -> float:
    """Whisper's loop signal: the text's size over its zlib-compressed size, by faster-whisper's own function
    (the one that gave the decoded segment its ratio, so a cut segment is measured as the decoder measures)."""
    from faster_whisper.transcribe import get_compression_ratio  # imported on use, as engine.py does

    return float(get_compression_ratio(text)) if text else 0.0


def _loop_cut(seg: DecodedSegment, cfg: GuardConfig) -> DecodedSegment | None:
    """A segment failed only the compression-ratio rule: a decoding loop. Its words up to the loop, when
    that cut leaves text that passes the rule, else None (the segment is dropped).

    The decoder loops where a pass ends soon after the speech ("that conference is full all that
    conference is full all ..." for a pass 0.8 s past "That conference is full."): the words before the
    loop were heard, and dropping the segment whole dropped them. When no later pass reaches that
    speech with the words still in it (a big pass that the buffer is trimmed after: adaptive pacing
    under load), they were lost for good. Nothing else about the segment is excused: a loop on silence
    or noise still fails the no-speech and overlap rules."""
    if not (seg.compression_ratio > cfg.max_compression_ratio
            and segment_is_speech(replace(seg, compression_ratio=0.0), cfg)):
        return None
    words = cut_repetitions(cut_squeezed(seg.words), cfg.max_repeats)
    text = "".join(w.text for w in words)
    if not words or len(words) == len(seg.words) or compression_ratio(text.strip()) > cfg.max_compression_ratio:
        return None
    return replace(seg, text=text, end=words[-1].end, words=tuple(words), compression_ratio=compression_ratio(text.strip()))


def _lead_in(w: DecodedWord, following: Sequence[DecodedWord], speech: Sequence[tuple[float, float]],
             cfg: GuardConfig, seen: set[int]) -> DecodedWord | None:
    """A word timed in the silence just before speech, followed by words in that speech, is the region's
    first word: Whisper times the first word after a pause from the start of the buffer or the end of
    the silence. It moves to the region's onset (instead of failing the overlap check); a word with no
    speech after it stays out."""
    nxt = next((x for x in following if x.text.strip()), None)
    if nxt is None or not word_in_speech(nxt, speech, cfg):
        return None
    i = _region_of(nxt, speech)
    if i < 0 or i in seen:
        return None
    a = speech[i][0]
    before = [r for r in speech if w.end <= r[0] < a]
    if before or w.start > a or nxt.start - a > 1.0:
        return None  # other speech lies between, or the next word is not the region's start
    start = a + 0.1 if a > 0.05 else a
    end = max(min(nxt.start, start + max(w.end - w.start, 0.1)), start + 0.05)
    return DecodedWord(w.text, start, end, w.probability)
