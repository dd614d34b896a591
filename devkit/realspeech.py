"""Real recorded human speech with published transcripts, for the stt sidecar's tests and bench.

Everything comes from Debian packages that ``scripts/install-extras.sh`` installs (nothing is downloaded
at run time, nothing is synthesised):

- ``pocketsphinx-testdata``: five LibriVox clips of *Sense and Sensibility* (one reader, public domain)
  and five "cards" utterances (CMU recordings), with their transcriptions;
- the same package's two other speakers with known text: ``goforward.raw`` ("go forward ten meters", the
  text of its grammar) and the TIDIGITS utterance ``tidigits/dhd.2934z.raw`` (its digits are its name),
  headerless 16 kHz 16-bit PCM;
- ``asterisk-core-sounds-{en,es,fr}`` + ``-g722``: the Asterisk telephone prompts at 16 kHz, recorded by
  Allison Smith (US English and Mexican Spanish) and June Wallack (Canadian French), CC-BY-SA-3.0, whose
  texts ship in the packages' ``core-sounds-LANG.txt``.

A *programme* strings clips together the way a broadcast or a phone line does: several speakers, pauses
of 0.5-5 s between utterances, a phrase said again within seconds, over a low noise floor. It is
deterministic: the same split, language and length give the same audio, the same reference transcript
and the same utterance onsets (measured on each clip by its energy, to 10 ms).

Tuning vs held-out: clips are assigned to a split by a hash of their name (LibriVox and cards clips by a
fixed list), so that nothing tuned on ``"tuning"`` programmes is ever measured on ``"heldout"`` ones.
"""

from __future__ import annotations

import gzip
import re
import unicodedata
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np

SAMPLE_RATE = 16_000
POCKETSPHINX = Path("/usr/share/pocketsphinx/test/data")
ASTERISK_SOUNDS = Path("/usr/share/asterisk/sounds")
ASTERISK_DOC = Path("/usr/share/doc")

Split = str  # "tuning" or "heldout"
HELDOUT_LIBRIVOX = ("0880", "0920")
HELDOUT_CARDS = ("004", "005")
SPEAKERS = {"en": "allison-en", "es": "allison-es", "fr": "june-fr"}


class CorpusMissing(RuntimeError):
    """A Debian package the corpus needs is not installed; the message names it."""


@dataclass(frozen=True)
class Clip:
    id: str            # e.g. "asterisk-en/conf-full", "librivox/0870"
    path: Path
    text: str          # the published transcript
    language: str      # "en", "es", "fr"
    speaker: str
    split: Split
    licence: str


@dataclass(frozen=True)
class Utterance:
    clip: str
    text: str
    language: str
    speaker: str
    start: float       # media seconds: the first sample above the clip's speech threshold
    end: float         # ... and the last
    repeat: bool = False  # the same clip said again within seconds (phone menus, broadcasts)


@dataclass(frozen=True)
class Programme:
    audio: np.ndarray               # 16 kHz mono float32
    utterances: tuple[Utterance, ...]

    @property
    def seconds(self) -> float:
        return len(self.audio) / SAMPLE_RATE

    @property
    def reference(self) -> str:
        return " ".join(u.text for u in self.utterances)

    @property
    def speech_seconds(self) -> float:
        return sum(u.end - u.start for u in self.utterances)


def _split_of(name: str) -> Split:
    return "heldout" if zlib.crc32(name.encode()) % 3 == 0 else "tuning"


def require(path: Path, package: str) -> Path:
    if not path.exists():
        raise CorpusMissing(f"{path} is missing: install the Debian package {package} "
                            "(scripts/install-extras.sh does it)")
    return path


@cache
def librivox() -> tuple[Clip, ...]:
    """The five LibriVox clips of pocketsphinx-testdata (one reader) and the five 'cards' utterances."""
    out = []
    for folder, held, speaker in (("librivox", HELDOUT_LIBRIVOX, "librivox-reader"), ("cards", HELDOUT_CARDS, "cards")):
        trans = require(POCKETSPHINX / folder / ("transcription" if folder == "librivox" else "cards.transcription"),
                        "pocketsphinx-testdata")
        for line in trans.read_text().splitlines():
            m = re.match(r"<s>(.*)</s>\s*\((.+)\)", line.strip())
            if not m:
                continue
            name = m.group(2)
            short = name.rsplit("-", 1)[-1]
            out.append(Clip(id=f"{folder}/{short}", path=POCKETSPHINX / folder / f"{name}.wav",
                            text=" ".join(m.group(1).split()), language="en", speaker=speaker,
                            split="heldout" if short in held else "tuning",
                            licence="public domain (LibriVox)" if folder == "librivox" else "CMU (BSD-style)"))
    return tuple(out)


