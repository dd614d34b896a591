"""Cue shaping: committed words into caption cues laid out like broadcast captions.

Pure functions. Rules (the usual broadcast/streaming style guides): at most 2 lines of at most 42
characters, lines broken at phrase boundaries (after punctuation, before a conjunction or preposition,
never right after an article), a new cue at each sentence end and at each pause, a minimum and maximum
display duration, and cues that never overlap, so a viewer reads one caption at a time.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from sidecast.contract.records import Cue, Word


@dataclass(frozen=True)
class CaptionStyle:
    max_chars: int = 42          # per line
    max_lines: int = 2
    min_duration: float = 1.0    # seconds on screen, at least (unless the next cue needs the screen)
    max_duration: float = 7.0    # seconds on screen, at most
    max_gap: float = 0.9         # a pause longer than this between words starts a new cue


DEFAULT_STYLE = CaptionStyle()

# Breaking a line before these words reads naturally ("... the report | and the figures").
_BREAK_BEFORE = frozenset(
    "and but or nor so yet because although though while whereas if unless until when whenever where "
    "which who whom whose that then after before since as than to of in on at for with from by about "
    "into onto over under between through during without".split()
)
# Breaking right after these strands a word at a line end ("the | report").
_NO_BREAK_AFTER = frozenset("a an the my your his her its our their this that these those to of".split())
_SENTENCE_END = re.compile(r"[.!?…]['\")\]]*$")
_CLAUSE_END = re.compile(r"[,;:\u2014-]['\")\]]*$")


def ends_sentence(text: str) -> bool:
    return bool(_SENTENCE_END.search(text.strip()))


def _bare(text: str) -> str:
    return re.sub(r"[^\w']", "", text.lower())


def _join(words: Sequence[str]) -> str:
    """Words to text; Whisper's word split leaves a hyphenated compound's second half as its own word
    ("cold", "-hearted"): it is joined back ("cold-hearted")."""
    out = ""
    for w in (x.strip() for x in words):
        if not w:
            continue
        out += w if (out and w.startswith("-") and len(w) > 1) else (" " + w if out else w)
    return out


def break_lines(words: Sequence[str], style: CaptionStyle = DEFAULT_STYLE) -> list[str] | None:
    """Lay words out in at most ``style.max_lines`` lines of ``style.max_chars``; None if they cannot fit.

    One line when it fits; otherwise the two-line split with the best score: a break after punctuation or
    before a conjunction/preposition is preferred, a break after an article is avoided, and among equals
    the more balanced pair wins (a bottom-heavy pair slightly more than a top-heavy one).
    """
    tokens = [w.strip() for w in words if w.strip()]
    if not tokens:
        return []
    whole = _join(tokens)
    if len(whole) <= style.max_chars:
        return [whole]
    if style.max_lines < 2:
        return None
    best: tuple[float, list[str]] | None = None
    for i in range(1, len(tokens)):
        top, bottom = _join(tokens[:i]), _join(tokens[i:])
        if len(top) > style.max_chars or len(bottom) > style.max_chars:
            continue
        score = float(abs(len(top) - len(bottom)))
        if len(top) > len(bottom):
            score += 2.0
        before, after = tokens[i - 1], tokens[i]
        if ends_sentence(before):
            score -= 45.0
        elif _CLAUSE_END.search(before):
            score -= 35.0
        elif _bare(after) in _BREAK_BEFORE:
            score -= 20.0
        if _bare(before) in _NO_BREAK_AFTER:
            score += 30.0
        if best is None or score < best[0]:
            best = (score, [top, bottom])
    return best[1] if best else None


def fits(words: Sequence[Word], style: CaptionStyle = DEFAULT_STYLE) -> bool:
    return break_lines([w.text for w in words], style) is not None


def _phrase_split(words: Sequence[Word]) -> int:
    """Where to end a cue that is full: the last phrase boundary in its second half, else the end."""
    for j in range(len(words) - 1, max(len(words) // 2, 1) - 1, -1):
        if _CLAUSE_END.search(words[j - 1].text) or _bare(words[j].text) in _BREAK_BEFORE:
            return j
    return len(words)


def group_words(words: Sequence[Word], style: CaptionStyle = DEFAULT_STYLE) -> list[list[Word]]:
    """Split a run of words into cue-sized groups, at sentence ends, pauses and phrase boundaries."""
    groups: list[list[Word]] = []
    current: list[Word] = []
    for w in words:
        if not w.text.strip():
            continue
        if current and (w.start - current[-1].end > style.max_gap or ends_sentence(current[-1].text)):
            groups.append(current)
            current = []
        candidate = current + [w]
        too_long = bool(current) and w.end - current[0].start > style.max_duration
        if current and (too_long or not fits(candidate, style)):
            j = _phrase_split(current)
            groups.append(current[:j])
            current = current[j:] + [w]
            while current and not fits(current, style):  # one absurdly long token: give it its own cue
                groups.append(current[:1])
                current = current[1:]
        else:
            current = candidate
    if current:
        groups.append(current)
    return groups


@dataclass(frozen=True)
class ShapedCue:
    start: float
    end: float
    lines: tuple[str, ...]
    words: tuple[Word, ...]

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


def time_cues(groups: Sequence[Sequence[Word]], style: CaptionStyle = DEFAULT_STYLE,
              not_before: float = 0.0, next_start: float | None = None) -> list[ShapedCue]:
    """Give each group its display time: from its first word, held for the minimum duration, capped at
    the maximum, never overlapping its neighbours (``not_before``: where the previous, already published
    cue ends; ``next_start``: where the following cue starts, when known)."""
    out: list[ShapedCue] = []
    prev_end = not_before
    for k, g in enumerate(groups):
        if not g:
            continue
        lines = break_lines([w.text for w in g], style) or [_join([w.text for w in g])]
        start = max(g[0].start, prev_end)
        end = max(g[-1].end, start + style.min_duration)
        end = min(end, start + style.max_duration)
        following = groups[k + 1][0].start if k + 1 < len(groups) and groups[k + 1] else next_start
        if following is not None and end > following:
            end = max(following, start + 0.001)
        out.append(ShapedCue(start=start, end=end, lines=tuple(lines), words=tuple(g)))
        prev_end = end
    return out


def shape_cues(words: Sequence[Word], style: CaptionStyle = DEFAULT_STYLE, not_before: float = 0.0) -> list[ShapedCue]:
    """Words to broadcast-style cues in one go (a whole transcript, or a test)."""
    return time_cues(group_words(words, style), style, not_before=not_before)


class CueBuilder:
    """Turns the recogniser's committed words into final cues as soon as each cue is settled, and its
    uncommitted tail into one partial cue for low-latency display.

    A cue is settled when a later cue has started, at a sentence end, when it is full, after a pause, or
    once it has been open ``max_open`` seconds of media (so captions are never held back long enough to
    miss the segment they belong to). Final cues are never revised; the partial cue carries the id the
    next final cue will have, so a player or store replaces it.

    ``MAX_OPEN`` (the sidecar's ``--max-open`` default): 1.5 s, not 2.5 s as before the eleventh session.
    The first words of a long sentence wait for their cue to close, so this bounds most of the caption
    latency the recogniser does not cause: on a real-time run of the tuning programme it took the
    median word -> cue time from 1.89 s to 1.59 s and the p95 from 3.35 s to 2.50 s, for 31 % more cues
    (median 1.6 s on screen; docs/captions.md, "Faster cues").
    """

    MAX_OPEN = 1.5

    def __init__(self, style: CaptionStyle = DEFAULT_STYLE, track: str = "", language: str = "en",
                 max_open: float = MAX_OPEN) -> None:
        self.style = style
        self.track = track
        self.language = language
        self.max_open = max_open
        self.pending: list[Word] = []
        self.last_end = 0.0
        self.count = 0

    def _id(self, n: int) -> str:
        return f"{self.track or 'cc'}-{n}"

    def _cue(self, s: ShapedCue, final: bool, n: int) -> Cue:
        return Cue(start=s.start, end=s.end, text=s.text, final=final, language=self.language,
                   track=self.track, words=s.words, id=self._id(n))

    @property
    def open_start(self) -> float | None:
        """Media time of the first committed word not yet in a final cue."""
        return self.pending[0].start if self.pending else None

    def update(self, committed: Sequence[Word], hypothesis: Sequence[Word], frontier: float,
               final: bool = False, close: bool = False) -> tuple[list[Cue], Cue | None]:
        """``close``: every committed word is final in a cue now, as at the end (``final``), but the stream
        goes on: a chunk pass commits all it heard, and the next words come only with the next chunk, so a
        cue left open would wait a whole chunk (~1.5 s) for words that may not belong to it."""
        self.pending.extend(committed)
        groups = group_words(self.pending, self.style)
        done, last = groups[:-1], (groups[-1] if groups else [])
        if last:
            probe = Word(text="xxxxxxx", start=last[-1].end, end=last[-1].end)
            if (final or close or ends_sentence(last[-1].text) or not fits([*last, probe], self.style)
                    or frontier - last[-1].end >= self.style.max_gap or frontier - last[0].start >= self.max_open):
                done.append(last)
                last = []
        following = last[0].start if last else (hypothesis[0].start if hypothesis else None)
        finals = []
        for s in time_cues(done, self.style, not_before=self.last_end, next_start=following):
            finals.append(self._cue(s, True, self.count))
            self.count += 1
            self.last_end = s.end
        self.pending = list(last)
        partial = None
        tail = [*self.pending, *hypothesis]
        if tail and not final:
            first = group_words(tail, self.style)[0]
            shaped = time_cues([first], self.style, not_before=self.last_end)
            if shaped:
                partial = self._cue(shaped[0], False, self.count)
        return finals, partial
