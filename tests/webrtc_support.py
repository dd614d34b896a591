"""What the WebRTC tests share: a ``sidecast run`` process with a WHIP source (and its ports), and the
browser driver for the publish and preview pages (tests/browser/webrtc.mjs)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

from tests.conftest import ROOT, SIDECAST, free_port, wait_for

WEBRTC_SCRIPT = ROOT / "tests" / "browser" / "webrtc.mjs"


def port_open(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
        return True
    except OSError:
        return False


class LiveRun:
    """``sidecast run whip://127.0.0.1:PORT/live/KEY -o OUT ...`` as a real process; the WHIP endpoint is
    ``.endpoint``; ``stop()`` sends SIGINT (finish the segment, exit) and returns the exit code."""

    def __init__(self, outdir: Path, key: str = "k3y", *args: str, serve: bool = False) -> None:
        self.outdir, self.key = outdir, key
        self.port = free_port()
        self.serve_port = free_port() if serve else None
        cmd = [SIDECAST, "run", f"whip://127.0.0.1:{self.port}/live/{key}", "-o", str(outdir), *args]
        if serve:
            cmd += ["--serve", str(self.serve_port), "--serve-host", "127.0.0.1"]
        self.log_path = outdir.parent / f"{outdir.name}.log"
        self.proc = subprocess.Popen(cmd, stdout=open(self.log_path, "w"), stderr=subprocess.STDOUT, cwd=ROOT,  # noqa: SIM115
                                     env={**os.environ, "PYTHONUNBUFFERED": "1"})
        wait_for(lambda: port_open(self.port) or self.proc.poll() is not None, 60, "the WHIP endpoint to listen")
        if self.serve_port is not None:
            wait_for(lambda: port_open(self.serve_port) or self.proc.poll() is not None, 60, "the HTTP server")
        assert self.proc.poll() is None, self.log

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}/live"

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.serve_port}"

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_exit(self, timeout: float) -> int:
        return self.proc.wait(timeout)

    def stop(self, timeout: float = 60) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                return self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return int(self.proc.returncode)

    def __enter__(self) -> LiveRun:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def run_pages(pages: list[dict[str, Any]], seconds: float, timeout: float = 120) -> dict[str, Any]:
    """Open the pages in one headless Chromium for ``seconds``; the JSON report of tests/browser/webrtc.mjs."""
    started = time.monotonic()
    proc = subprocess.run(["node", str(WEBRTC_SCRIPT), json.dumps({"pages": pages, "seconds": seconds,
                                                                   "timeout": timeout})],
                          capture_output=True, text=True, timeout=timeout + 30, cwd=ROOT / "tests" / "browser")
    if not proc.stdout.strip():
        raise AssertionError(f"webrtc.mjs printed nothing (rc {proc.returncode}): {proc.stderr[-2000:]}")
    report: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    if "harnessError" in report:
        raise AssertionError(f"browser harness failed: {report['harnessError'][:2000]}")
    report["wallSeconds"] = time.monotonic() - started
    return report
