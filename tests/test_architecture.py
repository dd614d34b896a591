"""The project's own rules, checked the way CI checks everything else (docs/architecture.md):
layer rules with import-linter, types with mypy (strict for the contract and the core), lint with ruff,
protobuf messages built only by the codec, generated contract modules in step with the .proto."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

BIN = Path(sys.executable).parent
# The installed layout (sidecast.<part>) as links to the repository's folders, for mypy, which cannot
# follow the editable install's package-dir mapping.
PARTS = {"core": "core", "sidecars": "sidecars", "ads": "ads", "hls": "hls", "models": "models", "contract": "proto"}


def _run(cmd: list[str], cwd: Path = ROOT, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout)


def test_layer_rules_hold() -> None:
    """No sidecar imports core or ads, core imports no sidecar and no ads, ads imports no core, and both
    stand on sidecast.hls and sidecast.contract (pyproject.toml [tool.importlinter])."""
    r = _run([str(BIN / "lint-imports"), "--no-cache"])
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
    assert "0 broken" in r.stdout


def typecheck_tree() -> Path:
    tree = ROOT / ".cache" / "typecheck"
    pkg = tree / "sidecast"
    pkg.mkdir(parents=True, exist_ok=True)
    for name, folder in PARTS.items():
        link = pkg / name
        if not link.is_symlink():
            link.symlink_to(Path("..", "..", "..", folder))
    return tree


def test_types_check_strict_for_the_contract_and_the_core() -> None:
    tree = typecheck_tree()
    packages = [a for p in PARTS for a in ("-p", f"sidecast.{p}")]
    r = _run([str(BIN / "mypy"), "--config-file", str(ROOT / "pyproject.toml"),
              "--cache-dir", str(ROOT / ".cache" / "mypy"), *packages], cwd=tree)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]


def test_ruff_is_clean() -> None:
    r = _run([str(BIN / "ruff"), "check", "--no-cache", "."])
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]


def _message_constructions(path: Path) -> list[str]:
    """``pb2.Something(...)`` calls in a file: building a protobuf message."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and isinstance(node.func.value, ast.Name) and node.func.value.id == "pb2"
                and node.func.attr[:1].isupper()):
            found.append(f"{path.relative_to(ROOT)}:{node.lineno} pb2.{node.func.attr}(...)")
    return found


def test_only_the_codec_builds_protobuf_messages() -> None:
    sources = [p for folder in PARTS.values() for p in (ROOT / folder).rglob("*.py")
               if "v1" not in p.relative_to(ROOT).parts]
    built = [hit for p in sources if p.name != "codec.py" for hit in _message_constructions(p)]
    assert built == [], "\n".join(built)
    assert _message_constructions(ROOT / "proto" / "codec.py"), "the check sees the codec's own messages"


def test_generated_contract_modules_match_the_proto() -> None:
    r = _run([sys.executable, str(ROOT / "scripts" / "generate_proto.py"), "--check"])
    assert r.returncode == 0, r.stdout + r.stderr


def test_the_drift_check_notices_an_edited_proto(tmp_path: Path) -> None:
    """The check is not vacuous: a .proto with one more field does not match the committed modules."""
    import shutil

    work = tmp_path / "repo"
    shutil.copytree(ROOT / "proto", work / "proto", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "scripts", work / "scripts")
    proto = work / "proto" / "sidecast" / "sidecar" / "v1" / "sidecar.proto"
    proto.write_text(proto.read_text().replace("message StreamEnd {}", "message StreamEnd { string why = 1; }"))
    r = _run([sys.executable, str(work / "scripts" / "generate_proto.py"), "--check"], cwd=work)
    assert r.returncode == 1 and "drifted" in r.stderr, r.stdout + r.stderr


@pytest.mark.parametrize("command", [["sidecar", "stt", "--help"], ["ads", "stitch", "--help"], ["sidecars"]])
def test_commands_registered_by_other_packages_reach_the_sidecast_command(command: list[str]) -> None:
    r = _run([str(BIN / "sidecast"), *command], timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip()


def test_a_command_whose_extra_is_missing_says_which_extra_to_install(tmp_path: Path) -> None:
    """A Python with sidecast on its path but without the [ads] extra's packages: `sidecast ads serve`
    prints one line naming the extra (the packages are hidden by a path entry that shadows them)."""
    shadow = tmp_path / "shadow"
    for mod in ("httpx", "defusedxml", "redis"):
        (shadow / mod).mkdir(parents=True)
        (shadow / mod / "__init__.py").write_text(f"raise ImportError({'No module named ' + repr(mod)!r})\n")
    env = {**os.environ, "PYTHONPATH": str(shadow)}
    r = subprocess.run([str(BIN / "sidecast"), "ads", "serve", "--port", "1"], capture_output=True, text=True,
                       timeout=120, env=env)
    assert r.returncode == 2, r.stderr
    assert r.stderr.strip().splitlines() == ["sidecast: error: sidecast ads serve needs the [ads] extra: "
                                             "pip install 'sidecast[ads]'"], r.stderr
