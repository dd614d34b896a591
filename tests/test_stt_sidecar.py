"""The stt sidecar end to end: a real `sidecast sidecar stt` process, real gRPC over a unix socket, real
faster-whisper (tiny.en) inference on speech synthesised with espeak-ng."""

from __future__ import annotations

import os
import queue
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import jiwer
import numpy as np
import pytest

from devkit import speech as synth
from sidecast.contract import codec, pb2, pb2_grpc
from sidecast.contract.records import Cue
from sidecast.sidecars.stt.shaping import DEFAULT_STYLE
from tests.conftest import wait_healthy

ROOT = Path(__file__).resolve().parents[1]
SIDECAST = Path(sys.executable).with_name("sidecast")

NORMALISE = jiwer.Compose([jiwer.ToLowerCase(), jiwer.RemovePunctuation(), jiwer.RemoveMultipleSpaces(),
                           jiwer.Strip(), jiwer.ReduceToListOfListOfWords()])


def wer(reference: str, hypothesis: str) -> float:
    """Word error rate after lower-casing and removing punctuation; caption line breaks are spaces."""
    return float(jiwer.wer(reference.replace("\n", " "), hypothesis.replace("\n", " "),
                           reference_transform=NORMALISE, hypothesis_transform=NORMALISE))


@pytest.fixture(scope="module")
def stt_address() -> Iterator[str]:
    tmp = tempfile.mkdtemp(prefix="stt-test-")
    sock = f"unix://{tmp}/stt.sock"
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen([str(SIDECAST), "sidecar", "stt", "--listen", sock, "--cpu-threads", "2"],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_healthy(sock, proc, 60.0, "stt sidecar")
        yield sock
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


@dataclass
class Session:
    cues: list[tuple[float, Cue]] = field(default_factory=list)          # (wall time, cue)
    watermarks: list[tuple[float, float]] = field(default_factory=list)  # (wall time, pts)
    errors: list[str] = field(default_factory=list)
    generics: list[Any] = field(default_factory=list)
    lock: threading.Condition = field(default_factory=threading.Condition)

    def finals(self, track: str = "") -> list[Cue]:
        return [c for _, c in self.cues if c.final and c.track == track]

    def watermark(self) -> float:
        with self.lock:
            return self.watermarks[-1][1] if self.watermarks else -1.0


def stream_audio(address: str, audio: np.ndarray | list[tuple[float, np.ndarray]], speed: float = 4.0,
                 wait_watermark: float | None = None, chunk_ms: int = 100,
                 params: dict[str, str] | None = None) -> Session:
    """Send StreamStart, audio chunks paced at ``speed`` x real time and StreamEnd; collect the answers.

    ``audio`` may be a list of (media time, samples) pieces: each piece after the first is announced
    with a Discontinuity, as the core does when a live source drops and comes back.

    With ``wait_watermark``, StreamEnd is only sent once the sidecar's watermark reached that media time
    (or 30 s passed), to observe how the watermark moves while the stream is still live.
    """
    session = Session()
    outbox: queue.Queue[pb2.CoreMessage | None] = queue.Queue()

    def requests() -> Iterator[pb2.CoreMessage]:
        while (msg := outbox.get()) is not None:
            yield msg

    channel = grpc.insecure_channel(address)
    stub = pb2_grpc.SidecarStub(channel)
    responses = stub.Stream(requests(), timeout=180)

    def read() -> None:
        for msg in responses:
            body = msg.WhichOneof("body")
            now = time.monotonic()
            with session.lock:
                if body == "result" and msg.result.WhichOneof("kind") == "cue":
                    session.cues.append((now, codec.result_from_pb(msg.result)))  # type: ignore[arg-type]
                elif body == "result":
                    session.generics.append(codec.result_from_pb(msg.result))
                elif body == "watermark":
                    session.watermarks.append((now, msg.watermark.pts))
                elif body == "error":
                    session.errors.append(msg.error.message)
                session.lock.notify_all()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    outbox.put(pb2.CoreMessage(start=pb2.StreamStart(stream_id="test", segment_duration=2.0, params=params or {})))
    step = int(16000 * chunk_ms / 1000)
    pieces = [(0.0, audio)] if isinstance(audio, np.ndarray) else audio
    t0 = time.monotonic()
    played = 0.0
    for k, (offset, samples) in enumerate(pieces):
        if k:
            outbox.put(pb2.CoreMessage(discontinuity=pb2.Discontinuity(pts=offset)))
        for i in range(0, len(samples), step):
            lag = t0 + (played + i / 16000) / speed - time.monotonic()
            if lag > 0:
                time.sleep(lag)  # pacing the media clock, as a live source does
            outbox.put(pb2.CoreMessage(audio=pb2.AudioChunk(
                pts=offset + i / 16000, sample_rate=16000, channels=1, sample_format=pb2.SAMPLE_FORMAT_F32,
                samples=np.ascontiguousarray(samples[i:i + step], dtype="<f4").tobytes())))
        played += len(samples) / 16000
    if wait_watermark is not None:
        with session.lock:
            session.lock.wait_for(lambda: session.watermarks and session.watermarks[-1][1] >= wait_watermark,
                                  timeout=30)
    outbox.put(pb2.CoreMessage(end=pb2.StreamEnd()))
    outbox.put(None)
    reader.join(timeout=180)
    channel.close()
    assert not reader.is_alive(), "the sidecar did not end the stream"
    return session


def test_stt_describes_itself_as_16khz_mono_audio_only(stt_address: str) -> None:
    with grpc.insecure_channel(stt_address) as channel:
        d = codec.description_from_pb(pb2_grpc.SidecarStub(channel).Describe(
            pb2.DescribeRequest(contract_version=pb2.CONTRACT_VERSION_1), timeout=10))
    assert d.name == "stt"
    assert d.video is None
    assert d.audio is not None and (d.audio.sample_rate, d.audio.channels, d.audio.sample_format) == (16000, 1, "f32")
    assert 1000 <= d.max_latency_ms <= 5000
    # tiny.en captions English only, and says which translations its installed engines add.
    assert d.caption_languages == ("en",)
    assert {"en>es", "en>pt"} <= set(d.translations) and "*>en" not in d.translations


def test_spoken_sentences_become_accurate_broadcast_style_cues(stt_address: str) -> None:
    # Sentences tiny.en gets right offline on this synthetic voice, so the bound measures the streaming.
    chosen = [synth.SENTENCES[i] for i in (6, 1, 7, 3)]
    audio, utterances = synth.programme(chosen, seed=3)
    # Twice real time: fed 8x faster the model falls far behind, and the sidecar's adaptive pacing then
    # decodes each pass up to the newest audio, so whole sentences turn final in one pass with no partial
    # (as they should: showing a partial of audio already decoded to its end would only delay the final).
    session = stream_audio(stt_address, audio, speed=2.0)
    assert not session.errors, session.errors
    finals = session.finals()
    reference = " ".join(u.text for u in utterances)
    hypothesis = " ".join(c.text.replace("\n", " ") for c in finals)
    score = wer(reference, hypothesis)
    assert score <= 0.25, f"WER {score:.2f}: {hypothesis!r}"
    # Partial cues came first (low-latency display), then finals replaced them.
    assert any(not c.final for _, c in session.cues)
    # Broadcast shape: 2 lines of at most 42 characters, no overlaps, ordered, min/max durations.
    for k, c in enumerate(finals):
        lines = c.text.split("\n")
        assert 1 <= len(lines) <= 2 and all(len(ln) <= 42 for ln in lines), c.text
        assert 0.2 <= c.end - c.start <= 7.0, c
        assert c.words
        if c.words[0].start < c.start - 1e-6:
            # A cue starts with its first word, or later only where the cue before it holds the screen:
            # for its minimum time (the next start was not known when it was final: a short sentence
            # tail closed by --max-open, then the next sentence) or to its own last word's end (the
            # recogniser timed the two words overlapping). Then it starts exactly as that one ends.
            prev = finals[k - 1]
            assert k > 0 and abs(c.start - prev.end) < 1e-6, (prev, c)
            assert (prev.end - prev.start <= DEFAULT_STYLE.min_duration + 1e-6
                    or prev.words[-1].end > c.words[0].start), (prev, c)
    for a, b in zip(finals, finals[1:], strict=False):
        assert a.end <= b.start + 1e-6, (a, b)
    # Word timestamps are media times: each sentence's first word starts close to when the voice does.
    starts = [w.start for c in finals for w in c.words]
    for u in utterances:
        nearest = min(abs(t - u.start) for t in starts)
        assert nearest <= 0.4, (u, [(w.text, w.start) for c in finals for w in c.words])
    # The watermark never runs ahead of captions: no final cue arrives that starts before a watermark
    # the sidecar had already sent (the core would have published that segment without it).
    for t_cue, c in session.cues:
        if c.final:
            ahead = [m for t, m in session.watermarks if t < t_cue and m > c.start + 0.05]
            assert not ahead, (c, ahead[:3])
    # The watermark only moves forward and ends past the audio.
    marks = [m for _, m in session.watermarks]
    assert marks == sorted(marks)
    assert marks[-1] >= len(audio) / 16000


def test_noise_and_music_produce_no_cues_and_the_watermark_follows_the_audio(stt_address: str) -> None:
    rng = np.random.default_rng(7)
    audio = np.concatenate([synth.noise(4.0, -30.0, rng), synth.chords(5.0, -12.0),
                            synth.noise(3.0, -45.0, rng)])
    seconds = len(audio) / 16000
    session = stream_audio(stt_address, audio, speed=4.0, wait_watermark=seconds - 1.0)
    assert not session.errors, session.errors
    assert [c.text for _, c in session.cues] == []
    # Nothing to caption, so nothing to wait for: the watermark kept up with the audio while live.
    live = [m for _, m in session.watermarks if m < 1e5]
    assert live and live[-1] >= seconds - 1.0, live[-5:]


def test_audio_that_stops_coming_does_not_hold_the_captions_it_already_carried(stt_address: str) -> None:
    # A file run: the core reads faster than real time, then stops reading while its caption output waits
    # for these captions. 11.5 s of real speech (two LibriVox readers) arrive in a burst and then nothing,
    # without StreamEnd: the held words the passes heard with 2 s of audio after them are committed, and
    # the watermark moves on, instead of waiting for a second pass that needs audio that will not come
    # (the core's 10 s stall timeout, then captions too late for their segments).
    from devkit import realspeech as rs

    prog = rs.tuning_programme(["librivox/0870", "librivox/0890"], [1.0, 0.3])
    cut = 11.5
    session = stream_audio(stt_address, prog.audio[: int(cut * 16000)], speed=1000.0, wait_watermark=cut - 5.0)
    assert not session.errors, session.errors
    reached = [(t, m) for t, m in session.watermarks if cut - 5.0 <= m < 1e5]
    assert reached, [m for _, m in session.watermarks][-5:]
    # ... and the captions behind it, sent before StreamEnd, were right (And Mister John Dashwood ...)
    t_reached, mark = reached[0]
    early = [w.text for t, c in session.cues if c.final and t <= t_reached for w in c.words if w.end <= mark]
    said = prog.reference.split()[: len(early)]
    assert len(early) >= 12 and rs.wer(" ".join(said), " ".join(early)) <= 0.1, early


def test_an_hour_later_after_a_discontinuity_cue_times_follow_the_new_clock(stt_address: str) -> None:
    first, u1 = synth.programme([synth.SENTENCES[6]], seed=4)
    second, u2 = synth.programme([synth.SENTENCES[1]], seed=5)
    later = 3600.0 + 1 / 3  # an hour on, at an awkward fraction of a second
    session = stream_audio(stt_address, [(0.0, first), (later, second)], speed=8.0)
    assert not session.errors, session.errors
    finals = session.finals()
    before = [c for c in finals if c.end <= len(first) / 16000 + 0.5]
    after = [c for c in finals if c.start >= later]
    assert len(before) + len(after) == len(finals), [(c.start, c.text) for c in finals]
    assert wer(u1[0].text, " ".join(c.text for c in before)) <= 0.25
    assert wer(u2[0].text, " ".join(c.text for c in after)) <= 0.25
    # Sample-exact clocks: the onset is where it was spoken, on the new clock, to within VAD precision.
    assert abs(after[0].words[0].start - (later + u2[0].start)) <= 0.4, after[0]
    marks = [m for _, m in session.watermarks]
    assert marks == sorted(marks)


def test_bad_model_path_is_one_clear_error(tmp_path: Path) -> None:
    r = subprocess.run([str(SIDECAST), "sidecar", "stt", "--listen", f"unix://{tmp_path}/x.sock",
                        "--model", str(tmp_path / "nope")], capture_output=True, text=True, timeout=60)
    assert r.returncode != 0
    err = r.stderr.strip().splitlines()
    assert len(err) == 1 and "--model" in err[0] and "not a directory" in err[0], r.stderr
    assert "Traceback" not in r.stderr


def test_translate_with_an_english_only_model_is_refused(tmp_path: Path) -> None:
    r = subprocess.run([str(SIDECAST), "sidecar", "stt", "--listen", f"unix://{tmp_path}/x.sock", "--translate"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode != 0
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "--translate" in lines[0] and "multilingual" in lines[0], r.stderr


def test_real_speech_gets_translated_tracks_with_the_source_cue_timing(stt_address: str) -> None:
    from devkit import realspeech as rs

    pool = {c.id: c for c in rs.prompts("en")}
    prog = rs.programme(clips=[pool["asterisk-en/conf-full"], pool["asterisk-en/all-circuits-busy-now"]])
    session = stream_audio(stt_address, prog.audio, speed=8.0, params={"captions.translate": "es,pt"})
    assert not session.errors, session.errors
    source = session.finals()
    assert rs.wer(prog.reference, " ".join(c.text for c in source)) <= 0.2, source
    timing = {(c.start, c.end) for c in source}
    for tag in ("es", "pt"):
        cues = session.finals(tag)
        assert len(cues) == len(source), (tag, cues)
        assert {(c.start, c.end) for c in cues} == timing  # same start and end as the source cues
        assert all(c.language == tag and c.text.strip() for c in cues)
        assert all(len(line) <= 42 for c in cues for line in c.text.split("\n"))
    spanish = " ".join(c.text for c in session.finals("es")).lower()
    portuguese = " ".join(c.text for c in session.finals("pt")).lower()
    assert "conferencia" in spanish and "circuitos" in spanish, spanish
    assert "conferência" in portuguese or "conferencia" in portuguese, portuguese


def test_a_translation_no_engine_can_do_is_reported_and_the_captions_go_on(stt_address: str) -> None:
    from devkit import realspeech as rs

    pool = {c.id: c for c in rs.prompts("en")}
    prog = rs.programme(clips=[pool["asterisk-en/conf-full"]])
    session = stream_audio(stt_address, prog.audio, speed=8.0, params={"captions.translate": "ja"})
    assert any("ja" in e and "no installed engine" in e for e in session.errors), session.errors
    assert session.finals() and not session.finals("ja")


def test_concurrent_streams_share_batched_passes_and_each_gets_its_own_words(stt_address: str) -> None:
    # Three streams of different real speech at once through the one sidecar process (one model): their
    # decoder passes run in shared batches (engine.PassBatcher), and each stream's captions are its own
    # speech: every stream matches its transcript and none carries a word only another stream said.
    from devkit import realspeech as rs
    from sidecast.contract.records import Generic

    pool = {c.id: c for c in (*rs.librivox(), *rs.prompts("en"))}
    clips = [["librivox/0870", "librivox/0930"],
             ["asterisk-en/conf-getconfno", "asterisk-en/speed-dial-empty"],
             ["asterisk-en/followme/pls-hold-while-try", "asterisk-en/vm-nonumber"]]
    progs = [rs.programme(clips=[pool[c] for c in cs], gaps=[0.8]) for cs in clips]
    sessions: list[Session | None] = [None] * len(progs)
    start = threading.Barrier(len(progs))

    def run(k: int) -> None:
        start.wait()
        # twice real time: fed faster, a loaded machine lets each stream's adaptive pacing (one pass up to
        # the newest audio) decode a 13 s programme in ~3 passes, too few to meet another stream's in a batch
        sessions[k] = stream_audio(stt_address, progs[k].audio, speed=2.0)

    threads = [threading.Thread(target=run, args=(k,)) for k in range(len(progs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=240)
    texts = []
    for prog, session in zip(progs, sessions, strict=True):
        assert session is not None and not session.errors, session and session.errors
        text = " ".join(c.text.replace("\n", " ") for c in session.finals())
        assert rs.wer(prog.reference, text) <= 0.25, (prog.reference, text)
        texts.append(set(rs.normalise(text).split()))
    refs = [set(rs.normalise(p.reference).split()) for p in progs]
    for k, said in enumerate(texts):
        others = set().union(*(r for j, r in enumerate(refs) if j != k)) - refs[k]
        foreign = {w for w in said & others if len(w) >= 4}
        assert not foreign, f"stream {k} captioned words of another stream: {foreign}"
    stats = [[g for g in s.generics if isinstance(g, Generic) and g.kind == "stt_passes"][-1]
             for s in sessions if s is not None]
    assert all(g.data["batch"] for g in stats)
    # Each stream reports the latency of its words as final cues (what a viewer waits on), one figure per
    # word of a final cue published while audio was flowing: never more than the words its final cues hold.
    # Counted as the recogniser's words the cues carry, not the words of their text: a hyphenated compound is
    # two words joined in the text ("cold" "-hearted"; CI once saw 18 lags for 17 words of text).
    for s in sessions:
        assert s is not None
        cue_lags = [x for g in s.generics if isinstance(g, Generic) and g.kind == "stt_passes"
                    for x in g.data["cue_lag_s"]]
        words = sum(len(c.words) for c in s.finals())
        assert words >= sum(len(c.text.split()) for c in s.finals())
        assert 0 < len(cue_lags) <= words, (len(cue_lags), words, cue_lags)
    # Passes of different streams shared batches. The sidecar runs its default two model workers here (as
    # users run it), so a stream's pass can find a worker free and run alone: not every stream is promised
    # a shared batch (CI saw one stream without), but at least two streams met in one.
    shared = [g for g in stats if g.data["stream"]["batched_passes"] >= 1 and g.data["stream"]["max_batch"] >= 2]
    assert len(shared) >= 2, stats
    model = max((g.data["model"] for g in stats), key=lambda m: m["passes"])
    assert model["batched_passes"] >= 3 and model["batches"] < model["passes"], model
