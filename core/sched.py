"""Children keep the scheduling standing of the process that started them.

sidecast starts its sidecars (``sidecast run``) and its stream workers and shared sidecars (``sidecast
server``) in their own sessions, so that each can be killed with whatever it starts and a Ctrl-C or a
crash of one does not reach the others. On a Linux kernel with autogroup scheduling (the default on
Debian and Ubuntu kernels, and on this project's build machines), a new session is also a new *scheduling
group*, created at nice 0 whatever the parent's group was given. So an operator who lowers the priority of
a run (``echo 10 > /proc/self/autogroup``, or a service manager doing it) lowered only the core: every
sidecar and worker kept a full share, and a benchmark that raised its own group measured its sidecars
at the default share beside everything else on the machine.

``share_standing(pid)`` gives the child's group the parent's group nice. Each child keeps its own group,
on purpose: a sidecar with many busy threads still cannot take more than one group's share from the
core's encoder. Inside a container's cgroup (Kubernetes) autogroup does not apply, the file still
exists, and writing it changes nothing the scheduler uses: the call is harmless there.
"""

from __future__ import annotations

import contextlib
import re
from pathlib import Path

_NICE = re.compile(rb"\bnice\s+(-?\d+)")


def autogroup_nice(pid: int | str = "self") -> int | None:
    """The nice value of ``pid``'s autogroup, or None where the kernel has no autogroup file."""
    try:
        m = _NICE.search(Path(f"/proc/{pid}/autogroup").read_bytes())
    except OSError:
        return None
    return int(m.group(1)) if m else None


def share_standing(pid: int, lower: int = 0) -> bool:
    """Give ``pid``'s autogroup this process's autogroup nice plus ``lower`` (capped at 19); True when it
    now has it. ``lower`` > 0 puts a child below its parent (``--sidecar-nice``).

    Best effort by design: no autogroup file, a child that already exited, or a nice below 0 without
    the privilege to set it leave the child at the kernel's default and never fail a start."""
    mine = autogroup_nice()
    if mine is None:
        return False
    mine = min(19, mine + max(0, lower))
    if autogroup_nice(pid) == mine:
        return True
    with contextlib.suppress(OSError):
        Path(f"/proc/{pid}/autogroup").write_text(str(mine))
    return autogroup_nice(pid) == mine


__all__ = ["autogroup_nice", "share_standing"]
