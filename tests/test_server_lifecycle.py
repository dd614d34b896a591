"""The stream lifecycle (core/server/lifecycle.py) as a pure state machine: named scenarios, then properties
over arbitrary sequences of events (hypothesis), which is where the rules meet each other."""

from __future__ import annotations

import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from sidecast.core.server import lifecycle as L

POLICY = L.Policy(reconnect_window=30.0, backoff_base=1.0, backoff_max=60.0)


class Machine:
    """Drives the lifecycle like the supervisor does, and records what it was asked to do."""

    def __init__(self, ingest: L.Ingest) -> None:
        self.life = L.Life(ingest)
        self.now = 1000.0
        self.ids = (f"ev{i}" for i in itertools.count(1))
        self.actions: list[L.Action] = []

    def __call__(self, ev: L.Event, dt: float = 0.0) -> list[L.Action]:
        self.now += dt
        self.life, acts = L.transition(self.life, ev, self.now, POLICY, lambda: next(self.ids))
        self.actions += acts
        return acts

    def kinds(self) -> list[str]:
        return [type(a).__name__ for a in self.actions]


def test_push_stream_goes_live_then_ends_after_the_reconnect_window() -> None:
    m = Machine("push")
    m(L.Start())
    assert m.life.state == "idle"
    acts = m(L.Publish())
    assert acts == [L.OpenEvent("ev1"), L.Spawn("ev1", 1)]
    m(L.Live())
    assert m.life.state == "live" and L.Notify("stream.started", "ev1") in m.actions
    m(L.WorkerExit(ok=True))          # the publisher went away
    assert m.life.state == "reconnecting" and m.life.window_until == m.now + 30
    m(L.Tick(), dt=29)
    assert m.life.state == "reconnecting"
    acts = m(L.Tick(), dt=2)
    assert acts == [L.CloseEvent("ev1", True), L.Notify("stream.ended", "ev1")]
    assert m.life.state == "idle" and m.life.event is None


def test_a_publisher_back_within_the_window_continues_the_event_as_a_new_attempt() -> None:
    m = Machine("push")
    m(L.Start())
    m(L.Publish())
    m(L.Live())
    m(L.WorkerExit(ok=True))
    acts = m(L.Publish(), dt=5)
    assert acts == [L.Spawn("ev1", 2)]   # same event, attempt 2: its segments follow a discontinuity
    m(L.Live())
    assert m.kinds().count("Notify") == 1   # started once per event, not per attempt


def test_the_next_publish_after_the_window_is_a_new_event() -> None:
    m = Machine("push")
    m(L.Start())
    m(L.Publish())
    m(L.Live())
    m(L.WorkerExit(ok=True))
    m(L.Tick(), dt=31)
    acts = m(L.Publish(), dt=1)
    assert acts == [L.OpenEvent("ev2"), L.Spawn("ev2", 1)]


def test_a_crashed_pull_worker_restarts_with_backoff_inside_the_same_event() -> None:
    m = Machine("pull")
    m(L.Start())
    m(L.Live())
    m(L.WorkerExit(ok=False, error="worker killed by SIGKILL"))
    assert m.life.state == "reconnecting" and m.life.retry_at == m.now + 1
    assert L.Notify("stream.failed", "ev1", "worker killed by SIGKILL") in m.actions
    assert m(L.Tick(), dt=0.5) == []
    assert m(L.Tick(), dt=0.6) == [L.Spawn("ev1", 2)]


def test_a_camera_that_never_answers_is_retried_with_growing_backoff_and_one_failure_notice() -> None:
    m = Machine("pull")
    m(L.Start())
    delays = []
    for _ in range(8):
        m(L.WorkerExit(ok=False, error="cannot open 'rtsp://cam/x': Connection refused"))
        assert m.life.state == "retrying" and m.life.event is None
        assert m.life.retry_at is not None
        delays.append(m.life.retry_at - m.now)
        m(L.Tick(), dt=delays[-1])
        assert m.life.state == "starting"
    assert delays == [1, 2, 4, 8, 16, 32, 60, 60]
    assert [a for a in m.actions if isinstance(a, L.Notify)] == [
        L.Notify("stream.failed", "ev1", "cannot open 'rtsp://cam/x': Connection refused")]
    # every failed attempt opened and discarded an empty event: none of them went live
    assert all(not a.live for a in m.actions if isinstance(a, L.CloseEvent))


def test_a_configuration_error_stops_retrying_until_the_operator_acts() -> None:
    m = Machine("pull")
    m(L.Start())
    m(L.WorkerExit(ok=False, error="bad ladder", config=True))
    assert m.life.state == "failed"
    assert m(L.Tick(), dt=3600) == []
    acts = m(L.Start())
    assert [type(a) for a in acts] == [L.OpenEvent, L.Spawn]


