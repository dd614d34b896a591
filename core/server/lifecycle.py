"""A stream's lifecycle as a pure state machine: ``transition(life, event, now) -> (life, actions)``.

States::

    stopped ──start──► idle (push: waiting for a publisher)     ┌──────────── crash / publisher gone ───┐
                        │ publish                              │                                        ▼
    pull: start ──────► starting ──first segment──► live ──────┘                              reconnecting
                        ▲   (worker runs)                                                  (window running)
                        │                                                       back in time │   │ window over:
                        └──────────────────── publish / retry due ────────────────────────────┘   ▼ ENDLIST, archive
                                                                                    push: idle · pull: retrying
    failed: the stream's configuration cannot work (only an update or a start clears it)
    paused: the storage is full; writes are stopped until space returns

An **event** is one broadcast: it opens when a worker is started with no event open and closes (ENDLIST, VOD
archive, ``stream.ended``) when the publisher or source has been gone longer than the reconnect window, or
when the stream is stopped. Within an event, every worker run is an **attempt**: a crash, a publisher that
reconnects or a source that comes back starts a new attempt whose segments continue the event's playlists
after an EXT-X-DISCONTINUITY. Attempts and events have their own storage prefixes, so no segment name is
ever reused (immutable caching depends on it).

Pure: no clock, no processes, no I/O; the supervisor feeds it events and carries out the actions. That is
what lets the rules be property-tested over arbitrary event sequences (tests/test_server_lifecycle.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Literal

State = Literal["stopped", "idle", "starting", "live", "reconnecting", "retrying", "failed", "paused"]
STATES: tuple[State, ...] = ("stopped", "idle", "starting", "live", "reconnecting", "retrying", "failed", "paused")
Ingest = Literal["push", "pull"]


@dataclass(frozen=True)
class Policy:
    """Timing rules of one stream."""

    reconnect_window: float = 30.0  # seconds an event waits for its publisher or source to come back
    backoff_base: float = 1.0       # first retry after a failure; doubles with each failure in a row
    backoff_max: float = 60.0

    def backoff(self, failures: int) -> float:
        return float(min(self.backoff_max, self.backoff_base * 2 ** max(0, min(failures - 1, 30))))


@dataclass(frozen=True)
class Life:
    """Everything the lifecycle knows of one stream."""

    ingest: Ingest
    state: State = "stopped"
    enabled: bool = False
    event: str | None = None          # the open event
    event_live: bool = False          # the open event has published at least one segment
    attempt: int = 0                  # attempts started in the open event
    worker: bool = False              # a worker runs (or is being started, or asked to stop)
    rerun: bool = False               # start a new attempt as soon as the running worker has ended
    failures: int = 0                 # failed attempts in a row (backoff exponent)
    window_until: float | None = None  # the open event ends then, unless media flows again
    retry_at: float | None = None     # pull: the next attempt starts then
    last_error: str | None = None
    disk_full: bool = False
    closing: tuple[str, bool] | None = None  # (event, live) ended while its worker still runs: closed at exit
    since: float = 0.0                # when ``state`` was entered


# ---------------------------------------------------------------------------------------- events in

@dataclass(frozen=True)
class Start:
    """The operator enables the stream (also on server start for enabled streams)."""


@dataclass(frozen=True)
class Stop:
    """The operator disables (or deletes) the stream."""


@dataclass(frozen=True)
class Publish:
    """An authenticated push session arrived for this stream."""


@dataclass(frozen=True)
class Live:
    """The running attempt published a segment."""


@dataclass(frozen=True)
class WorkerExit:
    """The worker ended: ``ok`` when its source ended normally; ``config`` when its configuration cannot work."""

    ok: bool
    error: str | None = None
    config: bool = False


@dataclass(frozen=True)
class Tick:
    """Time passed: deadlines (reconnect window, retry backoff) are checked."""


@dataclass(frozen=True)
class DiskFull:
    pass


@dataclass(frozen=True)
class DiskOk:
    pass


Event = Start | Stop | Publish | Live | WorkerExit | Tick | DiskFull | DiskOk


# ---------------------------------------------------------------------------------------- actions out

@dataclass(frozen=True)
class OpenEvent:
    event: str


@dataclass(frozen=True)
class Spawn:
    """Start a worker for attempt ``attempt`` of ``event`` (``attempt > 1``: continue after a discontinuity)."""

    event: str
    attempt: int


@dataclass(frozen=True)
class Kill:
    """Stop the running worker (it finishes its segment if it can)."""

    reason: str


@dataclass(frozen=True)
class CloseEvent:
    """End ``event``: ``live`` ones get ENDLIST and their archive; one that never went live is discarded."""

    event: str
    live: bool


@dataclass(frozen=True)
class Notify:
    """A webhook event: ``stream.started``, ``stream.ended`` or ``stream.failed``."""

    type: str
    event: str | None
    error: str | None = None


@dataclass(frozen=True)
class Refuse:
    """Turn the push session away, with a reason the publisher can be told."""

    reason: str


Action = OpenEvent | Spawn | Kill | CloseEvent | Notify | Refuse


def next_deadline(life: Life) -> float | None:
    """When ``Tick`` next has something to do (None: nothing is scheduled)."""
    times = [t for t in (life.window_until, life.retry_at) if t is not None]
    return min(times) if times else None


# ---------------------------------------------------------------------------------------- the machine

def transition(life: Life, ev: Event, now: float, policy: Policy,
               new_event_id: Callable[[], str]) -> tuple[Life, list[Action]]:
    """The lifecycle's one rule book (see the module docstring)."""
    acts: list[Action] = []

    def enter(lf: Life, state: State, **changes: object) -> Life:
        return replace(lf, state=state, since=now if state != lf.state else lf.since, **changes)  # type: ignore[arg-type]

    def spawn(lf: Life) -> Life:
        if lf.event is None:
            eid = new_event_id()
            acts.append(OpenEvent(eid))
            lf = replace(lf, event=eid, event_live=False, attempt=0)
        event = lf.event
        assert event is not None
        lf = replace(lf, attempt=lf.attempt + 1, worker=True, retry_at=None, rerun=False)
        acts.append(Spawn(event, lf.attempt))
        return enter(lf, "starting")

    def close(lf: Life) -> Life:
        """End the open event; while its worker still runs (it may be writing), only once it has exited."""
        event = lf.event
        if event is not None:
            if lf.worker:
                lf = replace(lf, closing=(event, lf.event_live))
            else:
                acts.append(CloseEvent(event, lf.event_live))
                if lf.event_live:
                    acts.append(Notify("stream.ended", event))
        return replace(lf, event=None, event_live=False, attempt=0, window_until=None)

    def flush_closing(lf: Life) -> Life:
        if lf.closing is not None:
            event, live = lf.closing
            acts.append(CloseEvent(event, live))
            if live:
                acts.append(Notify("stream.ended", event))
        return replace(lf, closing=None)

    def after_worker(lf: Life) -> Life:
        """No worker runs any more: where the stream goes from here."""
        if lf.disk_full:
            if lf.event is not None and lf.event_live and lf.window_until is None:
                lf = replace(lf, window_until=now + policy.reconnect_window)
            return enter(lf, "paused")
        if lf.ingest == "push":
            if lf.event is not None and lf.event_live:
                return enter(lf, "reconnecting", window_until=lf.window_until or now + policy.reconnect_window)
            return enter(close(lf), "idle")
        retry = now + policy.backoff(max(1, lf.failures))
        if lf.event is not None and lf.event_live:
            return enter(lf, "reconnecting", retry_at=retry,
                         window_until=lf.window_until or now + policy.reconnect_window)
        return enter(close(lf), "retrying", retry_at=retry)

    if isinstance(ev, Start):
        if life.enabled and life.state != "failed":
            return life, []
        life = replace(life, enabled=True, failures=0, last_error=None if life.state == "failed" else life.last_error)
        if life.worker:  # a stop is still draining: start again once it has ended
            return enter(replace(life, rerun=True), "starting"), []
        if life.disk_full:
            return enter(life, "paused"), []
        if life.ingest == "pull":
            return spawn(life), acts
        return enter(life, "idle"), []

    if isinstance(ev, Stop):
        if life.worker:
            acts.append(Kill("stopped"))
        life = close(life)
        return enter(life, "stopped", enabled=False, retry_at=None, rerun=False), acts

    if isinstance(ev, Publish):
        if life.ingest != "push":
            return life, [Refuse("this stream pulls its source; it takes no publisher")]
        if not life.enabled:
            return life, [Refuse("this stream is stopped")]
        if life.disk_full:
            return life, [Refuse("the server's storage is full")]
        if life.worker:
            # the previous session is being replaced; its worker ends at its end of input
            return replace(life, rerun=True), []
        return spawn(life), acts

    if isinstance(ev, Live):
        if not life.worker or life.state != "starting" or life.event is None or life.closing is not None:
            return life, []  # (a worker being stopped may still report its first segment: it does not count)
        if not life.event_live:
            acts.append(Notify("stream.started", life.event))
        return enter(life, "live", event_live=True, failures=0, window_until=None, retry_at=None,
                     last_error=None), acts

    if isinstance(ev, WorkerExit):
        if not life.worker:
            return life, []
        was = life.state
        life = flush_closing(replace(life, worker=False, last_error=ev.error if ev.error else life.last_error))
        if not life.enabled:
            return enter(life, "stopped"), acts
        if life.rerun and not life.disk_full:
            return spawn(life), acts
        if ev.config:
            acts.append(Notify("stream.failed", life.event, ev.error))
            return enter(close(life), "failed", failures=life.failures + 1, retry_at=None), acts
        failed = not ev.ok or was == "starting"
        if failed and not life.disk_full:
            life = replace(life, failures=life.failures + 1)
            if life.failures == 1 or was == "live":
                acts.append(Notify("stream.failed", life.event, life.last_error or "the stream stopped"))
        elif ev.ok and life.ingest == "pull" and not life.disk_full:
            # the source ended, or stayed away longer than the pipeline's own reconnect timeout
            life = replace(life, failures=max(1, life.failures))
            return after_worker(close(life)), acts
        return after_worker(life), acts

    if isinstance(ev, Tick):
        if life.window_until is not None and now >= life.window_until and life.state in (
                "reconnecting", "starting", "paused"):
            if life.worker:  # the new attempt did not go live in time: this event is over
                acts.append(Kill("reconnect window over"))
                return replace(close(life), rerun=False), acts
            life = close(life)
            if life.state == "paused":
                return life, acts
            if life.ingest == "push":
                return enter(life, "idle"), acts
            return enter(life, "retrying", retry_at=life.retry_at or now), acts
        if (life.ingest == "pull" and life.enabled and not life.worker and not life.disk_full
                and life.retry_at is not None and now >= life.retry_at and life.state in ("retrying", "reconnecting")):
            return spawn(life), acts
        return life, []

    if isinstance(ev, DiskFull):
        if life.disk_full:
            return life, []
        life = replace(life, disk_full=True)
        if life.worker:
            acts.append(Kill("storage full"))
        if not life.enabled:
            return life, acts
        if life.state in ("idle", "retrying", "reconnecting", "live", "starting"):
            if life.event is not None and life.event_live and life.window_until is None:
                life = replace(life, window_until=now + policy.reconnect_window)
            return enter(life, "paused", retry_at=None), acts
        return life, acts

    if isinstance(ev, DiskOk):
        if not life.disk_full:
            return life, []
        life = replace(life, disk_full=False)
        if life.state != "paused" or life.worker:
            return life, []
        if life.ingest == "push":
            if life.event is not None and life.event_live:
                return enter(life, "reconnecting"), []
            return enter(close(life), "idle"), acts  # an event that never went live ends here
        if life.event is not None and life.event_live:
            return spawn(life), acts
        return spawn(close(life)), acts

    raise TypeError(f"not a lifecycle event: {ev!r}")


__all__ = ["Action", "CloseEvent", "DiskFull", "DiskOk", "Event", "Ingest", "Kill", "Life", "Live", "Notify",
           "OpenEvent", "Policy", "Publish", "Refuse", "STATES", "Spawn", "Start", "State", "Stop", "Tick",
           "WorkerExit", "next_deadline", "transition"]
