"""Children keep the run's scheduling standing (core/sched.py).

A run is started in a session of its own whose autogroup nice is 7, as an operator lowering a run's
priority would do. It starts a sidecar the way ``sidecast run`` does (``LocalSidecar``, a real ``sidecast
sidecar scenecut`` process) and a child the way ``sidecast server`` starts its workers (``procs.spawn``,
through the exec guard). Each child must lead its own session and autogroup (isolation kept) and that
group must carry nice 7. Before this, both came up at the kernel's default, nice 0.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from sidecast.core.sched import autogroup_nice, share_standing

SCRIPT = r"""
import json, os, sys
from pathlib import Path
from sidecast.core.links import LocalSidecar
from sidecast.core.server.procs import spawn, kill_group
from sidecast.core.sched import autogroup_nice

Path("/proc/self/autogroup").write_text("7")
work = Path(sys.argv[1])
side = LocalSidecar("scenecut", work, log_dir=work)
side._spawn()
lower = LocalSidecar("scenecut", work / "low", log_dir=work, nice=5)  # --sidecar-nice scenecut=5
(work / "low").mkdir()
lower._spawn()
worker = spawn(["sleep", "60"], log_path=work / "worker.log")
def group(pid):
    return Path(f"/proc/{pid}/autogroup").read_text().split()[0]
print(json.dumps({
    "mine": [group("self"), autogroup_nice()],
    "sidecar": [group(side.proc.pid), autogroup_nice(side.proc.pid), os.getsid(side.proc.pid) == side.proc.pid],
    "worker": [group(worker.pid), autogroup_nice(worker.pid), os.getsid(worker.pid) == worker.pid],
    "lower": [group(lower.proc.pid), autogroup_nice(lower.proc.pid), os.getsid(lower.proc.pid) == lower.proc.pid],
}))
side.proc.kill(); side.proc.wait()
lower.proc.kill(); lower.proc.wait()
kill_group(worker.pid); worker.wait()
"""


def test_children_keep_their_own_group_at_the_runs_nice(tmp_path: Path) -> None:
    if autogroup_nice() is None:  # a kernel without autogroup: nothing to follow, and nothing may fail
        assert share_standing(os.getpid()) is False
        return
    out = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path)], capture_output=True, text=True,
                         timeout=120, start_new_session=True)
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout.strip().splitlines()[-1])
    mine_group, mine_nice = doc["mine"]
    assert mine_nice == 7
    for child in ("sidecar", "worker"):
        group, nice, leads_session = doc[child]
        assert leads_session, f"the {child} must still lead its own session"
        assert group != mine_group, f"the {child} must keep its own scheduling group"
        assert nice == 7, f"the {child}'s group came up at nice {nice}, not the run's 7"
    group, nice, leads_session = doc["lower"]
    assert leads_session and group != mine_group
    assert nice == 12, f"a sidecar asked to run 5 steps below the run came up at nice {nice}, not 12"


def test_share_standing_is_harmless_for_a_process_that_is_gone() -> None:
    proc = subprocess.Popen(["true"])
    proc.wait()
    # the PID is reaped: its file is gone, and the call says so instead of raising
    assert share_standing(proc.pid) is False


BROWSER = r"""
import json, sys
from pathlib import Path
from tests.browser.harness import open_page, serve

Path("/proc/self/autogroup").write_text("7")
root = Path(sys.argv[1])
(root / "index.html").write_text("<!doctype html><video muted></video>")
with serve(root) as url:
    report = open_page(url + "index.html", seconds=0, timeout=60)
print(json.dumps({"moved": report.get("browserGroupsMoved"), "stop": report.get("stopReason")}))
"""


def test_the_browser_a_bench_measures_with_gets_the_benchs_nice(tmp_path: Path) -> None:
    """Playwright starts Chromium in a session of its own: play.mjs gives its group node's nice, and the
    harness gives node's group the caller's (a loaded bench played 60 s of video in 94 s without it)."""
    if autogroup_nice() is None:
        assert share_standing(os.getpid()) is False
        return
    out = subprocess.run([sys.executable, "-c", BROWSER, str(tmp_path)], capture_output=True, text=True,
                         timeout=150, start_new_session=True, cwd=Path(__file__).resolve().parents[1])
    assert out.returncode == 0, out.stderr[-2000:]
    doc = json.loads(out.stdout.strip().splitlines()[-1])
    assert doc["stop"] == "played"
    assert doc["moved"] >= 1, "no Chromium group was given the bench's nice"