def test_stop_while_live_closes_the_event_only_after_the_worker_has_exited() -> None:
    m = Machine("push")
    m(L.Start())
    m(L.Publish())
    m(L.Live())
    acts = m(L.Stop())
    assert acts == [L.Kill("stopped")]          # it may still be writing: no ENDLIST yet
    acts = m(L.WorkerExit(ok=True))
    assert acts == [L.CloseEvent("ev1", True), L.Notify("stream.ended", "ev1")]
    assert m.life.state == "stopped"
    assert m(L.Publish()) == [L.Refuse("this stream is stopped")]


def test_full_disk_pauses_and_space_resumes() -> None:
    m = Machine("pull")
    m(L.Start())
    m(L.Live())
    assert m(L.DiskFull()) == [L.Kill("storage full")]
    m(L.WorkerExit(ok=True))
    assert m.life.state == "paused" and m.life.event == "ev1"
    assert m(L.Tick(), dt=5) == []
    acts = m(L.DiskOk(), dt=1)
    assert acts == [L.Spawn("ev1", 2)]       # back within the window: the same event continues


def test_full_disk_longer_than_the_window_ends_the_event_while_paused() -> None:
    m = Machine("push")
    m(L.Start())
    m(L.Publish())
    m(L.Live())
    m(L.DiskFull())
    m(L.WorkerExit(ok=True))
    acts = m(L.Tick(), dt=31)
    assert acts == [L.CloseEvent("ev1", True), L.Notify("stream.ended", "ev1")]
    assert m.life.state == "paused"
    assert m(L.Publish()) == [L.Refuse("the server's storage is full")]
    m(L.DiskOk())
    assert m.life.state == "idle"


def test_a_second_publisher_waits_for_the_first_worker_to_end() -> None:
    m = Machine("push")
    m(L.Start())
    m(L.Publish())
    m(L.Live())
    assert m(L.Publish()) == []          # replace: the server closes the old session
    assert m.life.rerun
    assert m(L.WorkerExit(ok=True)) == [L.Spawn("ev1", 2)]


def test_a_push_event_that_never_went_live_ends_when_the_disk_recovers() -> None:
    """Found by the property below: a publisher, a full disk before the first segment, the worker's exit,
    space again: the stream is idle, and the event that never went live is closed (not left open)."""
    m = Machine("push")
    m(L.Start())
    m(L.Publish())
    m(L.DiskFull())
    m(L.WorkerExit(ok=True))
    assert m(L.DiskOk()) == [L.CloseEvent("ev1", False)]
    assert m.life.state == "idle" and m.life.event is None


# ------------------------------------------------------------------------------ properties

EVENTS = st.sampled_from([L.Start(), L.Stop(), L.Publish(), L.Live(), L.WorkerExit(ok=True),
                          L.WorkerExit(ok=False, error="boom"), L.WorkerExit(ok=False, error="cfg", config=True),
                          L.Tick(), L.DiskFull(), L.DiskOk()])


@settings(max_examples=1500, deadline=None)
@given(ingest=st.sampled_from(["push", "pull"]),
       steps=st.lists(st.tuples(EVENTS, st.floats(0, 100)), max_size=60))
def test_lifecycle_invariants_hold_for_any_sequence(ingest: L.Ingest, steps: list[tuple[L.Event, float]]) -> None:
    m = Machine(ingest)
    running = False
    opened: list[str] = []
    closed: list[str] = []
    for ev, dt in steps:
        if isinstance(ev, L.WorkerExit | L.Live) and not running:
            continue  # the supervisor only reports these for a worker it started
        acts = m(ev, dt)
        if isinstance(ev, L.WorkerExit):
            running = False  # it has exited: what the exit starts is a new worker
        for a in acts:
            if isinstance(a, L.Spawn):
                assert not running, "two workers for one stream"
                assert a.event in opened and a.event not in closed, "a worker for an event that is not open"
                running = True
            elif isinstance(a, L.OpenEvent):
                assert a.event not in opened, "an event id was reused"
                opened.append(a.event)
            elif isinstance(a, L.CloseEvent):
                assert a.event in opened and a.event not in closed, "an event closed twice"
                assert not running or m.life.closing is None, "closed while its worker may still write"
                closed.append(a.event)
        life = m.life
        assert life.worker == running
        assert life.state in L.STATES
        if life.state == "live":
            assert running and life.event is not None and life.event_live
        if life.state in ("idle", "retrying", "stopped", "failed") and not running:
            assert life.event is None, f"{life.state} with an open event"
        if life.state == "stopped":
            assert not life.enabled
        if not life.enabled:
            assert not any(isinstance(a, L.Spawn) for a in acts), "a stopped stream started a worker"
        if life.disk_full:
            assert not any(isinstance(a, L.Spawn) for a in acts), "a worker started on a full disk"
    # every event that was opened is closed once nothing runs and the stream is stopped
    m(L.Stop())
    if running:
        m(L.WorkerExit(ok=True))
    closed_all = [a.event for a in m.actions if isinstance(a, L.CloseEvent)]
    assert sorted(closed_all) == sorted(opened)
