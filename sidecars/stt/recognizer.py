"""A streaming recogniser over a batch model: a growing audio buffer re-decoded pass after pass, with
text committed by local agreement.

Whisper decodes 30-second windows, not streams. The usual way to stream it (and the one here): keep a
buffer from the last settled point up to the newest audio, decode it again every fraction of a second,
and commit a word only when two consecutive passes agree on it (their common prefix) — a word at the
moving edge of the buffer is often wrong, a word that survived one more pass with more right context
rarely is. Committed text is never rewritten; it is carried as the prompt for later passes, and the
buffer is trimmed at committed sentence ends so passes stay short. A pause (VAD) commits what was heard.

Time is counted in integer samples from media time 0, so timestamps do not drift however long the stream
runs; seconds are derived only at the edges.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

import numpy as np

from sidecast.contract.records import Word

from .guards import GUARDS, DecodedSegment, GuardConfig, filter_segments, has_loop, normalize
from .shaping import ends_sentence
from .voice import distance as voice_distance
from .voice import speech_frames

SAMPLE_RATE = 16_000

DecodeFn = Callable[[np.ndarray, str, str], Sequence[DecodedSegment]]  # (audio, prompt, prefix)
VadFn = Callable[[np.ndarray], list[tuple[float, float]]]


Policy = Literal["agreement", "alignatt"]
_CLOSED = re.compile(r"[.,!?;:…]['\")\]]*$")
Hold = Literal["threshold", "last", "copy", "unstable", "onset", "changed"]


def _early(position: Hold | None, doubt: Hold | None) -> bool:
    """Whether ``early_commit`` may overrule a hold (see StreamingRecognizer._hold): a word near the newest
    audio or a region's first words; never an unfinished last word, a copy, a looped pass or a word the
    decoder is changing its mind on."""
    return (position, doubt) != (None, None) and position != "last" and doubt in (None, "onset")


@dataclass(frozen=True)
class StreamConfig:
    policy: Policy = "alignatt"   # when a word is final: its attention alignment ends align_threshold before
                                  # the newest audio (AlignAtt-style), or two passes agree on it ("agreement")
    align_threshold: float = 0.5  # seconds (AlignAtt's frame threshold: 25 frames of 20 ms)
    min_step: float = 0.5         # new audio needed before another pass, seconds
    max_step: float = 2.0         # most new audio one pass takes on while keeping up
    catch_up_step: float = 6.0    # ... and when more than 2 x max_step behind (a loaded CPU): bigger
                                  # steps mean fewer passes per second of audio, so latency stays bounded
    silence_commit: float = 0.5   # this much silence after speech commits the hypothesis
    min_context: float = 0.0      # agreed words also need this much audio after them before commit
    context_commit: float = 2.0   # a word heard with this much audio after it is committed without waiting
                                  # for a second pass (which, when the CPU is behind, comes late); 0 = off
    keep_silence: float = 2.0     # context kept when the buffer holds no uncommitted speech (helps the next words)
    keep_context: float = 8.0     # committed speech (whole sentences, up to this many seconds) kept in
                                  # the buffer when it is trimmed: the decoder hears the voice before
                                  # the new words, as an offline pass does
    trim_sentence: float = 12.0   # past this length, trim the buffer at the last committed sentence end
    max_buffer: float = 20.0     # past this length, trim at the last committed word, forcing if needed
    frontier_guard: float = 0.3   # how close to the newest audio the VAD's "no speech" is trusted
    prompt_words: int = 40        # committed words carried as the prompt (0 = none)
    stall_after: float = 1.0      # seconds of uncommitted speech a pass with context may leave undecoded
                                  # before the new speech is decoded again on its own
    confirm_unstable: bool = True  # alignatt: words of a pass that looped (decoded again without the
                                   # prompt) are final only when the previous pass said them too
    changed_wait: bool = True     # alignatt: a word the previous pass heard as another word is not final
                                  # yet (the decoder is changing its mind about that audio)
    onset_confirm: float = 1.0    # alignatt: words starting within this many seconds of a speech onset
                                  # (a new speaker, the first words after a pause) need two passes too:
                                  # Whisper on a buffer cut early drops a sentence's first word ("The city
                                  # council ..." -> "City council ...") and one pass would commit that.
                                  # Off for a while ("file runs missed their decision windows"): the same
                                  # misses came with it off, under load only (docs/captions.md)
    context_gap: float = 0.0      # a pause longer than this (seconds) ends the kept context: the speech
                                  # after it is decoded without the committed sentences before (0 = off)
    voice_change: float = 0.0     # a new voice after a pause drops the kept context: when the speech after a
                                  # pause of voice_gap or more differs from the speech before it by more than
                                  # this (voice.distance, MFCC means) the buffer is cut at the new speech,
                                  # so neither its audio nor its text is the new speaker's forced prefix
                                  # (the prompt stays). 0 = off, the default: on the tuning programmes it
                                  # cost more words than it saved (docs/captions.md, "A change of voice")
    voice_gap: float = 1.0        # seconds of pause before a new region for the voice check
    voice_after: float = 1.0      # seconds of the new region heard before the check is made (once)
    chunk_margin: float = 0.3     # chunk passes (chunk_pass_end): a word ending this close to the pass's end
                                  # waits for the next chunk; the others are final from that one pass
    chunk_pause: float = 0.5      # chunk passes: this much silence after speech ends the chunk (0.3 cut inside
                                  # sentences on the tuning programme, 3x the errors: docs/captions.md)
    chunk_context: float = 2.0    # committed speech (whole words, up to this many seconds) a chunk pass keeps
                                  # before the committed point, forced as its prefix
    idle_context: float = 2.0     # while no audio comes (see settle_idle), held words the last pass heard
                                  # with this much audio after them are committed without a second pass
    pause_commit: bool = True     # held words are committed as soon as the VAD hears the pause after them
                                  # (commit_paused), not at the next pass: a pass takes ~1 s on a loaded
                                  # CPU, and the last words of every sentence waited for it
                                  # (docs/latency.md, "twelfth session"). False: only a pass commits
    pause_heard: float = 0.1      # ... when the pass that read them had this much audio after the speech's end
                                  # (the VAD's, padded 0.15 s)
    pause_start: float = 0.1      # ... the words that begin this long before that end
    early_commit: float = 0.0     # alignatt: a word held only because it ends within align_threshold of the
                                  # newest audio, or as a region's first words (onset_confirm), is final
                                  # from one pass when it ends this many seconds before the pass's audio
                                  # does and its probability is at least early_prob (a pass's last word
                                  # only when punctuation closes it): it saves a pass (~1 s live) on the
                                  # last words of a cue (docs/latency.md, "sixteenth session"). 0 = off;
                                  # the stt sidecar's --early-commit on sets 0.3
    early_prob: float = 0.9
    guards: GuardConfig = GUARDS


@dataclass
class StepResult:
    committed: list[Word] = field(default_factory=list)   # newly committed, in order
    hypothesis: list[Word] = field(default_factory=list)  # the current uncommitted tail
    frontier: float = 0.0                                 # all speech before this is committed


def _sec(sample: int) -> float:
    return sample / SAMPLE_RATE


def _dropped_speech(words: Sequence[Word], pending: Sequence[tuple[float, float]], buf_start: float,
                    settled: float) -> float:
    """Seconds of the VAD's uncommitted speech (``pending``, in buffer time) after the last word a pass
    heard (``words``, in media time; the buffer begins at ``buf_start`` seconds) and after ``settled``:
    speech the decoder left out. Whatever the pass does not hear in speech that has ended is never decoded
    again, because the buffer is trimmed past it."""
    heard_to = max([settled, *(w.end - buf_start for w in words)])
    return sum(max(0.0, b - max(a, heard_to)) for a, b in pending)


def quietest(audio: np.ndarray, lo: float, hi: float, window: float = 0.1) -> int:
    """The sample (in ``audio``) at the centre of its quietest ``window`` seconds between ``lo`` and
    ``hi`` seconds (20 ms hops): where a chunk pass is cut, so the cut rarely splits a word."""
    sr = SAMPLE_RATE
    a, b = max(int(lo * sr), 0), min(int(hi * sr), len(audio))
    w, hop = int(window * sr), int(0.02 * sr)
    if b - a <= w:
        return b
    energy = np.concatenate([[0.0], np.cumsum(np.square(audio[a:b], dtype=np.float64))])
    starts = np.arange(0, b - a - w + 1, hop)
    best = int(starts[np.argmin(energy[starts + w] - energy[starts])])
    return a + best + w // 2


def _longest_prefix_in(head: list[str], seq: list[str]) -> tuple[int, int]:
    """Length of the longest prefix of ``head`` found as a contiguous run in ``seq``, and where (the
    latest such run)."""
    best, at = 0, 0
    for i in range(len(seq)):
        k = 0
        while k < len(head) and i + k < len(seq) and seq[i + k] == head[k]:
            k += 1
        if k and k >= best:
            best, at = k, i
    return best, at


class StreamingRecognizer:
    """Feed audio with ``append``; call ``step`` from one worker thread; ``finish`` at the end."""

    MIN_COPY = 3  # words: a run this long restarting a sentence still in the buffer, with no new speech
                  # onset of its own, is a decoder loop, not speech

    def __init__(self, decode: DecodeFn, vad: VadFn, config: StreamConfig | None = None,
                 start_sample: int = 0) -> None:
        self.decode = decode
        self.vad = vad
        self.cfg = config or StreamConfig()
        self._lock = threading.Lock()
        self._chunks: list[np.ndarray] = []
        self._buffer = np.zeros(0, dtype=np.float32)
        self.buf_start = start_sample          # absolute sample index of the buffer's first sample
        self.received_end = start_sample       # absolute sample index just past the newest audio
        self.pass_end = start_sample           # where the last pass stopped
        self.committed: list[Word] = []
        self.hypothesis: list[Word] = []
        self.commit_end = start_sample         # end of the last committed word, samples
        self.frontier = _sec(start_sample)
        self.passes = 0
        self.loops = 0
        self._confirm: set[int] = set()
        self._unstable = False                 # this step's pass looped (see _pass)
        self.stalls = 0                        # passes decoded again without context (see StreamConfig.stall_after)
        self._open_from: float | None = None   # start of the speech region still open at the last pass, seconds
        self.decode_seconds = 0.0              # wall time spent in the decoder (for benchmarks and logs)
        self.voice_checks: list[tuple[float, float, bool]] = []  # (onset, distance, context dropped) per check
        self._voice_done = -1                  # absolute sample of the last onset the voice check decided
        self.voice_seconds = 0.0               # wall time spent in the voice check
        self.keep_context = self.cfg.keep_context  # context kept at the next trim; the sidecar lowers it
                                                   # while the shared model is behind (load_context)
        self.chunk_passes = 0                  # passes run as chunks (step(chunk=True))
        self._chunk_checked = start_sample     # received_end at the last chunk_pass_end that found none due
        self._pause_checked = start_sample     # received_end at the last commit_paused
        self._sure = 0                         # leading held words the last pass was sure of (commit_paused)
        self.holds: list[tuple[Hold | None, Hold | None]] = []  # why each held word waits (alignatt; _hold)
        self.early_commits = 0                 # words committed by early_commit

    # ------------------------------------------------------------------ input

    def append(self, samples: np.ndarray, start_sample: int | None = None) -> None:
        """Add mono float32 audio. A small gap before ``start_sample`` is filled with silence; overlap is
        dropped. (Large jumps are discontinuities: the caller finishes this recogniser and starts another.)
        """
        x = np.asarray(samples, dtype=np.float32).reshape(-1)
        with self._lock:
            if start_sample is not None and start_sample != self.received_end:
                gap = start_sample - self.received_end
                if gap > 0:
                    self._chunks.append(np.zeros(gap, dtype=np.float32))
                    self.received_end += gap
                else:
                    x = x[min(-gap, len(x)):]
            if len(x):
                self._chunks.append(x)
                self.received_end += len(x)

    def _take(self, end: int) -> np.ndarray:
        with self._lock:
            if self._chunks:
                self._buffer = np.concatenate([self._buffer, *self._chunks])
                self._chunks = []
        return self._buffer[: end - self.buf_start]

    def next_pass_end(self, final: bool = False) -> int | None:
        """Where the next pass should stop, or None if it is not worth a pass yet."""
        avail = self.received_end
        new = avail - self.pass_end
        if new <= 0 or (not final and new < self.cfg.min_step * SAMPLE_RATE):
            return None
        step = self.cfg.max_step
        if new > 2 * self.cfg.max_step * SAMPLE_RATE:
            step = max(step, self.cfg.catch_up_step)
        return min(avail, self.pass_end + int(step * SAMPLE_RATE))

    def chunk_pass_end(self, cap: float) -> int | None:
        """Where the next *chunk* pass stops, or None while none is due (the sidecar's ``--load-policy
        chunk`` while the shared model is behind; run it with ``step(end, chunk=True)``).

        Re-decoding a growing buffer every 0.5 s costs ~2 passes per second of audio, each over the kept
        context and all unfinished speech: more than one tiny.en model keeps up with for 8 streams on 2
        cores. A chunk pass runs once per stretch of speech instead: when the VAD hears the speech after
        the committed point end (a region closed since the last pass), or when that speech reaches ``cap``
        seconds, cut at the quietest 0.1 s of its last 0.8 s so the cut rarely splits a word. Between
        speech, a pass is due every ``min_step`` as usual (it decodes nothing: it moves the frontier)."""
        cfg = self.cfg
        sr = SAMPLE_RATE
        end = self.received_end
        new = end - self.pass_end
        if new < cfg.min_step * sr or end - self._chunk_checked < 0.2 * sr:
            return None
        self._chunk_checked = end
        audio = self._take(end)
        length = len(audio) / sr
        settled = max(self.commit_end - self.buf_start, 0) / sr
        pending = [r for r in self.vad(audio) if r[1] > settled + 0.05]
        if not pending:
            return end
        last = (self.pass_end - self.buf_start) / sr
        closed = [i for i, (_, b) in enumerate(pending) if last - cfg.chunk_pause < b <= length - cfg.chunk_pause]
        if closed:
            # Speech ended since the last pass: cut in the pause after it, not inside the speech after it.
            i = closed[-1]
            if i + 1 == len(pending):
                return end
            if pending[i + 1][0] > last + 0.2:
                return self.buf_start + quietest(audio, max(pending[i][1], last + 0.1), pending[i + 1][0] + 0.1)
        # Speech not heard by a pass yet: from the committed point, or from just before the last pass's end
        # when that pass left its words uncommitted (nothing final there, or a word at the very end).
        start = max(settled, pending[0][0], last - 0.5)
        if length - start < cap or new < cap / 2 * sr:
            return None
        return self.buf_start + quietest(audio, max(start + cap - 0.8, last + 0.1, start + 1.0), length)

    # ------------------------------------------------------------------ one pass

    def _prompt(self, all_committed: bool = False) -> str:
        before = [w.text.strip() for w in self.committed
                  if all_committed or round(w.end * SAMPLE_RATE) <= self.buf_start]
        return " ".join(before[-self.cfg.prompt_words:]) if self.cfg.prompt_words > 0 else ""

    def _prefix(self) -> str:
        """Committed text inside the buffer (the context kept before new speech), forced as the start of
        the decoder's output: the decoder continues after it instead of transcribing it once more."""
        inside = [w.text.strip() for w in self.committed if round(w.start * SAMPLE_RATE) >= self.buf_start - 800]
        return " ".join(inside)

    def _absolute(self, t: float) -> int:
        return self.buf_start + round(t * SAMPLE_RATE)

    def _pass(self, audio: np.ndarray, regions: list[tuple[float, float]], offset: int, prompt: str,
              prefix: str) -> list[Word]:
        """One decoder pass over ``audio`` (which starts ``offset`` samples into the buffer): the words
        that survive the guards, in media time."""
        started = time.monotonic()
        segments = self.decode(audio, prompt, prefix)
        if prompt and has_loop(segments, self.cfg.guards.max_repeats, regions):
            # The prompt is the usual trigger of a loop; one more pass without it, else the loop is cut.
            # Either way the decoder was unsure of this audio: its words wait for a second pass.
            self.loops += 1
            self._unstable = True
            segments = self.decode(audio, "", prefix)
        self.decode_seconds += time.monotonic() - started
        return [
            Word(text=w.text.strip(), start=_sec(self._absolute(w.start) + offset),
                 end=_sec(self._absolute(w.end) + offset), probability=w.probability)
            for w in filter_segments(segments, regions, self.cfg.guards,
                                     settled=max(self.commit_end - self.buf_start - offset, 0) / SAMPLE_RATE)
        ]

    def _commit(self, words: Sequence[Word], out: StepResult) -> None:
        for w in words:
            self.committed.append(w)
            out.committed.append(w)
            self.commit_end = max(self.commit_end, round(w.end * SAMPLE_RATE))
        if len(self.committed) > 400:  # enough for the prompt and trimming; a day-long stream stays small
            del self.committed[:-200]

    def _merge(self, new: list[Word], regions: Sequence[tuple[float, float]] = (), closed: float = 0.0) -> list[Word]:
        """New pass words after the committed point, without re-decoded copies of committed text.

        Two kinds of copy: the committed tail decoded again at the edge (its timing moved a little), and
        the decoder repeating a committed sentence that is still in the buffer as context (a loop whose
        copy the alignment squeezes in after the committed point). A run that starts at a speech onset
        (``onsets``: media times where the VAD heard speech begin after a pause) was said again, and is
        kept: a loop has no audio of its own.
        """
        self._confirm = set()  # ids of words that need a second pass's agreement (see step)
        # Words after the committed point. A word the alignment starts a little earlier than the last
        # pass did ("has" of "... conference | has been extended", moved back 0.1 s) is still new when
        # most of it lies after the point; a copy of the committed tail is caught by its text below.
        edge = _sec(self.commit_end) - 0.1
        new = [w for w in new if w.start > edge or w.end > _sec(self.commit_end) + 0.25]
        if self.committed and new and new[0].start < _sec(self.commit_end) + 1.0:
            tail = [normalize(w.text) for w in self.committed[-5:]]
            head = [normalize(w.text) for w in new[:5]]
            for k in range(min(len(tail), len(head)), 0, -1):
                if tail[-k:] == head[:k]:
                    if k >= 2 and self._said_again(self.committed[-1], new[:k], regions, closed):
                        # "You are now muted. | You are now muted.": the whole sentence said again after
                        # a pause, not the tail decoded twice; a second pass must hear it too (see step).
                        self._confirm.update(id(w) for w in new[:k])
                        break
                    new = new[k:]
                    break
        if len(new) >= self.MIN_COPY:
            # Text already in the buffer: committed context, then this pass's words as they are kept.
            seen_words = [w for w in self.committed[-80:] if w.end > _sec(self.buf_start)]
            seen = [normalize(w.text) for w in seen_words]
            texts = [normalize(w.text) for w in new]
            kept: list[Word] = []
            j = 0
            while j < len(new):
                k, at = _longest_prefix_in(texts[j:], seen)
                # A loop restarts a sentence it heard; a phrase recurring inside a sentence ("4 or 6 to
                # decrease the volume, 7 or 9 to decrease ...") is speech.
                restarts = at == 0 or ends_sentence(seen_words[at - 1].text)
                if k >= self.MIN_COPY and restarts:
                    if not self._said_again(seen_words[at + k - 1], new[j:j + k], regions, closed):
                        j += k
                        continue
                    # Said again, by the audio: still, a loop can spread its copy over new speech, so
                    # this copy needs a second pass that hears it too (see step), whatever the policy.
                    self._confirm.update(id(w) for w in new[j:j + k])
                kept.append(new[j])
                seen.append(texts[j])
                seen_words.append(new[j])
                j += 1
            new = kept
        return new

    @staticmethod
    def _said_again(original_end: Word, copy: Sequence[Word], regions: Sequence[tuple[float, float]],
                    closed: float) -> bool:
        """A copy of text heard earlier in the buffer may be speech said again, not a decoder loop: the
        VAD heard speech begin anew between the original and the copy, the copy's words take the time
        words take, and the copy runs to the end of its speech region (or the region is still open). A
        loop's copy is squeezed into a sliver of audio, or laid over the start of other speech that goes
        on after it (which a closed region shows)."""
        if (copy[-1].end - copy[0].start) / len(copy) < 0.12:
            return False
        if not any(original_end.end < a <= copy[0].start + 0.1 for a, _ in regions):
            return False
        for a, b in regions:
            if a <= copy[-1].end <= b + 0.1:
                return b > closed or b - copy[-1].end <= 0.6
        return False

    def step(self, pass_end: int, chunk: bool = False) -> StepResult:
        """One pass up to ``pass_end``. ``chunk`` (see ``chunk_pass_end``): the buffer is cut at the
        committed point first, less ``chunk_context`` seconds of whole committed words (the committed text
        is still the prompt), and the pass's words are final from this one pass, all but those within
        ``chunk_margin`` of its end."""
        cfg = self.cfg
        out = StepResult()
        audio = self._take(pass_end)
        self.pass_end = pass_end
        self.passes += 1
        if chunk:
            self.chunk_passes += 1
            cut = self.commit_end
            if cfg.chunk_context > 0:
                lo = self.commit_end - int(cfg.chunk_context * SAMPLE_RATE)
                kept = [w for w in self.committed[-64:] if round(w.start * SAMPLE_RATE) >= max(lo, self.buf_start)]
                if kept:
                    cut = round(kept[0].start * SAMPLE_RATE)
            if cut > self.buf_start:
                self._trim_to(cut, context=False)
                audio = self._take(pass_end)
        self._unstable = False
        length = len(audio) / SAMPLE_RATE
        regions = self.vad(audio)
        settled = max(self.commit_end - self.buf_start, 0) / SAMPLE_RATE
        if cfg.voice_change > 0 and self._voice_changed(audio, regions, settled):
            audio = self._take(pass_end)
            length = len(audio) / SAMPLE_RATE
            regions = self.vad(audio)
            settled = max(self.commit_end - self.buf_start, 0) / SAMPLE_RATE
        pending = [r for r in regions if r[1] > settled + 0.05]
        open_region = bool(pending) and pending[-1][1] > length - (cfg.chunk_pause if chunk else cfg.silence_commit)

        if not pending:
            self.hypothesis = []
            self._sure = 0
        else:
            words = self._pass(audio, regions, 0, self._prompt(), self._prefix())
            unheard = _dropped_speech((), pending, _sec(self.buf_start), settled)  # speech not yet committed, s
            if self._prefix() and unheard > cfg.stall_after and (
                    not [w for w in words if w.end > _sec(self.commit_end)]
                    or (not open_region and _dropped_speech(words, pending, _sec(self.buf_start), settled)
                        > cfg.stall_after)):
                # The decoder gave nothing new for speech after the committed point, or it stopped early
                # in speech that has ended (a prefix often makes Whisper close the sentence and end the
                # pass: "them." of "for them. That agent is already logged on...", and the trim after this
                # pass would drop the rest unheard): the context did not help this time. Decode the new
                # speech on its own rather than lose it or wait for the buffer limit.
                self.stalls += 1
                cut = max(self.commit_end - self.buf_start - int(0.2 * SAMPLE_RATE), 0)
                shifted = [(max(a - cut / SAMPLE_RATE, 0.0), b - cut / SAMPLE_RATE) for a, b in regions
                           if b > cut / SAMPLE_RATE]
                words = self._pass(audio[cut:], shifted, cut, self._prompt(all_committed=True), "")
            spans = [(_sec(self.buf_start) + a, _sec(self.buf_start) + b) for a, b in regions if a > 0.05]
            new = self._merge(words, spans, closed=_sec(pass_end) - cfg.silence_commit)
            agreed = 0
            sure = 0  # held words commit_paused may commit (alignatt passes only)
            if chunk:
                # One pass per chunk: no second pass is coming to confirm, and the cut is at a quiet point.
                # A copy of the committed tail (see _merge) would wait for a confirmation that never comes:
                # a chunk starts at the committed point, so such a copy is the decoder repeating its prompt.
                new = [w for w in new if id(w) not in self._confirm]
                limit = _sec(pass_end) - cfg.chunk_margin
                if not open_region:  # nothing said after the speech ended is final from this pass
                    limit = min(limit, _sec(self.buf_start) + pending[-1][1] + 0.3)
                while agreed < len(new) and new[agreed].end <= limit:
                    agreed += 1
            elif cfg.policy == "alignatt":
                # The attention policy: a word whose cross-attention alignment ends align_threshold
                # before the newest audio will not change with more audio; commit it from this one pass.
                # The pass's last word is final this way only when punctuation closes it: the decoder may
                # not have finished it ("log" of "logged" when the audio ends mid-word).
                # A word the previous pass heard as another word waits (the decoder is changing its
                # mind: "Unless to be" then "A less to be"). Words the decoder was unsure of need the
                # previous pass to have said them too: a copy of earlier text said again (see _merge),
                # the words of a pass that looped, and (with onset_confirm) a new region's first words.
                limit = _sec(pass_end) - cfg.align_threshold
                onsets = [a for a, _ in spans]
                holds = [self._hold(new, i, limit, onsets) for i in range(len(new))]
                while agreed < len(new) and holds[agreed] == (None, None):
                    agreed += 1
                # Early commit (``early_commit``): a word held only for a second opinion (it ends within
                # align_threshold of the newest audio, or it is among a region's first words)
                # that ends early_commit before the newest audio and that the decoder was confident of is
                # final from this one pass: the next pass rarely reads it otherwise (docs/latency.md,
                # "sixteenth session"), and waiting for it costs a pass, ~1 s live. A last word not closed by
                # punctuation still waits (the decoder may not have finished it: 1 of 2 was revised).
                if cfg.early_commit > 0:
                    early = _sec(pass_end) - cfg.early_commit
                    while (agreed < len(new) and _early(*holds[agreed]) and new[agreed].end <= early
                           and new[agreed].probability >= cfg.early_prob
                           and (agreed < len(new) - 1 or _CLOSED.search(new[agreed].text))):
                        agreed += 1
                        self.early_commits += 1
                self.holds = holds[agreed:]
                # The held words this pass was sure of (held only by the threshold or as its last word):
                # the ones commit_paused may commit once their speech has ended.
                doubt = agreed
                while doubt < len(new) and holds[doubt][1] is None:
                    doubt += 1
                sure = doubt - agreed
            else:
                for a, b in zip(self.hypothesis, new, strict=False):
                    if normalize(a.text) != normalize(b.text) or b.end > _sec(pass_end) - cfg.min_context:
                        break
                    agreed += 1
            if cfg.context_commit > 0 and cfg.policy != "alignatt" and not chunk:
                settled_by_context = _sec(pass_end) - cfg.context_commit
                while agreed < len(new) and new[agreed].end <= settled_by_context:
                    agreed += 1
            self._commit(new[:agreed], out)
            self.hypothesis = new[agreed:]
            if self.hypothesis and not open_region:
                # Speech has stopped: more audio will not change these words, so do not wait for them.
                last_speech = _sec(self.buf_start) + pending[-1][1]
                done = [w for w in self.hypothesis if w.end <= last_speech + 0.3]
                self._commit(done, out)
                self.hypothesis = self.hypothesis[len(done):]
                sure = max(sure - len(done), 0)
            self._sure = sure

        self._open_from = _sec(self.buf_start) + pending[-1][0] if open_region else None
        self._advance_frontier()
        self._trim(pending_speech=bool(self.hypothesis) or open_region, out=out)
        out.hypothesis = list(self.hypothesis)
        out.frontier = self.frontier
        return out

    def _hold(self, new: Sequence[Word], i: int, limit: float, onsets: Sequence[float]
              ) -> tuple[Hold | None, Hold | None]:
        """Why the alignatt policy does not commit ``new[i]`` from this pass alone, as (position, doubt);
        (None, None): it would, once the words before it are committed. Position: "threshold" (it ends
        within align_threshold of the newest audio) or "last" (the pass's last word, not closed by
        punctuation). Doubt, only when the previous pass did not say the word too: "copy" (a copy of
        earlier text, see _merge), "unstable" (the pass looped), "onset" (a region's first words,
        onset_confirm), or "changed" (the previous pass heard that audio as another word)."""
        cfg = self.cfg
        w = new[i]
        before = self.hypothesis[i] if i < len(self.hypothesis) else None
        same = before is not None and normalize(before.text) == normalize(w.text)
        doubt: Hold | None = None
        if not same:
            if id(w) in self._confirm:
                doubt = "copy"
            elif cfg.confirm_unstable and self._unstable:
                doubt = "unstable"
            elif any(0 <= w.start - a < cfg.onset_confirm for a in onsets):
                doubt = "onset"
            elif cfg.changed_wait and before is not None:
                doubt = "changed"
        position: Hold | None = None
        if w.end > limit:
            position = "threshold"
        elif i == len(new) - 1 and not _CLOSED.search(w.text):
            position = "last"
        return position, doubt

    def _voice_changed(self, audio: np.ndarray, regions: list[tuple[float, float]], settled: float) -> bool:
        """Cut the kept context when the speech after a pause is another voice (``voice_change``).

        Checked once per new region that follows a pause of ``voice_gap`` or more after committed speech
        still in the buffer, when ``voice_after`` seconds of it have been heard (or it has ended): its
        speech against the last stretch of speech before the pause (regions closer than ``voice_gap``
        to each other, at most 8 s). Returns whether the buffer was cut."""
        cfg = self.cfg
        if self.commit_end <= self.buf_start:
            return False  # no committed speech kept: nothing to drop
        # The new speech: a region that begins after the committed point (the VAD pads a region 0.15 s
        # each side, so the region of the last committed words ends a little after them).
        new = [r for r in regions if r[0] >= settled - 0.3 and r[1] > settled + 0.05]
        if not new:
            return False
        onset = new[0][0]
        onset_abs = self._absolute(onset)
        if onset_abs <= self._voice_done or onset < settled:
            return False
        before = [r for r in regions if r[1] <= onset and r[0] < settled]
        if not before or onset - before[-1][1] < cfg.voice_gap:
            return False
        length = len(audio) / SAMPLE_RATE
        heard = min(new[0][1], length) - onset
        if heard < cfg.voice_after and new[0][1] > length - cfg.silence_commit:
            return False  # still speaking, not enough heard yet
        started = time.monotonic()
        turn = [before[-1]]
        for r in reversed(before[:-1]):
            if turn[0][0] - r[1] >= cfg.voice_gap or turn[-1][1] - r[0] > 8.0:
                break
            turn.insert(0, r)
        lo = max(turn[0][0], turn[-1][1] - 8.0)
        sr = SAMPLE_RATE
        a = speech_frames(audio[int(lo * sr):int(turn[-1][1] * sr)], [(x - lo, y - lo) for x, y in turn])
        hi = min(new[0][1], onset + max(cfg.voice_after, 0.2), length)
        b = speech_frames(audio[int(onset * sr):int(hi * sr)])
        d = voice_distance(a, b)
        changed = bool(d > cfg.voice_change)  # NaN (too little speech) is no change
        self._voice_done = onset_abs
        self.voice_checks.append((_sec(onset_abs), d, changed))
        if changed:
            self._trim_to(max(onset_abs - int(0.1 * sr), self.commit_end), context=False)
        self.voice_seconds += time.monotonic() - started
        return changed

    def _advance_frontier(self) -> None:
        """How far committed output is complete: up to the newest pass (less a guard), but not past
        uncommitted words (the next pass may start them earlier: a margin) or into a speech region that is
        still open beyond what is committed of it."""
        limit = _sec(self.pass_end) - self.cfg.frontier_guard
        committed = _sec(self.commit_end)
        if self.hypothesis:
            limit = min(limit, max(self.hypothesis[0].start - 0.5, committed))
        if self._open_from is not None:
            limit = min(limit, max(self._open_from, committed))
        self.frontier = max(self.frontier, limit)

    def settle_idle(self) -> StepResult:
        """Commit what no second pass is coming for: called when no audio has arrived for a while.

        A held word waits for the next pass to confirm it, and the next pass waits for new audio. When
        the audio stops, that wait may never end: a file's reader stops feeding us while the caption
        output waits for these very words (a deadlock the core breaks only after its 10 s timeout), and a
        paused source leaves its last words on hold. Words the last pass heard with ``idle_context``
        seconds of audio after them are not the truncated-buffer readings that two-pass confirmation
        exists for (those are the last words of a buffer cut early), so they are committed as heard;
        the words nearer the end stay held for the audio to come. No pass is run: a second pass over the
        same audio would only agree with the first, truncated readings included."""
        out = StepResult()
        limit = _sec(self.pass_end) - self.cfg.idle_context
        done = 0
        while done < len(self.hypothesis) and self.hypothesis[done].end <= limit:
            done += 1
        if done:
            self._commit(self.hypothesis[:done], out)
            self.hypothesis = self.hypothesis[done:]
            self._sure = 0  # commit_paused waits for the next pass
            self._advance_frontier()
        out.hypothesis = list(self.hypothesis)
        out.frontier = self.frontier
        return out

    def pause_due(self) -> bool:
        """Whether ``commit_paused`` has anything to look at: held words the last pass was sure of, and audio
        it has not seen."""
        return (self.cfg.pause_commit and self._sure > 0 and bool(self.hypothesis)
                and self.received_end != self._pause_checked)

    def commit_paused(self) -> StepResult:
        """Commit the held words of a stretch of speech that has ended, without a decoder pass.

        A pass commits held words once the speech after the committed point has ended (``silence_commit``
        of silence heard: see step), but the last words of a sentence are usually read by a pass that
        ends just after them, 0.1-0.5 s into the pause, and so wait for the *next* pass: a pass's spacing
        plus its wall time, 1.5-2.5 s on a loaded CPU. Here, between passes, the VAD (incremental: only
        the audio that came since it last ran) is asked whether that speech has ended (``silence_commit``
        of silence after it, even if more speech has begun since); if it has, and the
        last pass heard the speech to its end and ``pause_heard`` seconds beyond, the words that pass held
        there are committed as it read them: what the next pass would commit by the same rule, over the
        same speech, ~1 s later. Only the words that pass held for the AlignAtt threshold or as its last
        word: one it was unsure of (it read that audio as other words before, its pass looped, a copy, a
        new speaker's first words: see step) waits for a second pass as before, as do words of speech
        still going on, words the last pass did not hear to their end, and words beginning after the
        speech's end (a decoder's invention)."""
        out = StepResult(frontier=self.frontier)
        cfg = self.cfg
        sr = SAMPLE_RATE
        if not self.pause_due():
            return out
        self._pause_checked = self.received_end
        audio = self._take(self.received_end)
        length = len(audio) / sr
        settled = max(self.commit_end - self.buf_start, 0) / sr
        pending = [r for r in self.vad(audio) if r[1] > settled + 0.05]
        if not pending:
            # The VAD hears no speech after the committed point: the held words lie in what it calls silence
            # (a decoder's invention, or speech the VAD clipped). Not a pause after speech: the next pass
            # decides them, as before.
            return out
        # The first stretch of speech after the committed point that has ended: silence_commit of silence
        # after it (the next speech may have begun since: the pause is what counts).
        ends = [b for (_, b), nxt in zip(pending, [*(a for a, _ in pending[1:]), length], strict=True)
                if nxt - b >= cfg.silence_commit]
        heard = (self.pass_end - self.buf_start) / sr
        if not ends or ends[0] + cfg.pause_heard > heard:
            return out
        speech_end = _sec(self.buf_start) + ends[0]
        # Words that began inside that speech (a pass stretches its last word to the end of its audio,
        # so a word's end says little there; a decoder's invention in the pause begins after it).
        done = 0
        while done < min(self._sure, len(self.hypothesis)) and self.hypothesis[done].start < speech_end - cfg.pause_start:
            done += 1
        if not done:
            return out
        # ... and ended with it: a last word stretched over the pause ("in." read 22.6-24.4 s for speech
        # that ended at 23.2 s) would keep its caption on screen through the pause.
        self._commit([w if w.end <= speech_end else replace(w, end=max(speech_end, w.start + 0.05))
                      for w in self.hypothesis[:done]], out)
        self.hypothesis = self.hypothesis[done:]
        self._sure -= done
        if not self.hypothesis:
            # Nothing uncommitted is left and the VAD hears no speech after it up to the next stretch (its
            # start is padded) or the newest audio (less the usual guard): the frontier moves up to there,
            # so a cue that ended at this pause is closed at once.
            later = [a for a, _ in pending if a > ends[0]]
            limit = _sec(self.buf_start) + later[0] if later else _sec(self.received_end) - cfg.frontier_guard
            self._open_from = None
            self.frontier = max(self.frontier, limit)
        out.hypothesis = list(self.hypothesis)
        out.frontier = self.frontier
        return out

    def _with_context(self, sample: int) -> int:
        """Move a cut back to the start of a committed sentence, keeping up to ``keep_context`` seconds."""
        if self.keep_context <= 0:
            return sample
        if self.cfg.context_gap > 0 and self.pass_end - self.commit_end > self.cfg.context_gap * SAMPLE_RATE:
            return sample
        sr = SAMPLE_RATE
        earliest = max(sample - int(self.keep_context * sr), self.buf_start)
        recent = self.committed[-65:]
        first_ever = len(recent) == len(self.committed)  # then recent[0] starts the stream's first sentence
        for i, w in enumerate(recent):
            prev = recent[i - 1] if i else None
            if prev is None and not first_ever:
                continue
            start = round(w.start * sr)
            if earliest <= start and round(w.end * sr) <= sample and (prev is None or ends_sentence(prev.text)):
                floor = round(prev.end * sr) if prev is not None else self.buf_start
                return max(start - int(0.1 * sr), floor)
        return sample

    def shed_context(self, min_cut: float = 0.5) -> bool:
        """Cut the buffer's committed head down to ``keep_context`` now, not at the next trim.

        The buffer is normally trimmed only after a pause or once it is past ``trim_sentence``, so a
        context lowered while the model is behind (the sidecar's ``--load-context``) took effect seconds
        later, and a stream behind mid-sentence kept re-encoding its old 8 s on every pass. Here the cut is
        made as a trim would make it: at the last committed sentence end, moved back over whole committed
        sentences that fit in ``keep_context`` (``_with_context``); nothing uncommitted is cut. Done only
        when it takes ``min_cut`` seconds or more off the buffer. Returns whether it cut."""
        sr = SAMPLE_RATE
        ends = [w for w in self.committed[-64:]
                if self.buf_start < round(w.end * sr) <= min(self.commit_end, self.pass_end) and ends_sentence(w.text)]
        if not ends:
            return False
        at = round(ends[-1].end * sr)
        if min(self._with_context(at), self.pass_end) - self.buf_start < min_cut * sr:
            return False
        self._take(self.pass_end)  # the buffer array holds every sample up to pass_end before it is sliced
        self._trim_to(at)
        return True

    def skip_to(self, sample: int) -> tuple[float, float]:
        """Drop the audio before ``sample`` without decoding it: a stream too far behind the newest audio
        (the sidecar's ``--max-behind``) goes on from there. The words held for a second pass and the
        speech not yet decoded before ``sample`` are lost; committed words stay. Returns the seconds of
        audio skipped past what was decoded (the last pass's end) and the seconds of speech among them
        not committed (the VAD's regions), which is what the skip cost in words."""
        sr = SAMPLE_RATE
        sample = min(sample, self.received_end)
        if sample <= self.pass_end:
            return 0.0, 0.0
        audio = self._take(sample)
        settled = max(self.commit_end - self.buf_start, 0) / sr
        speech = sum(max(0.0, b - max(a, settled)) for a, b in self.vad(audio))
        skipped = (sample - self.pass_end) / sr
        self._buffer = self._buffer[sample - self.buf_start:]
        self.buf_start = self.pass_end = sample
        self.commit_end = max(self.commit_end, sample)
        self.hypothesis, self._sure, self._confirm, self._open_from = [], 0, set(), None
        self.frontier = max(self.frontier, _sec(sample))
        self._chunk_checked = self._pause_checked = sample
        return skipped, speech

    def _trim_to(self, sample: int, context: bool = True) -> None:
        if context:
            sample = self._with_context(sample)
        sample = min(max(sample, self.buf_start), self.pass_end)
        self._buffer = self._buffer[sample - self.buf_start:]
        self.buf_start = sample

    def _trim(self, pending_speech: bool, out: StepResult) -> None:
        cfg = self.cfg
        sr = SAMPLE_RATE
        if not pending_speech:
            self._trim_to(max(self.commit_end, self.pass_end - int(cfg.keep_silence * sr)))
            return
        length = (self.pass_end - self.buf_start) / sr
        in_buffer = [w for w in self.committed[-64:] if round(w.end * sr) > self.buf_start]
        if length > cfg.trim_sentence:
            ends = [w for w in in_buffer if ends_sentence(w.text)]
            if ends:
                self._trim_to(round(ends[-1].end * sr))
        length = (self.pass_end - self.buf_start) / sr
        if length > cfg.max_buffer:
            if not in_buffer:
                cut = _sec(self.pass_end) - cfg.max_buffer / 2
                forced = [w for w in self.hypothesis if w.end <= cut]
                self._commit(forced, out)
                self.hypothesis = self.hypothesis[len(forced):]
                self._sure = 0  # commit_paused waits for the next pass
            self._trim_to(self.commit_end, context=False)  # too long: no context this time
            if (self.pass_end - self.buf_start) / sr > cfg.max_buffer:
                self._trim_to(self.pass_end - int(cfg.max_buffer / 2 * sr), context=False)
                self.hypothesis = [w for w in self.hypothesis if w.start >= _sec(self.buf_start)]
                self._sure = 0  # commit_paused waits for the next pass

    # ------------------------------------------------------------------ the end

    def finish(self) -> StepResult:
        """Decode what is left and commit it all (end of stream, or before a discontinuity)."""
        total = StepResult(frontier=self.frontier)
        while (end := self.next_pass_end(final=True)) is not None:
            r = self.step(end)
            total.committed.extend(r.committed)
        if self.hypothesis:
            self._commit(self.hypothesis, total)
            self.hypothesis = []
        self.frontier = max(self.frontier, _sec(self.received_end))
        total.frontier = self.frontier
        return total
