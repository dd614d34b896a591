"""The sidecar conformance kit (sidecast sidecars --check): every built-in sidecar passes it, and it catches
a plugin that breaks on odd frame sizes or a size change mid-stream."""

from __future__ import annotations

import subprocess
import sys

import pytest

from sidecast.sidecars.runtime.conformance import VIDEO_CASES, check
from tests.conftest import ROOT, SIDECAST, wait_for

TICKER = str(ROOT / "tests" / "plugins" / "ticker.py")


@pytest.mark.parametrize("name", ["scenecut", "bitrate", "autocrop", "stt"])
def test_every_built_in_sidecar_is_conformant(name: str) -> None:
    r = subprocess.run([SIDECAST, "sidecars", "--check", name], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr[-2000:]
    assert f"{name} " in r.stdout and "conformant" in r.stdout.splitlines()[-1]


def test_the_kit_catches_a_plugin_that_breaks_on_odd_sizes_and_size_changes(tmp_path) -> None:
    sock = tmp_path / "fragile.sock"
    proc = subprocess.Popen([sys.executable, TICKER, "--listen", f"unix://{sock}", "--mode", "fragile", "--width", "0"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(sock.exists, 30, "the plugin's socket")
        # every video case but the 8K one (seconds of random 8K frames; even sizes, which this plugin takes):
        # the tiny one shows even sizes pass
        wanted = [c for c in VIDEO_CASES if not c.startswith("huge")]
        assert len(wanted) == len(VIDEO_CASES) - 1
        _, findings = check(f"unix://{sock}", timeout=60, video_cases=wanted)
    finally:
        proc.terminate()
        proc.wait(10)
    cases = {f.case for f in findings}
    assert "odd-size source 1366x767" in cases and "size change 1920x1080 -> 1280x720" in cases, findings
    assert "tiny source 48x32" not in cases, "even sizes pass: the kit reports what breaks, not everything"
    assert any("height has to be even" in f.problem for f in findings)
    with pytest.raises(ValueError, match="no such conformance case"):
        check(f"unix://{sock}", video_cases=["no such case"])
