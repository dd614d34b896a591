"""core/autogroup.py: a child started in a session of its own keeps the starter's CPU priority."""

from __future__ import annotations

import json
import subprocess
import sys

CHILD = r"""
import json, subprocess, sys
from pathlib import Path
from sidecast.core import autogroup
have = autogroup.nice_of() is not None
if have:
    Path("/proc/self/autogroup").write_text("7")  # a lower priority is always allowed
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"], start_new_session=True)
before = autogroup.nice_of(child.pid)
autogroup.follow(child.pid)
after = autogroup.nice_of(child.pid)
child.kill()
child.wait()
autogroup.follow(child.pid)  # gone: nothing to do, no error
print(json.dumps({"have": have, "mine": autogroup.nice_of(), "before": before, "after": after}))
"""


def test_a_child_in_a_new_session_gets_the_starters_group_priority() -> None:
    # Run in a process of its own: changing the test runner's own group priority would slow the suite.
    r = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, timeout=60,
                       start_new_session=True)
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout)
    if got["have"]:  # autogroup scheduling: the child's new group starts at 0 and is given the starter's 7
        assert (got["mine"], got["before"], got["after"]) == (7, 0, 7), got
    else:  # no autogroup here: nothing to follow, and nothing fails
        assert got["before"] is None and got["after"] is None, got