@cache
def pocketsphinx_speakers() -> tuple[Clip, ...]:
    """Two more speakers of pocketsphinx-testdata (tuning only: a held-out programme never draws on them)."""
    return tuple(
        Clip(id=cid, path=require(POCKETSPHINX / rel, "pocketsphinx-testdata"), text=text, language="en",
             speaker=speaker, split="tuning", licence="CMU (BSD-style)")
        for cid, rel, text, speaker in (
            ("pocketsphinx/goforward", "goforward.raw", "go forward ten meters", "goforward"),
            ("tidigits/dhd-2934z", "tidigits/dhd.2934z.raw", "two nine three four zero", "tidigits-dhd"),
        ))


@cache
def prompt_texts(language: str) -> dict[str, str]:
    """Prompt name -> published text, from the package's core-sounds-LANG.txt (tones and effects left out)."""
    doc = require(ASTERISK_DOC / f"asterisk-core-sounds-{language}" / f"core-sounds-{language}.txt.gz",
                  f"asterisk-core-sounds-{language}")
    out = {}
    with gzip.open(doc, "rt", encoding="utf-8", errors="replace") as f:
        for line in f:
            m = re.match(r"^([\w/+-]+):\s*(.*\S)\s*$", line)
            if m and not m.group(2).startswith(("[", "(")):
                out[m.group(1)] = m.group(2)
    return out


@cache
def prompts(language: str, min_words: int = 3) -> tuple[Clip, ...]:
    """Asterisk prompts of ``language`` with at least ``min_words`` words of text, as 16 kHz G.722 clips."""
    folder = require(ASTERISK_SOUNDS / language, f"asterisk-core-sounds-{language}-g722")
    out = []
    for name, text in sorted(prompt_texts(language).items()):
        path = folder / f"{name}.g722"
        if len(text.split()) < min_words or not path.is_file():
            continue
        out.append(Clip(id=f"asterisk-{language}/{name}", path=path, text=text, language=language,
                        speaker=SPEAKERS[language], split=_split_of(name), licence="CC-BY-SA-3.0 (Asterisk)"))
    return tuple(out)


@cache
def load(path: Path) -> np.ndarray:
    """A clip as 16 kHz mono float32 (PyAV decodes WAV and G.722 alike)."""
    from faster_whisper.audio import decode_audio

    if path.suffix == ".raw":  # pocketsphinx's headerless 16 kHz 16-bit little-endian PCM
        return np.ascontiguousarray(np.fromfile(path, dtype="<i2").astype(np.float32) / 32768.0)
    return np.ascontiguousarray(decode_audio(str(path), sampling_rate=SAMPLE_RATE), dtype=np.float32)


def speech_bounds(audio: np.ndarray, frame: int = 160) -> tuple[int, int]:
    """First and last sample of speech in a clip: 10 ms frames whose RMS is within 30 dB of the loudest."""
    n = len(audio) // frame
    if n == 0:
        return 0, len(audio)
    rms = np.sqrt(np.mean(audio[: n * frame].reshape(n, frame) ** 2, axis=1))
    loud = np.flatnonzero(rms > max(rms.max() * 10 ** (-30 / 20), 1e-4))
    if not len(loud):
        return 0, len(audio)
    return int(loud[0] * frame), int((loud[-1] + 1) * frame)


GAPS = (0.8, 2.0, 0.5, 3.5, 1.2, 5.0, 0.7, 1.6, 2.6, 4.2)  # seconds of pause between utterances


