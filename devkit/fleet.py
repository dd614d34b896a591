"""Helpers for fleet tests and benches: a `sidecast server` replica as a real process (its own ports and
data folder, one shared registry and media folder), a sampler that records every live worker process
of a set of replicas (to prove that no stream ever ran twice at once), and a loopback TCP proxy that can be
cut (one replica alone loses the registry while the others still reach it)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from devkit.ports import free_port

SIDECAST = Path(sys.executable).parent / "sidecast"
ADMIN = "sk_fleet_test_admin_key_0123456789abcdef"




@dataclass
class Replica:
    name: str
    data: Path
    api_port: int = field(default_factory=free_port)
    media_port: int = field(default_factory=free_port)
    rtmp_port: int = -1
    proc: subprocess.Popen[bytes] | None = None

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def media(self) -> str:
        return f"http://127.0.0.1:{self.media_port}/"

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.api, headers={"Authorization": f"Bearer {ADMIN}"}, timeout=30)

    def start(self, registry: str, storage: Path, max_streams: int, lease_seconds: float,
              extra: tuple[str, ...] = (), log_format: str = "text") -> None:
        self.data.mkdir(parents=True, exist_ok=True)
        log = open(self.data / "server.log", "ab")  # noqa: SIM115 (kept open for the process's life)
        self.proc = subprocess.Popen(
            [str(SIDECAST), "--log-format", log_format, "server", "--data-dir", str(self.data), "--registry", registry,
             "--storage", str(storage), "--api-port", str(self.api_port), "--media-port", str(self.media_port),
             "--media-host", "127.0.0.1", "--push-host", "127.0.0.1", "--rtmp-port", str(self.rtmp_port),
             "--srt-port", "-1", "--admin-key", ADMIN, "--replica-id", self.name,
             "--lease-seconds", str(lease_seconds), "--max-streams", str(max_streams), "--min-free-mb", "16",
             *extra],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    def ready(self) -> bool:
        with contextlib.suppress(httpx.HTTPError):
            return httpx.get(self.api + "/healthz", timeout=2).status_code == 200
        return False

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.proc.pid, signal.SIGCONT)
                self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@dataclass
class WorkerSampler:
    """Every 50 ms, every live worker process of the given replicas: which replica and stream it serves
    (its stderr is DATA_DIR/logs/<stream>.log; an idle warm worker's is logs/warm-pool.log, and moves to its
    stream's log when it takes an attempt). Records any moment when one stream had two live workers."""

    roots: dict[str, Path]
    overlaps: list[str] = field(default_factory=list)
    seen: dict[str, set[str]] = field(default_factory=dict)   # stream -> replicas that ran a worker for it
    samples: int = 0

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> WorkerSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def snapshot(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for p in Path("/proc").iterdir():
            if not p.name.isdigit():
                continue
            try:
                if b"sidecast.core.server.worker" not in (p / "cmdline").read_bytes():
                    continue
                target = os.readlink(p / "fd" / "2")
                state = (p / "stat").read_text().split(")")[-1].split()[0]
            except OSError:
                continue
            if state in ("Z", "X"):
                continue
            for name, root in self.roots.items():
                prefix = str(root / "logs") + "/"
                if target.startswith(prefix) and target.endswith(".log"):
                    stream = target[len(prefix):-4]
                    if stream == "warm-pool":  # an idle warm worker (supervisor.py): no stream yet
                        continue
                    out.setdefault(stream, []).append(f"{name}:{p.name}")
        return out

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            snap = self.snapshot()
            self.samples += 1
            for sid, workers in snap.items():
                self.seen.setdefault(sid, set()).update(w.split(":")[0] for w in workers)
                if len(workers) > 1:
                    self.overlaps.append(f"{sid}: {workers}")


class CuttableProxy:
    """A TCP proxy on loopback (``127.0.0.1:port`` to ``target``) that can be cut: ``cut()`` closes every
    connection through it and closes new ones at once (what a replica sees when the network between it and
    the registry fails: its connection drops and reconnecting fails), ``restore()`` lets traffic through again.
    """

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        self._cut = threading.Event()
        self._lock = threading.Lock()
        self._conns: list[socket.socket] = []
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def url_for(self, url: str) -> str:
        """``url`` (a postgresql:// URL of the target) with its port replaced by this proxy's."""
        return url.replace(f":{self.target[1]}/", f":{self.port}/")

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if self._cut.is_set():
                client.close()
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                self._conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                if self._cut.is_set():
                    break
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()

    def cut(self) -> None:
        self._cut.set()
        with self._lock:
            conns, self._conns = self._conns, []
        for s in conns:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()

    def restore(self) -> None:
        self._cut.clear()

    def close(self) -> None:
        self._closed = True
        self.cut()
        self._listener.close()


__all__ = ["ADMIN", "SIDECAST", "CuttableProxy", "Replica", "WorkerSampler", "free_port"]
