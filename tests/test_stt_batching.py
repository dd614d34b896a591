"""The stt pass scheduler (engine.PassBatcher) with the real tiny.en model: passes of several streams in one
batch, grouped so that only compatible passes share a batch, oldest first, and a pass that breaks its batch
fails alone. (The sidecar end to end, 3 real-speech streams over gRPC: tests/test_stt_sidecar.py.)"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from devkit import realspeech as rs
from sidecast.sidecars.stt import engine
from sidecast.sidecars.stt.engine import DecodeOptions, Decoder, PassBatcher, PassInput
from tests.conftest import wait_for

SR = 16_000


@pytest.fixture(scope="module")
def model() -> Iterator[Any]:
    yield engine.load_model(engine.resolve_spec(None, "cpu", "int8", 2))


def clip(name: str) -> tuple[np.ndarray, str]:
    pool = {c.id: c for c in (*rs.librivox(), *rs.prompts("en"))}
    c = pool[name]
    return rs.load(c.path), c.text


def item(decoder: Decoder, seconds: float, prompt: str = "", at: float = 0.0) -> PassInput:
    it = decoder.prepare(np.zeros(int(seconds * SR), dtype=np.float32), prompt)
    it.submitted = at
    return it


def test_only_compatible_passes_share_a_batch_and_the_oldest_goes_first(model: Any) -> None:
    b = PassBatcher(model, min_fill=0.4)
    en = Decoder(model, DecodeOptions(language=None, beam_size=3))
    greedy = Decoder(model, DecodeOptions(language=None, beam_size=1))
    long_prompt = " ".join(["word"] * 40)
    items = [item(en, 8.0, long_prompt, at=5.0), item(en, 6.0, long_prompt, at=1.0),
             item(en, 2.0, long_prompt, at=2.0),          # a quarter of the longest buffer: another batch
             item(en, 7.0, "", at=3.0),                   # no prompt: <|startoftranscript|> elsewhere
             item(en, 7.0, "word word", at=6.0),          # a prompt far shorter than the others'
             item(greedy, 8.0, long_prompt, at=4.0)]      # another beam size
    groups = b.groups(items)
    assert sorted(len(g) for g in groups) == [1, 1, 1, 1, 2]
    assert {id(x) for x in next(g for g in groups if len(g) == 2)} == {id(items[0]), id(items[1])}
    # The batch holding the oldest pass (submitted at 1.0) runs first, then by their oldest pass.
    firsts = [min(x.submitted for x in g) for g in groups]
    assert firsts == sorted(firsts) and firsts[0] == 1.0


def test_a_batch_of_streams_returns_each_stream_its_own_words_and_a_bad_pass_fails_alone(model: Any) -> None:
    b = PassBatcher(model, gather=2.0, workers=1)  # a round waits (up to 2 s) for every stream busy lately
    b.busy_window = 600.0  # "lately" must cover the first round however slow a loaded machine makes it
    speech = [clip("librivox/0870"), clip("librivox/0890"), clip("librivox/0920")]  # 5-7 s: one batch
    decoders = [Decoder(model, DecodeOptions(language=None, beam_size=3), batcher=b) for _ in range(4)]
    results: list[Any] = [None] * 4

    def round_of_four(bad: bool) -> None:
        start = threading.Barrier(4)

        def run(k: int) -> None:
            it = decoders[k].prepare(speech[k % 3][0], "")
            if bad and k == 3:  # malformed audio (two channels): its batch raises, and so does it alone
                it.audio = np.zeros((len(it.audio), 2), dtype=np.float32)
            start.wait()
            try:
                results[k] = b.submit(it)
            except Exception as exc:
                results[k] = exc

        threads = [threading.Thread(target=run, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)

    round_of_four(bad=False)  # the four streams become known as busy
    isolated = engine.batch_stats(model).isolated
    round_of_four(bad=True)
    assert isinstance(results[3], ValueError), results[3]
    for (_, text), segments in zip(speech, results[:3], strict=True):
        said = " ".join(w.text for s in segments for w in s.words)
        assert rs.wer(text, said) <= 0.2, (text, said)
    # The four were one batch, which raised; each pass then ran alone and only the malformed one failed.
    assert engine.batch_stats(model).isolated - isolated == 4
    assert [d.passes for d in decoders] == [2, 2, 2, 1]


def test_two_workers_run_two_batches_side_by_side_and_each_stream_gets_its_own_words(model: Any) -> None:
    # --workers 2 (the default on 2+ cores): the busy streams' passes are split between two batches that
    # run at once on two CTranslate2 replicas; the words are those of one batch or one pass at a time.
    assert engine.model_workers(model) == 2
    b = PassBatcher(model, gather=2.0)
    b.busy_window = 600.0
    speech = [clip("librivox/0870"), clip("librivox/0890"), clip("librivox/0920"), clip("librivox/0930")]
    decoders = [Decoder(model, DecodeOptions(language=None, beam_size=3), batcher=b) for _ in range(4)]
    alone = [Decoder(model, DecodeOptions(language=None, beam_size=3)).decode(a) for a, _ in speech]
    stats = engine.batch_stats(model)
    stats.max_concurrent = 0
    results: list[Any] = [None] * 4
    for _ in range(2):  # the first round makes the four streams known as busy
        for d in decoders:
            d.max_batch = 0  # what round 2 shows: each worker's share of the four
        start = threading.Barrier(4)

        def run(k: int, start: threading.Barrier) -> None:
            it = decoders[k].prepare(speech[k][0], "")
            start.wait()
            results[k] = b.submit(it)

        threads = [threading.Thread(target=run, args=(k, start)) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
    assert stats.max_concurrent == 2, stats.as_dict()
    assert all(d.max_batch == 2 for d in decoders), [d.max_batch for d in decoders]  # 4 streams, 2 workers
    for (_, text), mine, ref in zip(speech, results, alone, strict=True):
        said = " ".join(w.text for s in mine for w in s.words)
        assert said == " ".join(w.text for s in ref for w in s.words) or rs.wer(text, said) <= 0.2, said


def test_the_pace_rises_while_passes_queue_for_a_worker_and_falls_back_when_they_do_not(model: Any) -> None:
    # Load-adaptive pacing: eight streams' passes at once on one worker taking one pass at a time queue
    # behind each other (the model cannot keep up); the scheduler's pace (new audio every stream gathers
    # before its next pass, sidecar.next_pass_end) rises, within its bound. Passes that find the worker
    # free bring it back to zero: latency returns to normal when the load goes.
    b = PassBatcher(model, max_batch=1, gather=0.0, workers=1)
    decoders = [Decoder(model, DecodeOptions(language=None, beam_size=3), batcher=b) for _ in range(8)]
    # What "queued" means is relative to how long a pass takes: on a quick machine eight 5 s passes queue
    # for less than the default 0.25 s on average (0.21 s here on 2026-12-02, and the pace never rose). A wait
    # longer than one pass alone takes is queueing on any machine.
    default_target = b.target_wait
    t0 = time.monotonic()
    decoders[0].decode(np.zeros(5 * SR, dtype=np.float32))
    b.target_wait = time.monotonic() - t0
    b.pace = 0.0
    start = threading.Barrier(8)

    def run(k: int) -> None:
        it = decoders[k].prepare(np.zeros(5 * SR, dtype=np.float32), "")
        start.wait()
        b.submit(it)

    threads = [threading.Thread(target=run, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert 0.0 < b.pace <= b.max_pace and b.wait_avg > b.target_wait, (b.pace, b.wait_avg)
    b.target_wait = default_target  # back down against the scheduler's own bar (a tiny one falls ~0.5x it a pass)
    for _ in range(40):  # one stream alone: no wait
        decoders[0].decode(np.zeros(SR, dtype=np.float32))
        if b.pace == 0.0:
            break
    assert b.pace == 0.0, (b.pace, b.wait_avg)


def test_adaptive_pacing_takes_all_new_audio_and_waits_for_the_pace(model: Any) -> None:
    # The sidecar's pass scheduling: a stream that fell 3.5 s behind decodes up to its newest audio in one
    # pass ("adaptive", the default) instead of a 2 s step that leaves it behind ("fixed": the recogniser's
    # own steps); and with the shared scheduler's pace up, a pass waits for that much more new audio.
    from sidecast.sidecars.stt.sidecar import SttSidecar

    spec = engine.resolve_spec(None, "cpu", "int8", 2)
    for pacing, expected in (("adaptive", 35 * SR // 10), ("fixed", 2 * SR)):
        track = SttSidecar(spec=spec, pacing=pacing)._make_tracks(0)[0]
        track.recognizer.append(np.zeros(35 * SR // 10, dtype=np.float32), 0)
        assert SttSidecar(spec=spec, pacing=pacing).next_pass_end(track) == expected, pacing
    sidecar = SttSidecar(spec=spec, pacing="adaptive")  # the pace is an adaptive-pacing feature (not the default)
    track = sidecar._make_tracks(0)[0]
    assert track.decoder is not None and track.decoder.batcher is not None
    track.decoder.batcher.pace = 1.0
    try:
        track.recognizer.append(np.zeros(12 * SR // 10, dtype=np.float32), 0)
        assert sidecar.next_pass_end(track) is None  # 1.2 s new < min_step 0.5 + pace 1.0
        track.recognizer.append(np.zeros(4 * SR // 10, dtype=np.float32), 12 * SR // 10)
        assert sidecar.next_pass_end(track) == 16 * SR // 10
    finally:
        track.decoder.batcher.pace = 0.0  # the process's shared scheduler: leave it as found


def test_passes_that_waited_long_for_a_worker_still_share_one_batch(model: Any,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    # A round held up (a cold model at start-up, a busy box) made every other stream's pass wait longer than
    # busy_window; those streams then no longer counted as busy, and the scheduler ran the queued passes one
    # per batch, each costing about what a batch of all of them did: the waits grew and never came back down
    # (docs/server.md, "fourteenth session"). A stream with a pass waiting is busy, however long ago it came.
    b = PassBatcher(model, workers=1, gather=0.0)
    b.busy_window = 0.0  # every submission is "long ago" at once: no sleeping to make the passes old
    first_round = threading.Event()
    release = threading.Event()
    sizes: list[int] = []
    real = engine.decode_batch

    def decode_batch(m: Any, items: Any) -> Any:
        sizes.append(len(items))
        if len(sizes) == 1:
            first_round.set()
            assert release.wait(timeout=120)  # only stops a hung test
        return real(m, items)

    monkeypatch.setattr(engine, "decode_batch", decode_batch)
    decoders = [Decoder(model, DecodeOptions(language=None, beam_size=1), batcher=b) for _ in range(7)]
    audio = np.zeros(int(1.5 * SR), dtype=np.float32)
    threads = [threading.Thread(target=decoders[0].decode, args=(audio,), daemon=True)]
    threads[0].start()
    assert first_round.wait(timeout=120)
    for d in decoders[1:]:  # six passes queue while the first round runs
        threads.append(threading.Thread(target=d.decode, args=(audio,), daemon=True))
        threads[-1].start()
    until = time.monotonic() + 120  # only stops a hung test
    while len(b._queue) < 6 and time.monotonic() < until:
        time.sleep(0.01)
    release.set()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads)
    assert sizes == [1, 6], sizes  # the six waiting passes in one batch, not six batches of one
    assert b._active == {}  # every pass answered: nobody is left counted as busy


def test_the_warm_up_runs_every_worker_and_counts_no_passes(model: Any) -> None:
    # Before the sidecar listens (--warm-up on): the first streams' passes must not pay for a cold model.
    stats = engine.batch_stats(model)
    before = (stats.passes, stats.batches, dict(stats.seconds))
    workers: list[str] = []
    real = engine.decode_batch

    def decode_batch(m: Any, items: Any) -> Any:
        workers.append(threading.current_thread().name)
        return real(m, items)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(engine, "decode_batch", decode_batch)
        assert engine.warm_up(model, 2) > 0
    assert sorted(set(workers)) == ["stt-warm-0", "stt-warm-1"]  # side by side: one call per replica at once
    assert (stats.passes, stats.batches, dict(stats.seconds)) == before



def test_a_round_of_unlike_passes_leaves_its_other_batches_to_the_other_worker(model: Any,
                                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    # Passes that cannot share a batch (here: two beam sizes) taken in one round ran one batch after the
    # other on that worker while the other worker had nothing to do. The round runs the batch holding the
    # oldest pass and puts the others back in the queue, first in line for the next idle worker.
    b = PassBatcher(model, workers=2, gather=0.0)
    ran: list[int] = []
    monkeypatch.setattr(engine, "decode_batch", lambda m, items: ran.extend(len(items) * [items[0].decoder.options
                                                                                        .beam_size]) or [[] for _ in items])
    greedy, beam = (Decoder(model, DecodeOptions(language=None, beam_size=k), batcher=b) for k in (1, 3))
    older, newer = item(beam, 1.5, at=1.0), item(greedy, 1.5, at=2.0)
    boxes = [(it, threading.Event(), []) for it in (older, newer)]
    b._queue = list(boxes)
    b._recent = {k: 1e12 for k in range(4)}  # four streams busy: a worker's share is two passes
    b._round([])
    assert ran == [3]  # the batch with the oldest pass, alone
    assert boxes[0][1].is_set() and not boxes[1][1].is_set()
    assert [q[0] for q in b._queue] == [newer]  # the other batch waits for a worker, first in line


def test_a_worker_gathers_the_shares_of_the_workers_idle_beside_it_before_splitting(model: Any,
                                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    # Four busy streams, two workers, both waiting: a worker that left its gather as soon as its own share (two)
    # was queued split those two with the idle worker (one each), and the other two streams' passes, a few
    # milliseconds later, made two more batches of one (the full run's 2, 2, 1, 1 on a loaded box, 2026-12-01).
    # It waits for both workers' shares (up to `gather`), then takes its half.
    b = PassBatcher(model, workers=2, gather=60.0)  # the bound only stops a hung test: four passes end the wait
    ran: list[int] = []
    monkeypatch.setattr(engine, "decode_batch", lambda m, items: ran.append(len(items)) or [[] for _ in items])
    decoders = [Decoder(model, DecodeOptions(language=None, beam_size=3), batcher=b) for _ in range(4)]
    boxes = [(item(d, 1.5, at=float(k)), threading.Event(), []) for k, d in enumerate(decoders)]
    b._queue = list(boxes[:2])
    b._recent = {id(d): 1e12 for d in decoders}  # four streams busy: a worker's share is two passes
    b._idle = 1  # the other worker waits for passes too

    def late() -> None:  # the other two streams' passes, once this worker is gathering
        until = time.monotonic() + 60
        while b._idle < 2 and time.monotonic() < until:
            time.sleep(0.005)
        with b._cond:
            b._queue.extend(boxes[2:])
            b._cond.notify_all()

    t = threading.Thread(target=late, daemon=True)
    t.start()
    b._round([])
    t.join(timeout=60)
    assert ran == [2], ran  # its share of four, not half of the two queued first
    assert [q[0] for q in b._queue] == [boxes[2][0], boxes[3][0]]  # the other worker's share waits for it


def test_a_worker_that_takes_its_share_wakes_the_workers_gathering_beside_it(model: Any,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    # Two workers gathering for four busy streams: the one woken by the last pass took its share and the other,
    # not woken, slept to its gather deadline; by then the first was back for more and the two split what was
    # left: batches of 2, 1, 1 instead of 2, 2, one of them a whole gather late (full runs 2026-12-01).
    b = PassBatcher(model, workers=2, gather=60.0)  # a worker left asleep would wait the whole minute
    ran: list[int] = []
    monkeypatch.setattr(engine, "decode_batch", lambda m, items: ran.append(len(items)) or [[] for _ in items])
    decoders = [Decoder(model, DecodeOptions(language=None, beam_size=3), batcher=b) for _ in range(4)]
    boxes = [(item(d, 1.5, at=float(k)), threading.Event(), []) for k, d in enumerate(decoders)]
    b._recent = {id(d): 1e12 for d in decoders}  # four streams busy: a worker's share is two passes
    workers = [threading.Thread(target=b._round, args=([],), daemon=True) for _ in range(2)]
    for w in workers:
        w.start()

    def waiting(n: int) -> bool:  # threads asleep on the scheduler's condition
        with b._cond:
            return len(b._cond._waiters) == n  # type: ignore[attr-defined]

    wait_for(lambda: waiting(2), 30, "both workers to wait for passes")
    with b._cond:  # the first stream's pass: both workers wake and gather (four wanted)
        b._queue.append(boxes[0])
        b._cond.notify_all()
    wait_for(lambda: waiting(2) and b._idle == 2, 30, "both workers to gather")
    with b._cond:  # the other three at once, with one wake-up, as a submission gives
        b._queue.extend(boxes[1:])
        b._cond.notify()
    for w in workers:
        w.join(timeout=30)
    assert not any(w.is_alive() for w in workers), "a worker slept through the passes left for it"
    assert sorted(ran) == [2, 2] and b._queue == [], (ran, b._queue)
