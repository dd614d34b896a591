"""Child processes of the server: spawned so that they die with it and leave nothing behind.

- Every child (stream workers, shared sidecars) is started through guard.py, which arms PR_SET_PDEATHSIG
  before exec: if the server dies, even by kill -9, the kernel kills them.
- PDEATHSIG follows the *thread* that forked, not the process: children are spawned only from the
  supervisor's own long-lived thread, never from a request thread that may end.
- Each child leads its own process group, so whatever it starts itself (FFmpeg's SRT bridge) is killed
  with it (``kill_group``). Its own session is also its own autogroup on kernels that have them: it is
  given the server's autogroup nice (``sidecast.core.sched``), so an operator's priority for the server
  reaches every worker and shared sidecar while each keeps its own share.
- The janitor: one small process per server that waits for the server's end (its stdin closes, whatever
  the cause) and then removes the shared-memory frame rings the killed workers could not unlink.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO

from sidecast.core.sched import share_standing

GUARD = Path(__file__).resolve().parent / "guard.py"
LOG_ROTATE_BYTES = 20 << 20


def guarded(cmd: Sequence[str]) -> list[str]:
    """``cmd`` run under the exec guard (dies with this process)."""
    return [sys.executable, "-I", str(GUARD), str(os.getpid()), "--", *cmd]


def open_log(path: Path) -> IO[bytes]:
    """A child's log file, appended to; rotated once (to ``.1``) when it grew past LOG_ROTATE_BYTES."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(OSError):
        if path.stat().st_size > LOG_ROTATE_BYTES:
            os.replace(path, path.with_name(path.name + ".1"))
    return open(path, "ab")  # noqa: SIM115 (the caller hands it to the child, then closes it)


def spawn(cmd: Sequence[str], *, log_path: Path, env: Mapping[str, str] | None = None,
          stdin: int | None = subprocess.PIPE, stdout: int | None = subprocess.PIPE) -> subprocess.Popen[bytes]:
    """Start ``cmd`` guarded, in its own process group, stderr to ``log_path``."""
    logf = open_log(log_path)
    try:
        proc = subprocess.Popen(guarded(cmd), stdin=stdin, stdout=stdout if stdout is not None else logf,
                                stderr=logf, start_new_session=True, close_fds=True,
                                env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})})
        share_standing(proc.pid)  # a new session is a new autogroup at nice 0: give it the server's
        return proc
    finally:
        logf.close()


def kill_group(pid: int, sig: int = signal.SIGKILL) -> None:
    """Signal a child's whole process group (it is its leader); gone already is fine."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


JANITOR = """
import sys, time
from sidecast.contract.shm import sweep_stale
sys.stdin.buffer.read()          # returns when the server is gone, however it went
deadline = time.monotonic() + 10
while time.monotonic() < deadline:  # the kernel kills the workers (PDEATHSIG): their rings are then stale
    sweep_stale()
    time.sleep(0.5)
"""


def start_janitor() -> subprocess.Popen[bytes]:
    """The process that cleans /dev/shm after the server, even after a kill -9 (see the module docstring).

    Not guarded on purpose: it must outlive the server by a few seconds. It only reads its stdin (held
    open by the server and by nothing else) and exits within ~10 s of the server's end."""
    return subprocess.Popen([sys.executable, "-c", JANITOR], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True, close_fds=True)


__all__ = ["GUARD", "guarded", "kill_group", "open_log", "spawn", "start_janitor"]
