"""Sidecars shared across streams: one process per sidecar type (one loaded model) for the whole server.

A stream that asks for ``stt`` does not start its own: its worker connects to the server's ``stt`` process
over a unix socket, like any remote sidecar (``--sidecar-addr``). The sidecar SDK already serves each media
stream as its own Stream call with its own sidecar instance (per-stream state and results stay apart),
while the model is loaded once per process; ``--max-streams`` sizes how many streams it serves at once.

A sidecar given with ``--sidecar-addr NAME=ADDR`` is not started here: it runs elsewhere (on Kubernetes, a
container of the replica's pod, with its own probes and resources) and every stream dials ADDR.

Processes start on first use, are restarted with backoff when they exit (streams degrade meanwhile:
a dead sidecar is never waited for), and are guarded like every other child of the server.
"""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from . import procs

log = logging.getLogger("sidecast.server.sidecars")

# Arguments a shared sidecar starts with before the operator's own (``--sidecar-arg``; the last of a repeated
# option wins, so ``--sidecar-arg stt=--load-policy=off`` restores the plain sidecar's behaviour). The
# shared stt sidecar serves many streams from one model: while that model is behind, it decodes each stream
# once per stretch of speech, greedy, cut at 1.5 s (docs/server.md, "Eight caption streams, again"): on 2
# cores that kept 8 caption streams within the latency targets where the plain passes kept none. The price is
# words while the mode is on: 82 word errors in 937 words of the three tuning programmes against 54 for the
# plain passes' own behaviour while behind (a 3 s context); captions 1.7 s late instead of 3.3-6.4 s was
# judged worth it for a server of many streams. A stream that keeps up decodes exactly as before: the mode
# switches on only while the shared model is behind.
SHARED_DEFAULT_ARGS: dict[str, tuple[str, ...]] = {
    "stt": ("--load-policy", "chunk", "--chunk-cap", "1.5", "--chunk-beam", "1"),
}


@dataclass
class SharedSidecar:
    name: str
    socket: Path
    log_path: Path
    args: list[str]
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0
    exits: int = 0
    started_at: float = 0.0
    retry_at: float = 0.0
    users: set[str] = field(default_factory=set)

    @property
    def target(self) -> str:
        return f"unix://{self.socket}"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


class SidecarPool:
    """The server's shared sidecar processes. Only the supervisor's thread calls it (it spawns children)."""

    def __init__(self, run_dir: Path, log_dir: Path, *, args: dict[str, list[str]] | None = None,
                 max_streams: int = 64, external: dict[str, str] | None = None) -> None:
        self.external = dict(external or {})
        self.run_dir = run_dir
        self.log_dir = log_dir
        self.args = args or {}
        self.max_streams = max_streams
        self.sidecars: dict[str, SharedSidecar] = {}
        self.closing = False  # set by close(): a sidecar it stopped is not an exit to report or restart

    def target(self, name: str, user: str) -> str:
        """The address of the ``name`` sidecar for stream ``user``, starting it when nobody uses it yet."""
        if name in self.external:
            return self.external[name]
        sc = self.sidecars.get(name)
        if sc is None:
            sc = SharedSidecar(name, self.run_dir / f"sidecar-{name}.sock", self.log_dir / f"sidecar-{name}.log",
                               self.arguments(name))
            self.sidecars[name] = sc
        sc.users.add(user)
        if not sc.running and time.monotonic() >= sc.retry_at and not self.closing:
            self._start(sc)
        return sc.target

    def arguments(self, name: str) -> list[str]:
        """The ``name`` sidecar's arguments: the server's defaults for a shared one, then the operator's."""
        return [*SHARED_DEFAULT_ARGS.get(name, ()), *self.args.get(name, [])]

    def release(self, user: str) -> None:
        for sc in self.sidecars.values():
            sc.users.discard(user)

    def _start(self, sc: SharedSidecar) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "sidecast.core.cli", "sidecar", sc.name, "--listen", sc.target,
               "--max-streams", str(self.max_streams), *sc.args]
        sc.proc = procs.spawn(cmd, log_path=sc.log_path, stdin=subprocess.DEVNULL, stdout=None)
        sc.starts += 1
        sc.started_at = time.monotonic()
        log.info("shared sidecar started", extra={"sidecar": sc.name, "pid": sc.proc.pid, "log": str(sc.log_path)})

    def check(self) -> None:
        """Restart exited sidecars that streams still use (backoff: 1 s doubling to 30 s, reset after 60 s up)."""
        if self.closing:
            return
        now = time.monotonic()
        for sc in self.sidecars.values():
            if sc.proc is not None and sc.proc.poll() is not None:
                sc.exits += 1
                up = now - sc.started_at
                delay = 1.0 if up > 60 else min(30.0, 2.0 ** min(sc.exits, 5))
                log.warning("shared sidecar exited", extra={"sidecar": sc.name, "rc": sc.proc.returncode,
                                                            "restart_in_s": delay, "log": str(sc.log_path)})
                procs.kill_group(sc.proc.pid)
                sc.proc = None
                sc.retry_at = now + delay
            if sc.proc is None and sc.users and now >= sc.retry_at:
                self._start(sc)

    def status(self) -> list[dict[str, object]]:
        external: list[dict[str, object]] = [{"name": n, "running": None, "pid": None, "streams": [], "restarts": 0,
                                              "target": addr} for n, addr in sorted(self.external.items())]
        return external + [{"name": sc.name, "running": sc.running, "pid": sc.proc.pid if sc.proc else None,
                 "streams": sorted(sc.users), "restarts": max(0, sc.starts - 1), "target": sc.target}
                for sc in self.sidecars.values()]

    def close(self) -> None:
        self.closing = True
        for sc in self.sidecars.values():
            if sc.proc is not None and sc.proc.poll() is None:
                sc.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 5
        for sc in self.sidecars.values():
            if sc.proc is not None:
                try:
                    sc.proc.wait(max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    procs.kill_group(sc.proc.pid)
                    sc.proc.wait()


__all__ = ["SharedSidecar", "SidecarPool"]