def english_pool(split: Split) -> list[Clip]:
    """English clips of a split, interleaving speakers: a reading, prompts, a card call, prompts..."""
    books = [c for c in librivox() if c.split == split and c.speaker == "librivox-reader"]
    cards = [c for c in librivox() if c.split == split and c.speaker == "cards"]
    phone = [c for c in prompts("en") if c.split == split]
    out: list[Clip] = []
    i = 0
    while phone or books or cards:
        k = i % 6
        src = books if k == 0 else cards if k == 3 else phone
        if not src:
            src = phone or books or cards
        out.append(src.pop(0))
        i += 1
    return out


def programme(split: Split = "heldout", language: str = "en", minutes: float = 5.0, seed: int = 0,
              repeat_every: int = 7, noise_db: float = -58.0, lead: float = 1.0,
              clips: Sequence[Clip] | None = None, gaps: Sequence[float] | None = None) -> Programme:
    """Real utterances with pauses between them, deterministic for given arguments.

    English mixes the LibriVox reader, the cards speaker and Allison's prompts (speaker changes);
    Spanish and French are one speaker each. Every ``repeat_every``-th utterance is said again after a
    short pause (0.8 s), as phone menus and broadcasts repeat themselves. ``clips`` overrides the pool
    (tests pick short programmes of particular clips; a clip may appear twice in a row, said again) and
    ``gaps`` the pauses after each utterance (cycled).
    """
    rng = np.random.default_rng(seed)
    if clips is None:
        pool = english_pool(split) if language == "en" else [c for c in prompts(language) if c.split == split]
        order = list(pool)
        if seed:
            # Keep the speaker interleaving of the pool: shuffle only the order of whole blocks of six.
            blocks = [order[i:i + 6] for i in range(0, len(order), 6)]
            rng.shuffle(blocks)  # type: ignore[arg-type]
            order = [c for b in blocks for c in b]
    else:
        order = list(clips)
    parts = [np.zeros(int(lead * SAMPLE_RATE), dtype=np.float32)]
    t = lead
    utts: list[Utterance] = []
    k = 0
    queue = list(order)
    last: Clip | None = None
    while t < minutes * 60:
        if repeat_every and clips is None and k and k % repeat_every == 0 and last is not None:
            clip, repeat = last, True
        elif queue:
            clip, repeat = queue.pop(0), False
        else:
            break
        last = clip
        audio = load(clip.path)
        a, b = speech_bounds(audio)
        pad = int(0.05 * SAMPLE_RATE)  # keep a little of each recording's own room tone
        lo, hi = max(0, a - pad), min(len(audio), b + pad)
        repeat = repeat or (utts[-1].clip == clip.id if utts else False)
        utts.append(Utterance(clip=clip.id, text=clip.text, language=clip.language, speaker=clip.speaker,
                              start=t + (a - lo) / SAMPLE_RATE, end=t + (b - lo) / SAMPLE_RATE, repeat=repeat))
        parts.append(audio[lo:hi])
        t += (hi - lo) / SAMPLE_RATE
        if gaps:
            gap = gaps[k % len(gaps)]
        elif repeat_every and clips is None and (k + 1) % repeat_every == 0:
            gap = 0.8
        else:
            gap = GAPS[k % len(GAPS)]
        n_gap = int(gap * SAMPLE_RATE)
        parts.append(np.zeros(n_gap, dtype=np.float32))
        t += n_gap / SAMPLE_RATE
        k += 1
    audio = np.concatenate(parts).astype(np.float32)
    audio += (rng.standard_normal(len(audio)) * 10 ** (noise_db / 20)).astype(np.float32)
    return Programme(audio=audio, utterances=tuple(utts))


