"""Stop signals that the main thread cannot miss, for the long-running commands (``sidecast server``, and
``sidecast run --serve`` once its stream has ended)."""

from __future__ import annotations

import signal
import socket


class StopSignals:
    """SIGTERM and SIGINT as a stop request that the main thread cannot miss.

    Python runs signal handlers in the main thread only, when that thread next runs. The kernel may hand a
    signal sent to the process to *any* of its threads (it passes over a main thread that already has a
    signal pending), and a main thread blocked in ``threading.Event.wait()`` is woken only by a signal
    delivered to itself: the handler then never ran, and a CI run's server ignored its SIGTERM (no "shutting
    down" line, still running 60 s later). Here the C-level handler writes each signal's number to a wakeup
    socket whichever thread took it, and the main thread waits by reading that socket.

    Made before start-up, so a stop signal that comes while the server starts is kept and acted on once it is
    up, rather than killing it half-started (the default action before any handler is installed)."""

    def __init__(self, signals: tuple[signal.Signals, ...] = (signal.SIGTERM, signal.SIGINT)) -> None:
        self.signals = {int(s) for s in signals}
        self.received: int | None = None
        self._read, self._write = socket.socketpair()
        self._write.setblocking(False)  # set_wakeup_fd needs a non-blocking fd
        self._previous_fd = signal.set_wakeup_fd(self._write.fileno(), warn_on_full_buffer=False)
        self._previous = {s: signal.signal(s, self._note) for s in signals}

    def _note(self, signum: int, _frame: object) -> None:
        if self.received is None:
            self.received = signum

    def wait(self) -> int:
        """Block until a stop signal has come (at once if one came already); its number."""
        while self.received is None:
            for signum in self._read.recv(64):  # the numbers the C handler wrote, from whichever thread
                if signum in self.signals and self.received is None:
                    self.received = signum
        return self.received

    def close(self) -> None:
        signal.set_wakeup_fd(self._previous_fd)
        for s, handler in self._previous.items():
            signal.signal(s, handler)
        self._read.close()
        self._write.close()


__all__ = ["StopSignals"]
