"""`./dev.sh`'s set-up asks apt only for what is missing, and never for Debian's npm beside a Node.js that
exists (NodeSource's nodejs bundles npm; apt refuses Debian's npm next to it: "held broken packages").

Each case runs the real script (`./dev.sh plan`: the packages a set-up would install) under a PATH that
holds only the tools the script needs plus stand-ins for the binaries a machine has or lacks."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EVERYTHING = ("ffmpeg", "ffprobe", "espeak-ng", "chromium", "sox", "redis-server", "node", "npm")


def plan(tmp_path: Path, present: set[str]) -> tuple[list[str], str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("bash", "dirname", "sort"):
        found = shutil.which(tool)
        assert found, tool
        os.symlink(found, bin_dir / tool)
    for name in present:
        stub = bin_dir / name
        stub.write_text("#!/bin/sh\nexit 0\n")
        stub.chmod(0o755)
    r = subprocess.run([str(bin_dir / "bash"), str(ROOT / "dev.sh"), "plan"], capture_output=True, text=True,
                       env={"PATH": str(bin_dir)}, timeout=30)
    assert r.returncode == 0, r.stderr
    return r.stdout.split(), r.stderr


@pytest.mark.parametrize(("present", "wanted"), [
    (set(EVERYTHING), []),                                              # a machine that has it all
    (set(EVERYTHING) - {"node", "npm"}, ["nodejs", "npm"]),             # no Node.js at all
    (set(EVERYTHING) - {"ffmpeg", "ffprobe", "sox"}, ["ffmpeg", "sox"]),  # one package for two binaries
    (set(), ["chromium", "espeak-ng", "ffmpeg", "nodejs", "npm", "redis-server", "sox"]),
])
def test_only_missing_packages_are_installed(tmp_path: Path, present: set[str], wanted: list[str]) -> None:
    got, _ = plan(tmp_path, present)
    assert got == wanted


def test_a_nodesource_node_without_npm_never_gets_debians_npm(tmp_path: Path) -> None:
    got, err = plan(tmp_path, set(EVERYTHING) - {"npm"})
    assert got == []
    assert "node is installed but npm is not" in err