# The failure modes the held-out programme showed that the tuning programme lacked, built from tuning
# clips only: short prompts said again after 0.8 s; prompts that begin like the one before ("The
# conference is now muted." / "... unmuted."), kept in the buffer as context; the LibriVox reader after
# the telephone voice and a long pause (a new speaker's first words); card calls (digits and short words).
# (clip, pause after it in seconds)
HARD_TUNING = (
    ("librivox/0870", 2.0), ("asterisk-en/conf-now-muted", 1.2), ("asterisk-en/conf-now-unmuted", 2.0),
    ("asterisk-en/conf-unmuted", 0.8), ("asterisk-en/conf-unmuted", 3.5), ("cards/001", 5.0),
    ("librivox/0890", 1.2), ("asterisk-en/confbridge-locked", 0.7), ("asterisk-en/confbridge-unlocked", 1.6),
    ("asterisk-en/confbridge-has-left", 2.6), ("asterisk-en/conf-hasleft", 1.2), ("asterisk-en/vm-nomore", 0.8),
    ("asterisk-en/vm-nomore", 4.2), ("librivox/0930", 1.2), ("asterisk-en/confbridge-conf-begin", 0.5),
    ("asterisk-en/confbridge-conf-end", 2.0), ("asterisk-en/please-try-again", 0.8),
    ("asterisk-en/please-try-again", 3.5), ("cards/002", 1.2), ("asterisk-en/confbridge-unmuted", 0.8),
    ("asterisk-en/confbridge-unmuted", 5.0), ("cards/003", 2.0), ("asterisk-en/conf-userswilljoin", 0.7),
    ("asterisk-en/conf-hasjoin", 1.6), ("asterisk-en/agent-loggedoff", 0.8), ("asterisk-en/agent-loggedoff", 2.6),
    ("asterisk-en/agent-loginok", 4.2), ("librivox/0870", 1.2),
)


def tuning_programme(clip_ids: Sequence[str], gaps: Sequence[float]) -> Programme:
    """English LibriVox and prompt clips by id, in order, with these pauses between them: a regression
    programme for decisions, so every clip must be tuning material (held-out clips are for measuring only)."""
    pool = {c.id: c for c in (*librivox(), *prompts("en"))}
    clips = [pool[c] for c in clip_ids]
    assert all(c.split == "tuning" for c in clips)
    return programme(clips=clips, gaps=gaps, minutes=60)


def hard_tuning() -> Programme:
    """The tuning programme of the failure modes above (~2.5 min; tuning clips only)."""
    return tuning_programme([c for c, _ in HARD_TUNING], [g for _, g in HARD_TUNING])


# Speaker changes after long pauses, from tuning recordings only (and two speakers the held-out set never
# uses): what the held-out programme's worst error needed (a reader's sentence after another speaker and a
# 5 s pause, decoded with that speaker's sentence as forced-prefix context) and what the two tuning
# programmes above have only a few of. Every speaker follows every other at pauses of 0.5-5 s; the same
# speaker also goes on after long pauses (where the kept context is the right voice, so a rule that drops
# it must not cost those), and utterances are said again after 0.8 s and after 3 s.
# (clip, pause after it in seconds)
SPEAKER_TUNING = (
    ("asterisk-en/vm-newuser", 5.0), ("librivox/0870", 1.5), ("asterisk-en/conf-waitforleader", 4.0),
    ("librivox/0890", 0.8), ("librivox/0890", 3.0), ("cards/001", 5.0), ("asterisk-en/vm-sorry", 2.5),
    ("librivox/0930", 4.5), ("pocketsphinx/goforward", 3.5), ("asterisk-en/privacy-unident", 0.5),
    ("asterisk-en/vm-savefolder", 4.5), ("asterisk-en/tt-weasels", 1.5), ("tidigits/dhd-2934z", 5.0),
    ("librivox/0870", 4.0), ("librivox/0890", 2.0), ("cards/002", 3.5), ("cards/003", 1.5),
    ("asterisk-en/speed-dial-empty", 0.8), ("asterisk-en/speed-dial-empty", 5.0), ("librivox/0930", 3.0),
    ("librivox/0930", 2.0), ("asterisk-en/vm-mailboxfull", 3.0), ("pocketsphinx/goforward", 0.8),
    ("pocketsphinx/goforward", 4.0), ("cards/001", 2.5), ("librivox/0890", 5.0), ("asterisk-en/ss-noservice", 3.5),
    ("librivox/0870", 1.0), ("tidigits/dhd-2934z", 2.0), ("asterisk-en/conf-onlyone", 4.5), ("cards/002", 5.0),
    ("librivox/0930", 1.5), ("asterisk-en/demo-thanks", 4.0), ("asterisk-en/vm-nobodyavail", 3.0),
    ("librivox/0870", 5.0), ("cards/003", 4.0), ("asterisk-en/pbx-invalid", 2.0), ("librivox/0890", 4.5),
    ("asterisk-en/tt-monkeysintro", 5.0), ("pocketsphinx/goforward", 1.0), ("librivox/0930", 4.0),
    ("librivox/0870", 3.0), ("asterisk-en/agent-incorrect", 1.2),
)


