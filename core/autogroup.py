"""Children started in a session of their own keep the core's CPU priority.

The core starts local sidecars and (in ``sidecast server``) each stream's worker with
``start_new_session`` so that one signal reaches a child's whole process group. On a kernel with autogroup
scheduling (``/proc/sys/kernel/sched_autogroup_enabled`` = 1, the default on many distributions) a new
session is also a new scheduling group, which starts at nice 0 whatever the parent's group was: an
operator who gave sidecast's group a higher priority (``echo -10 > /proc/self/autogroup``) would find the
caption recogniser left behind at the default, competing with every other session on the machine (seen on
the shared bench machine: the stt sidecar fell 5-6 s behind while the core kept real time). ``follow`` gives
the child's group the core's nice value. Without autogroup, or without the right to set it, nothing
changes: the child keeps its inherited per-process nice value as before.
"""

from __future__ import annotations

import contextlib
import re
from pathlib import Path

_NICE = re.compile(r"\bnice\s+(-?\d+)")


def nice_of(pid: int | str = "self") -> int | None:
    """The autogroup nice value of ``pid``'s scheduling group (None: no autogroup here)."""
    try:
        text = Path(f"/proc/{pid}/autogroup").read_text()
    except OSError:
        return None
    m = _NICE.search(text)
    return int(m.group(1)) if m else None


def follow(pid: int) -> None:
    """Give ``pid``'s scheduling group (a child that started a session) the caller's group priority."""
    mine = nice_of()
    if mine is None or nice_of(pid) == mine:
        return
    with contextlib.suppress(OSError):  # gone already, or not allowed to raise its priority: keep the default
        Path(f"/proc/{pid}/autogroup").write_text(str(mine))


__all__ = ["follow", "nice_of"]
