"""Exec guard: ``python guard.py PARENT_PID -- COMMAND...`` runs COMMAND so that it dies with the server.

Linux delivers ``PR_SET_PDEATHSIG`` to a process when the thread that forked it exits, and the setting
survives ``execve``. Setting it here, in the child, before exec is what ``preexec_fn`` would do, without
running Python code between fork and exec in a multi-threaded server (which the subprocess documentation
warns against). If the server died before the signal was armed (the race this closes), the parent PID
has changed already and the guard exits instead of starting an orphan.

Stdlib only, run by path with ``-I``: it starts in a few milliseconds and imports nothing from sidecast.
"""

import ctypes
import os
import signal
import sys

PR_SET_PDEATHSIG = 1


def main(argv: list[str]) -> int:
    if len(argv) < 4 or argv[2] != "--":
        print("usage: guard.py PARENT_PID -- COMMAND...", file=sys.stderr)
        return 2
    parent = int(argv[1])
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0) != 0:
            print(f"guard: prctl failed: {os.strerror(ctypes.get_errno())}", file=sys.stderr)
            return 1
    if os.getppid() != parent:
        return 1
    os.execvp(argv[3], argv[3:])
    return 1  # not reached


if __name__ == "__main__":
    sys.exit(main(sys.argv))