def speaker_tuning() -> Programme:
    """The tuning programme of speaker changes after long pauses (~3.5 min; tuning recordings only)."""
    pool = {c.id: c for c in (*librivox(), *prompts("en"), *pocketsphinx_speakers())}
    clips = [pool[c] for c, _ in SPEAKER_TUNING]
    assert all(c.split == "tuning" for c in clips)
    return programme(clips=clips, gaps=[g for _, g in SPEAKER_TUNING], minutes=60)


def speaker_mix(seed: int, minutes: float = 3.0) -> Programme:
    """A seeded tuning programme of speaker changes after pauses (tuning recordings only), for deciding
    rules on more than one replay: ``programme("tuning", seed=...)`` only reorders the tuning pool, whose
    LibriVox and cards clips (three each) all sit in its first blocks, so its other seeds are one voice.

    Each utterance is drawn from a speaker other than the last one's (the five of ``speaker_tuning``:
    the LibriVox reader, cards, Allison, goforward, TIDIGITS), the reader and the cards speaker as
    often as Allison although they have few clips (so the same sentence recurs after different speakers
    and pauses, which moves how it is decoded); the pause after it is drawn from 0.5-5 s, one in five
    is said again after 0.8 s or 3 s, and one in six continues the same speaker after a long pause.
    Seed 0 is not ``speaker_tuning()``; every seed gives other orders and pauses."""
    rng = np.random.default_rng(1000 + seed)
    by_speaker: dict[str, list[Clip]] = {}
    for c in (*librivox(), *prompts("en"), *pocketsphinx_speakers()):
        if c.split == "tuning":
            by_speaker.setdefault(c.speaker, []).append(c)
    weights = {"librivox-reader": 3.0, "cards": 2.0, "allison-en": 3.0, "goforward": 0.6, "tidigits-dhd": 0.6}
    speakers = sorted(by_speaker)
    clips: list[Clip] = []
    gaps: list[float] = []
    t, last = 1.0, ""
    while t < minutes * 60:
        if clips and rng.random() < 0.2:
            clip = clips[-1]                                   # said again
            gaps[-1] = float(rng.choice([0.8, 3.0]))
        else:
            same = bool(last) and rng.random() < 1 / 6
            names = [s for s in speakers if (s == last) == same] or speakers
            w = np.array([weights[s] for s in names])
            who = str(rng.choice(names, p=w / w.sum()))
            pool = by_speaker[who]
            clip = pool[int(rng.integers(len(pool)))]
            if same:
                gaps[-1] = float(rng.uniform(3.0, 5.0))
            last = who
        clips.append(clip)
        gaps.append(round(float(rng.uniform(0.5, 5.0)), 1))
        a, b = speech_bounds(load(clip.path))
        t += (b - a) / SAMPLE_RATE + 0.1 + gaps[-1]
    assert all(c.split == "tuning" for c in clips)
    return programme(clips=clips, gaps=gaps, minutes=minutes, seed=seed)


# ---------------------------------------------------------------- scoring text

_NUMBERS = {
    "en": "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
          "sixteen seventeen eighteen nineteen twenty",
    "es": "cero uno dos tres cuatro cinco seis siete ocho nueve diez once doce trece catorce quince "
          "dieciseis diecisiete dieciocho diecinueve veinte",
    "fr": "zero un deux trois quatre cinq six sept huit neuf dix onze douze treize quatorze quinze seize "
          "dix-sept dix-huit dix-neuf vingt",
}
_TENS = {"en": "twenty thirty forty fifty sixty seventy eighty ninety"}
_SPELLING = {"mr": "mister", "mrs": "missus", "ok": "okay", "un": "1", "una": "1", "pound": "pound",
             "voicemail": "voice mail", "e-mail": "email", "hashtag": "pound",
             "filename": "file name", "mailbox": "mail box"}
