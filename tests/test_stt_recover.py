"""The stt sidecar degrades and recovers: a pass that raises costs a few seconds of captions, not the rest of
the stream (on the held-out programme a bug in the pause check killed the worker and captions never came
back). Real tiny.en inference on a short programme of real recorded speech (tuning clips only), fed to the
sidecar in process as the runtime does (``publish`` is the runtime's hook); the failures are injected by
wrapping the track's decoder, as tests/test_stt_streaming_errors.py wraps ``rec.decode``."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest

from devkit import realspeech as rs
from sidecast.contract.records import AudioChunk, Cue, Generic, SidecarReport, StreamInfo
from sidecast.sidecars.stt import engine
from sidecast.sidecars.stt import sidecar as stt
from sidecast.sidecars.stt.recognizer import SAMPLE_RATE
from sidecast.sidecars.stt.sidecar import SttSidecar

# A LibriVox sentence, then short prompts of another voice with pauses: 27 s.
CLIPS = ["librivox/0870", "asterisk-en/agent-alreadyon", "asterisk-en/vm-nomore", "asterisk-en/conf-full",
         "asterisk-en/agent-loginok", "asterisk-en/conf-now-muted"]
GAPS = [1.0, 1.2, 1.5, 1.1, 1.3]
FAIL_AT = 11.0  # seconds of audio (mid-sentence): the first pass after this raises


class Boom(RuntimeError):
    pass


@pytest.fixture(scope="module")
def prog() -> rs.Programme:
    return rs.tuning_programme(CLIPS, GAPS)  # tuning clips only


@pytest.fixture(scope="module")
def spec() -> engine.ModelSpec:
    s = engine.resolve_spec(None, "cpu", "int8", 2)
    engine.load_model(s)  # one load for the module
    return s


@dataclass
class Run:
    sidecar: SttSidecar
    cues: list[Cue] = field(default_factory=list)
    reports: list[str] = field(default_factory=list)
    generics: list[Generic] = field(default_factory=list)
    marks: list[float | None] = field(default_factory=list)  # the watermark after each chunk
    failed: list[float] = field(default_factory=list)        # audio seconds of each injected failure

    def finals(self) -> list[Cue]:
        return [c for c in self.cues if c.final and c.track == ""]


def run(prog: rs.Programme, spec: engine.ModelSpec, fails: Callable[[float, int], bool]) -> Run:
    """Stream ``prog`` through a sidecar whose decoder raises where ``fails(audio seconds, failures so
    far)`` says; wait (bounded) for the watermark to cover the audio before the end, as a core would.

    The audio is fed as fast as the worker keeps up (at most 1 s ahead of its last pass), so the passes,
    and where the failures land, are the same on an idle or a loaded machine."""
    sc = SttSidecar(spec=spec, beam_size=3)
    out = Run(sc)
    lock = threading.Lock()

    def on_publish(result: Any) -> None:
        with lock:
            if isinstance(result, Cue):
                out.cues.append(result)
            elif isinstance(result, SidecarReport):
                out.reports.append(result.message)
            elif isinstance(result, Generic):
                out.generics.append(result)

    sc._publish = on_publish  # the runtime's hook
    sc.on_start(StreamInfo(stream_id="t", source_width=0, source_height=0, source_fps=0, segment_duration=2.0))
    step = 1600
    wrapped = False
    for i in range(0, len(prog.audio), step):
        if wrapped:
            t = sc.tracks[0]
            deadline = time.monotonic() + 60  # only stops a hung test
            while behind(t) and not sc._failure and time.monotonic() < deadline:
                time.sleep(0.01)
        try:
            sc.on_audio(AudioChunk(pts=i / SAMPLE_RATE, sample_rate=SAMPLE_RATE, channels=1,
                                   samples=prog.audio[i:i + step]))
        except Exception as exc:  # noqa: BLE001 (the runtime reports a handler's exception to the core)
            on_publish(SidecarReport(f"{type(exc).__name__}: {exc}", fatal=False))
        if not wrapped:  # the decoder itself: a recogniser made after a failure decodes through it too
            d = sc.tracks[0].decoder
            assert d is not None
            inner = d.decode
            rec_of = sc.tracks[0]

            def decode(audio: np.ndarray, *a: Any, _inner: Any = inner, _track: Any = rec_of, **k: Any) -> Any:
                at = _track.recognizer.received_end / SAMPLE_RATE
                if fails(at, len(out.failed)):
                    out.failed.append(at)
                    raise Boom(f"injected decoder failure at {at:.1f} s")
                return _inner(audio, *a, **k)

            d.decode = decode  # type: ignore[method-assign]
            sc.tracks[0].recognizer.decode = decode
            wrapped = True
        out.marks.append(sc.watermark())
    # The core waits for the watermark before it closes a segment: it must come (no timing asserted: a
    # generous bound only stops a hung test).
    end = prog.seconds - 1.0
    deadline = time.monotonic() + 120
    while (sc.watermark() or -1.0) < end and not sc._failure and time.monotonic() < deadline:
        time.sleep(0.05)
    out.marks.append(sc.watermark())
    for r in sc.on_end() or []:
        on_publish(r)
    return out


def behind(t: Any) -> bool:
    """The worker has not caught up with the audio fed to track ``t``: a pass is more than 1 s late, or
    the track's rest is over and it has not started again yet."""
    rec = t.recognizer
    until = getattr(t, "down_until", None)  # (the old sidecar had no rests)
    if until is not None:
        return bool(rec.received_end / SAMPLE_RATE >= until)
    return bool(rec.received_end - rec.pass_end > SAMPLE_RATE)


