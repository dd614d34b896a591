"""`sidecast ads serve` (ads/api/cli.py): the subcommand registers, serves, and fails in one line."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import httpx

from sidecast.ads.api.cli import register
from tests.ads_fixtures import free_port, redis_server, wait_until

ROOT = Path(__file__).resolve().parent.parent


def test_serve_registers_with_its_defaults() -> None:
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="cmd"))
    args = parser.parse_args(["serve"])
    assert (args.host, args.port, args.db, args.redis, args.origin) == ("127.0.0.1", 8000, "./sidecast-ads.db", None, None)
    assert callable(args.func)


def test_serve_runs_the_api_and_prints_a_generated_key(tmp_path: Path) -> None:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "sidecast.ads.api.cli", "serve", "--port", str(port), "--db",
                             str(tmp_path / "ads.db")], cwd=ROOT, stderr=subprocess.PIPE, text=True)
    try:
        def up() -> bool:
            try:
                return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200
            except httpx.HTTPError:
                assert proc.poll() is None, "server exited"
                return False

        wait_until(up, 30, "sidecast ads serve to answer /healthz")
        doc = httpx.get(f"http://127.0.0.1:{port}/openapi.json").json()
        assert "/v1/decisions" in doc["paths"] and doc["info"]["title"] == "sidecast ad decisioning API"
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=15)
    key_lines = [line for line in err.splitlines() if "management API key for this run" in line]
    assert len(key_lines) == 1 and len(key_lines[0].rsplit(" ", 1)[1]) >= 20


def test_an_unusable_store_fails_in_one_line_with_status_2(tmp_path: Path) -> None:
    r = subprocess.run([sys.executable, "-m", "sidecast.ads.api.cli", "serve", "--db", str(tmp_path / "no" / "such" / "a.db"),
                        "--api-key", "k"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2
    assert r.stderr.strip().startswith("sidecast ads: cannot open the ads database")
    assert "Traceback" not in r.stderr
    r = subprocess.run([sys.executable, "-m", "sidecast.ads.api.cli", "serve", "--redis", f"redis://127.0.0.1:{free_port()}/0",
                        "--api-key", "k"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "cannot reach Redis" in r.stderr and "Traceback" not in r.stderr


def test_several_workers_need_redis_and_share_one_token_key(tmp_path: Path) -> None:
    r = subprocess.run([sys.executable, "-m", "sidecast.ads.api.cli", "serve", "--workers", "2", "--db", str(tmp_path / "a.db"),
                        "--api-key", "k"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "--workers > 1 needs --redis" in r.stderr and "Traceback" not in r.stderr
    with redis_server() as url:
        port = free_port()
        proc = subprocess.Popen([sys.executable, "-m", "sidecast.ads.api.cli", "serve", "--port", str(port), "--redis", url,
                                 "--workers", "2", "--api-key", "k"], cwd=ROOT, stderr=subprocess.PIPE, text=True)
        try:
            base = f"http://127.0.0.1:{port}"

            def up() -> bool:
                try:
                    return httpx.get(base + "/healthz", timeout=1).status_code == 200
                except httpx.HTTPError:
                    assert proc.poll() is None, "server exited"
                    return False

            wait_until(up, 40, "two workers to answer /healthz")
            # Tokens minted on one connection (one worker) verify on fresh connections (either worker).
            minted = httpx.post(base + "/v1/tokens", json={"session_id": "s1"}, headers={"X-API-Key": "k"})
            assert minted.status_code in (200, 201), minted.text
            token = minted.json()["token"]
            statuses = set()
            for _ in range(12):
                with httpx.Client() as c:  # a new connection each time: the kernel spreads them over workers
                    resp = c.get(base + "/v1/asset-list", params={"session": "s1", "duration": 30, "token": token})
                    statuses.add(resp.status_code)
            assert statuses == {200}, statuses
        finally:
            proc.terminate()
            proc.communicate(timeout=20)