_SYMBOLS = {"en": {"*": " star ", "#": " pound "}}  # the keys a phone prompt names ("press * to ...")


def _strip_accents(text: str) -> str:
    return "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))


def normalise(text: str, language: str = "en") -> str:
    """The form in which transcripts are scored: lower case, no accents or punctuation, numbers as single
    digits.

    Published transcripts and Whisper disagree on spelling that is not an error ("press one" / "press
    1", "Mr." / "mister", "numero" / "número", "*" / "star", "filename" / "file name"); scoring both sides
    in this form counts only real errors. Numbers are scored digit by digit: a digit string and the same
    digits spoken ("29340" / "two nine three four zero", "1234" / "1, 2, 3, 4") are the same words, and
    one wrong digit is one error, not a whole number's. English tens combine with a unit ("twenty nine"
    = "29" = "2 9"); larger number words ("five hundred") are kept as words, on both sides.
    """
    t = _strip_accents(text.lower()).replace("-", " ")
    for symbol, word in _SYMBOLS.get(language, {}).items():
        t = t.replace(symbol, word)
    t = re.sub(r"[^\w' ]+", " ", t).replace("'", "")
    numbers = {w: str(i) for i, w in enumerate(_strip_accents(_NUMBERS.get(language, "")).split())}
    tens = {w: 20 + 10 * i for i, w in enumerate(_TENS.get(language, "").split())}
    out: list[str] = []
    for w in t.split():
        w = _SPELLING.get(w, w) if language == "en" else w
        if out and out[-1] in tens and numbers.get(w, "0") in "123456789":
            out[-1] = str(tens[out[-1]] + int(numbers[w]))  # "twenty nine" -> "29"
            continue
        out.append(w)
    out = [str(tens[w]) if w in tens else numbers.get(w, w) for w in out]
    return " ".join(" ".join(w) if re.fullmatch(r"[0-9]+", w) else w for w in out)


def wer(reference: str, hypothesis: str, language: str = "en") -> float:
    import jiwer

    ref, hyp = normalise(reference, language), normalise(hypothesis, language)
    if not ref:
        return 0.0 if not hyp else 1.0
    return float(jiwer.wer(ref, hyp or "<empty>"))


# ---------------------------------------------------------------- parallel text for translation

def parallel_prompts(src: str, dst: str, split: Split = "heldout", min_words: int = 3) -> list[tuple[str, str]]:
    """(source text, reference translation) pairs: the same Asterisk prompt's published text in two
    languages (the prompt sets were translated from the English one). Held-out by the same name hash."""
    a, b = prompt_texts(src), prompt_texts(dst)
    pairs = []
    for name in sorted(set(a) & set(b)):
        if _split_of(name) != split or len(a[name].split()) < min_words or len(b[name].split()) < 2:
            continue
        pairs.append((a[name], b[name]))
    return pairs


def parallel_messages(dst: str = "pt_BR", domains: Sequence[str] | None = None,
                      limit: int = 200) -> list[tuple[str, str]]:
    """(English, translation) pairs from installed gettext catalogues (/usr/share/locale/LANG/LC_MESSAGES):
    whole sentences only (4+ words, ending in a full stop, no format placeholders). For language pairs
    no speech package covers (EN->PT); these are software messages, not speech, and say so in reports."""
    import gettext

    if domains is None:
        domains = sorted(p.stem for p in Path(f"/usr/share/locale/{dst}/LC_MESSAGES").glob("*.mo"))
    pairs = []
    for domain in domains:
        try:
            cat = gettext.translation(domain, "/usr/share/locale", languages=[dst])
        except OSError:
            continue
        catalog = cat._catalog  # type: ignore[attr-defined]
        for msgid, msgstr in sorted((k, v) for k, v in catalog.items() if isinstance(k, str)):
            if not msgstr or "%" in msgid or "\n" in msgid or "{" in msgid:
                continue
            if len(msgid.split()) >= 4 and msgid.endswith(".") and msgstr.endswith(".") and len(msgid) < 160:
                pairs.append((msgid, msgstr))
    rng = np.random.default_rng(5)
    idx = sorted(rng.permutation(len(pairs))[:limit]) if len(pairs) > limit else range(len(pairs))
    return [pairs[i] for i in idx]
