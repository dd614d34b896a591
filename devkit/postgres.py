"""A real PostgreSQL server on loopback for tests and benches: ``initdb`` into a temporary folder, then
``postgres`` on a free port, with a password (scram-sha-256) like a production registry. No system service
is touched. The binaries come from Debian's ``postgresql`` package (scripts/install-extras.sh installs it).

    with PostgresServer(tmp_path / "pg") as pg:
        registry = Registry(pg.url)
        pg.stop(); ...; pg.start()          # an outage, with the data kept
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from devkit.ports import free_port as _free_port

PASSWORD = "sidecast-test-password"


def postgres_bin() -> Path:
    """The newest installed PostgreSQL's bin folder."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"), key=lambda p: int(p.split("/")[4]))
    if not found:
        raise RuntimeError("no PostgreSQL server binaries: run scripts/install-extras.sh (Debian package postgresql)")
    return Path(found[-1]).parent




def _as_user() -> tuple[list[str], int, int]:
    """PostgreSQL refuses to run as root: as root, run it as ``nobody`` (command prefix, uid, gid)."""
    if os.geteuid() != 0:
        return [], -1, -1
    import pwd

    nobody = pwd.getpwnam("nobody")
    return ([shutil.which("setpriv") or "setpriv", f"--reuid={nobody.pw_uid}", f"--regid={nobody.pw_gid}",
             "--clear-groups"], nobody.pw_uid, nobody.pw_gid)


class PostgresServer:
    """``root``: a folder for the cluster (as root, a private folder under /tmp is used instead: the server
    runs as ``nobody``, which cannot reach a test's own tmp_path)."""

    def __init__(self, root: Path | None = None, port: int | None = None) -> None:
        self.prefix, uid, gid = _as_user()
        if root is None or uid >= 0:
            root = Path(tempfile.mkdtemp(prefix="sidecast-pg-"))
            if uid >= 0:
                os.chown(root, uid, gid)
        self.root = Path(root)
        self.data = self.root / "data"
        self.sockets = self.root / "run"
        self.port = port or _free_port()
        self.bin = postgres_bin()
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = self.root / "postgres.log"

    @property
    def url(self) -> str:
        return f"postgresql://sidecast:{PASSWORD}@127.0.0.1:{self.port}/sidecast"

    def init(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.sockets.mkdir(exist_ok=True)
        pwfile = self.root / "pw"
        pwfile.write_text(PASSWORD + "\n")
        if self.prefix:
            st = self.root.stat()
            for p in (self.sockets, pwfile):
                os.chown(p, st.st_uid, st.st_gid)
        subprocess.run([*self.prefix, str(self.bin / "initdb"), "-D", str(self.data), "-U", "sidecast", "--pwfile", str(pwfile),
                        "--auth=scram-sha-256", "-E", "UTF8", "--no-sync"],
                       check=True, capture_output=True, timeout=120)
        pwfile.unlink()

    def start(self, timeout: float = 30.0) -> PostgresServer:
        if not self.data.exists():
            self.init()
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [*self.prefix, str(self.bin / "postgres"), "-D", str(self.data), "-p", str(self.port), "-h", "127.0.0.1",
                 "-k", str(self.sockets), "-c", "fsync=off", "-c", "max_connections=50",
                 "-c", "shared_buffers=16MB"], stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"postgres exited: {self.log.read_text()[-2000:]}")
            try:
                import psycopg

                psycopg.connect(self.url.rsplit("/", 1)[0] + "/postgres", connect_timeout=2).close()
                break
            except Exception:
                time.sleep(0.1)
        else:
            raise RuntimeError("postgres did not accept connections in time")
        import psycopg

        with psycopg.connect(self.url.rsplit("/", 1)[0] + "/postgres", autocommit=True) as conn:
            if conn.execute("SELECT 1 FROM pg_database WHERE datname = 'sidecast'").fetchone() is None:
                conn.execute("CREATE DATABASE sidecast")
        return self

    def stop(self) -> None:
        """A fast shutdown (connections are cut, as in an outage); the data stays for the next start."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(2)  # SIGINT: fast shutdown
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> PostgresServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


__all__ = ["PASSWORD", "PostgresServer", "postgres_bin"]

if __name__ == "__main__":  # a quick manual check
    with PostgresServer() as pg:
        print(pg.url, os.getpid())