def said_after(prog: rs.Programme, finals: list[Cue], at: float) -> tuple[str, str]:
    """The reference of the utterances that begin after ``at``, and the captioned words heard there (the
    pauses between utterances are 1 s or more)."""
    later = [u for u in prog.utterances if u.start >= at]
    if not later:
        return "", ""
    cut = later[0].start - 0.5
    return " ".join(u.text for u in later), " ".join(w.text for c in finals for w in c.words if w.start >= cut)


def said_before(prog: rs.Programme, finals: list[Cue], at: float) -> tuple[str, str]:
    """The same for the utterances that end before ``at``."""
    earlier = [u for u in prog.utterances if u.end <= at]
    if not earlier:
        return "", ""
    cut = earlier[-1].end + 0.5
    return " ".join(u.text for u in earlier), " ".join(w.text for c in finals for w in c.words if w.end <= cut)


def assert_well_formed(finals: list[Cue]) -> None:
    ids = [c.id for c in finals]
    assert len(set(ids)) == len(ids), ids
    for a, b in zip(finals, finals[1:], strict=False):
        assert a.start <= b.start and a.end <= b.start + 1e-6, (a, b)  # in order, never overlapping


def test_a_pass_that_raises_once_costs_a_few_seconds_of_captions_not_the_rest(prog: rs.Programme,
                                                                               spec: engine.ModelSpec) -> None:
    r = run(prog, spec, lambda at, n: at >= FAIL_AT and n == 0)
    assert len(r.failed) == 1
    failed_at = r.failed[0]
    finals = r.finals()
    assert_well_formed(finals)
    # The failure is reported (non-fatal: the core's status shows errors and last_error) and counted.
    assert any("failed" in m and "Boom" in m for m in r.reports), r.reports
    # Captions come back: the speech after the failure (all but the few seconds it cost) is captioned.
    after = [c for c in finals if c.start >= failed_at]
    said, heard = said_after(prog, after, failed_at + 3.0)
    assert said and rs.wer(said, heard) <= 0.3, (said, heard)
    stats = [g for g in r.generics if g.kind == "stt_passes"]
    assert stats and stats[-1].data.get("failures") == 1 and stats[-1].data.get("backoffs") == 0, stats[-1:]
    # ... and what came before it stayed.
    before, early = said_before(prog, finals, failed_at - 1.0)
    assert before and rs.wer(before, early) <= 0.3, (before, early)
    # The watermark never stopped: it was never given up (None), only moved on, and covered the audio.
    marks = [m for m in r.marks if m is not None]
    assert len(marks) == len(r.marks) and marks == sorted(marks), r.marks[-5:]
    assert marks[-1] >= prog.seconds - 1.0, marks[-5:]


def test_a_decoder_that_keeps_failing_rests_instead_of_spinning_and_holds_nothing_back(
        prog: rs.Programme, spec: engine.ModelSpec) -> None:
    r = run(prog, spec, lambda at, n: at >= FAIL_AT)
    # FAIL_LIMIT failures within FAIL_WINDOW s of audio, then the track rests for BACKOFF s of audio (longer
    # than what is left of this programme): no more passes are tried.
    assert len(r.failed) == stt.FAIL_LIMIT, r.failed
    assert r.failed[-1] - r.failed[0] < stt.FAIL_WINDOW
    assert any("resting" in m for m in r.reports), r.reports
    stats = [g for g in r.generics if g.kind == "stt_passes"]
    assert stats[-1].data["failures"] == stt.FAIL_LIMIT and stats[-1].data["backoffs"] == 1, stats[-1]
    finals = r.finals()
    assert_well_formed(finals)
    before, early = said_before(prog, finals, r.failed[0] - 1.0)
    assert before and rs.wer(before, early) <= 0.3, (before, early)
    # A resting track holds nothing back: the watermark follows the audio to its end while it rests.
    marks = [m for m in r.marks if m is not None]
    assert len(marks) == len(r.marks) and marks == sorted(marks), r.marks[-5:]
    assert marks[-1] >= prog.seconds - 1.0, marks[-5:]


def test_a_rested_track_captions_again(prog: rs.Programme, spec: engine.ModelSpec,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    # The same three quick failures, with a rest shorter than the programme: after it, captions come back.
    monkeypatch.setattr(stt, "BACKOFF", 3.0)
    r = run(prog, spec, lambda at, n: at >= FAIL_AT and n < stt.FAIL_LIMIT)
    assert len(r.failed) == stt.FAIL_LIMIT
    resumed = r.failed[-1] + 3.0
    finals = r.finals()
    assert_well_formed(finals)
    said, heard = said_after(prog, finals, resumed + 2.0)
    assert said and rs.wer(said, heard) <= 0.3, (said, heard)


def test_a_batch_round_that_fails_fails_its_passes_not_the_shared_scheduler(
        prog: rs.Programme, spec: engine.ModelSpec, monkeypatch: pytest.MonkeyPatch) -> None:
    # Every stream of the process waits on the scheduler's threads (engine.PassBatcher): one that died on a
    # round it could not finish left that pass, and every later pass of every stream, waiting for ever.
    model = engine.load_model(spec)
    b = engine.PassBatcher(model, workers=1)
    d = engine.Decoder(model, engine.DecodeOptions(language=None, beam_size=1), batcher=b)
    audio = prog.audio[int(1.0 * SAMPLE_RATE):int(4.5 * SAMPLE_RATE)]  # "And Mister John Dashwood ..."
    real = engine.decode_batch
    rounds: list[int] = []

    def decode_batch(m: Any, items: Any) -> Any:
        rounds.append(len(items))
        return [] if len(rounds) == 1 else real(m, items)  # a round whose results do not match its passes

    monkeypatch.setattr(engine, "decode_batch", decode_batch)
    failed: list[BaseException] = []

    def first() -> None:
        try:
            d.decode(audio)
        except Exception as exc:  # noqa: BLE001
            failed.append(exc)

    th = threading.Thread(target=first, daemon=True)
    th.start()
    th.join(timeout=120)  # only stops a hung test
    assert not th.is_alive(), "the pass never came back: the scheduler thread died"
    assert len(failed) == 1 and isinstance(failed[0], ValueError), failed
    words = rs.normalise(" ".join(w.text for seg in d.decode(audio) for w in seg.words))
    assert "dashwood" in words, words


def test_a_translation_that_fails_outside_the_engine_skips_one_cue_and_never_holds_the_watermark(
        spec: engine.ModelSpec) -> None:
    # Anything but the engine's own call failing (here the benchmark hook) ended the translation thread and
    # left the cue among the starts the watermark waits for: every later segment waited the decision window.
    from sidecast.sidecars.stt import translation

    route = translation.route(translation.load_engines(), "en", "es")
    assert route is not None, "no installed engine translates en to es: ./dev.sh install installs Debian's apertium-en-es"
    sc = SttSidecar(spec=spec)
    published: list[Any] = []
    sc._publish = published.append
    tr = stt._Translations(routes=[route])
    sc._translations = tr
    calls: list[str] = []

    def hook(target: str, cue: Cue, spent: float) -> None:
        calls.append(cue.id)
        if len(calls) == 1:
            raise Boom("injected failure after the first translation")

    sc.on_translate = hook
    tr.worker = threading.Thread(target=sc._translate_worker, args=(tr,), daemon=True)
    tr.worker.start()
    for k, text in enumerate(["The conference is now locked.", "No more messages."]):
        sc._queue_translation(Cue(start=2.0 * k, end=2.0 * k + 1.5, text=text, final=True, language="en",
                                  track="", words=(), id=f"cc-{k}"))
    tr.todo.put(None)
    tr.worker.join(timeout=120)  # only stops a hung test
    assert not tr.worker.is_alive()
    with tr.lock:
        assert tr.pending == []  # nothing left for the watermark to wait on
    es = [c for c in published if isinstance(c, Cue) and c.track == "es"]
    assert [c.id for c in es] == ["es-cc-0", "es-cc-1"], es  # the second cue was translated too
    assert any(isinstance(r, SidecarReport) and "Boom" in r.message for r in published), published
