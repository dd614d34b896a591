"""One stream's worker process: the pipeline of one attempt, its publisher, and a line protocol to the server.

``python -m sidecast.core.server.worker`` (started by the supervisor through guard.py, so it dies with the
server). The first line on stdin is the attempt's spec (JSON); after it, stdin carries commands and stdout
carries JSON lines back:

    in:  {"id": 3, "cmd": "break", "at": null, "in": 4, "duration": 30}     schedule an ad break
         {"id": 4, "cmd": "keep_centered", "on": true}                      vertical crop override
         {"cmd": "stop"}                                                    finish the segment, then exit
         {"cmd": "lease", "valid_s": 6.5}     fleet: the lease is renewed; publish for 6.5 s more at most
    out: {"type": "status", ...}      once a second: media time, fps, speed, segments, sidecars, storage
         {"type": "live", "marks": {...}}   the first segment of this attempt is published; ``marks`` are
                                      the wall-clock times of the start's phases (main, imported, spec, built,
                                      first_frame, first_segment: the failover timeline, bench/fleet.py)
         {"type": "reply", "id": 3, "ok": true, "result": {...}}
         {"type": "error", "kind": "source", "message": "..."}   the reason, just before a failing exit

End of stdin means the server is gone: the worker stops. In a fleet (fleet.py) the spec carries
``lease_valid_s``: past that deadline, unless a ``lease`` command moved it, the worker kills its own
process group at once. A replica that froze or lost the registry cannot extend it, so its workers stop
before its leases can expire and another replica starts the same streams: no stream is ever published by
two workers at once. Exit status: 0 the source ended; 2 source error;
3 configuration error; 4 out of memory (the stream's cap); 5 storage error; anything else is a crash.

Isolation comes from the process itself: its own address space capped with RLIMIT_AS (a memory blow-up
raises MemoryError here, nowhere else), its own process group (the server kills leftovers, such as an SRT
bridge, with it), and the death signal armed by guard.py.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import resource
import signal
import sys
import threading
import time
from pathlib import Path
from typing import IO, Any

EXIT_OK, EXIT_SOURCE, EXIT_CONFIG, EXIT_MEMORY, EXIT_STORAGE = 0, 2, 3, 4, 5

log = logging.getLogger("sidecast.server.worker")


class Channel:
    """The stdout side of the protocol: whole JSON lines, one writer at a time."""

    def __init__(self, fp: IO[str]) -> None:
        self.fp = fp
        self.lock = threading.Lock()

    def send(self, doc: dict[str, Any]) -> None:
        line = json.dumps(doc, allow_nan=False, default=str) + "\n"
        with self.lock:
            try:
                self.fp.write(line)
                self.fp.flush()
            except (OSError, ValueError):
                pass  # the server is gone; stdin's end stops us


def _private_stdout() -> IO[str]:
    """Keep the protocol on a private descriptor and point fd 1 at stderr: a stray print (or a C library
    writing to stdout) can then never corrupt the line protocol."""
    fd = os.dup(1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return os.fdopen(fd, "w", buffering=1)


def _rss_bytes() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def _limit_memory(limit: int) -> None:
    if limit > 0:
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def preimport() -> None:
    """Import what an attempt needs (the pipeline, PyAV, numpy, gRPC, the publisher, storage): about a second
    of CPU, the larger part of a cold start. A warm worker does it before it has a stream (``--warm``)."""
    import sidecast.contract.errors  # noqa: F401
    import sidecast.core.logs  # noqa: F401
    import sidecast.core.options  # noqa: F401
    import sidecast.core.pipeline  # noqa: F401

    from . import publish, storage  # noqa: F401


class Worker:
    def __init__(self, spec: dict[str, Any], channel: Channel, marks: dict[str, float] | None = None) -> None:
        from sidecast.core.options import RunOptions
        from sidecast.core.pipeline import Pipeline

        from .publish import Publisher, PublishPlan
        from .storage import open_storage

        self.marks = marks if marks is not None else {}
        self.marks.setdefault("imported", time.time())

        self.spec = spec
        self.channel = channel
        self.plan = PublishPlan(**spec["plan"])
        self.workdir = Path(spec["workdir"])
        self.workdir.mkdir(parents=True, exist_ok=True)
        opts = RunOptions.from_mapping({**spec["options"], "outdir": str(self.workdir)})
        self.pipeline = Pipeline(opts)
        storage = open_storage(spec["storage"], Path(spec["data_dir"]))
        self.publisher = Publisher(storage, Path(spec["state_dir"]), self.workdir, self.plan,
                                   shared_state=bool(spec.get("shared_state")))
        lease = spec.get("lease_valid_s")
        self.lease_deadline: float | None = time.monotonic() + float(lease) if lease is not None else None
        self.pipeline.segment_listeners.append(self.publisher.notify)
        self.done = threading.Event()
        self.live_sent = False
        self._live_lock = threading.Lock()
        self._last = (time.monotonic(), 0.0, 0)
        self.marks["built"] = time.time()

    # ------------------------------------------------------------------ status

    def status(self) -> dict[str, Any]:
        p = self.pipeline
        now = time.monotonic()
        t0, media0, frames0 = self._last
        media, frames = p.media_time, p.ingest.frames_in
        dt = now - t0
        self._last = (now, media, frames)
        waits = list(p.result_waits)
        sidecars = []
        for link in p.links:
            wm = p.timeline.watermark_of(link.name)
            sidecars.append({
                "name": link.name, "live": link.name in p.timeline.live_sidecars(),
                "failed": link.failed, "lag": round(max(0.0, media - wm), 3) if wm >= 0 else None,
                "results": link.stats.results, "dropped": link.stats.dropped, "errors": len(link.stats.errors),
                "last_error": link.stats.errors[-1][:300] if link.stats.errors else None})
        return {
            "type": "status", "media_time": round(media, 3), "frames": frames,
            "fps": round((frames - frames0) / dt, 2) if dt > 0 else 0.0,
            "speed": round((media - media0) / dt, 3) if dt > 0 else 0.0,
            "segments": self.publisher.published_segments, "event_bytes": self.publisher.state.event_bytes,
            "last_segment_at": self.publisher.last_published_at,
            "decision_waits": {"count": len(waits), "sum": round(sum(waits), 3),
                               "recent_max": round(max(waits[-10:]), 3) if waits else 0.0,
                               # published before every result arrived: the decision window ran out
                               "late": sum(1 for w in waits if p.window_s > 0 and w >= p.window_s * 0.99)},
            "sidecars": sidecars, "storage_error": self.publisher.error, "storage_full": self.publisher.storage_full,
            "rss": _rss_bytes(), "input_bytes": p.source.bytes_in,
        }

    def _send_live(self) -> None:
        """Tell the server the attempt is live (once), with the start's timeline."""
        with self._live_lock:
            if self.live_sent or self.publisher.published_segments <= 0:
                return
            self.live_sent = True
        self.marks.setdefault("first_segment", time.time())
        self.channel.send({"type": "live", "marks": {k: round(v, 3) for k, v in self.marks.items()}})

    def _first_loop(self) -> None:
        """Until the first segment is out: note when the first frame and the first segment came (every 20 ms;
        the status loop's second would blur a failover's timeline), and report live at once."""
        while not self.done.wait(0.02):
            if "first_frame" not in self.marks and self.pipeline.ingest.frames_in > 0:
                self.marks["first_frame"] = time.time()
            if self.publisher.published_segments > 0:
                self.marks["first_segment"] = time.time()
                self._send_live()
                return

    def _status_loop(self) -> None:
        while not self.done.wait(1.0):
            try:
                self.channel.send(self.status())
                self._send_live()
            except Exception:  # a status must never take the stream down
                log.exception("status report failed")

    # ------------------------------------------------------------------ commands

    def command(self, doc: dict[str, Any]) -> dict[str, Any]:
        cmd = doc.get("cmd")
        p = self.pipeline
        if cmd == "break":
            duration = float(doc.get("duration", 30.0))
            at = doc.get("at")
            delay = doc.get("in")
            start = float(at) if at is not None else p.media_time + (float(delay) if delay is not None else 4.0)
            if not (math.isfinite(start) and math.isfinite(duration)) or not 0 < duration <= 600:
                raise ValueError("a break needs a finite start and a duration in (0, 600] seconds")
            end = start + duration
            for b in p.schedule.breaks:
                b_end = b.end if b.end is not None else math.inf
                if start < b_end and b.start < end:
                    raise ValueError(f"overlaps break {b.id} ({b.start:.3f} s to "
                                     f"{'open' if b.end is None else f'{b_end:.3f} s'})")
            brk = p.schedule_break(start, duration)
            return {"id": brk.id, "start": round(brk.start, 3), "duration": brk.duration,
                    "live_edge": round(p.media_time, 3)}
        if cmd == "keep_centered":
            if p.crop_path is None:
                raise ValueError("this stream has no vertical rendition (no crop sidecar, or vertical off)")
            on = bool(doc.get("on", True))
            p.crop_path.keep_centered(on)
            return {"keep_centered": on}
        if cmd == "status":
            return self.status()
        raise ValueError(f"unknown command {cmd!r}")

    def _command_loop(self, stdin: IO[str]) -> None:
        for line in stdin:
            try:
                doc = json.loads(line)
            except ValueError:
                continue
            if doc.get("cmd") == "lease":
                with contextlib.suppress(TypeError, ValueError):
                    self.lease_deadline = time.monotonic() + float(doc.get("valid_s"))
                continue
            if doc.get("cmd") == "stop":
                log.info("stop requested by the server")
                self.pipeline.request_stop()
                continue
            try:
                result = self.command(doc)
                self.channel.send({"type": "reply", "id": doc.get("id"), "ok": True, "result": result})
            except (ValueError, TypeError, KeyError) as exc:
                self.channel.send({"type": "reply", "id": doc.get("id"), "ok": False, "error": str(exc)})
            except Exception as exc:
                log.exception("command %r failed", doc.get("cmd"))
                self.channel.send({"type": "reply", "id": doc.get("id"), "ok": False,
                                   "error": f"{type(exc).__name__}: {exc}"})
        # stdin closed: the server is gone (or wants us gone). Stop, and do not outlive it for long.
        if not self.done.is_set():
            log.warning("the server closed the control channel; stopping")
            self.pipeline.request_stop()
            threading.Timer(15.0, lambda: os._exit(1)).start()

    def _fence_loop(self) -> None:
        """Die the moment the lease deadline passes: another replica may own the stream from then on."""
        while not self.done.wait(0.1):
            deadline = self.lease_deadline
            if deadline is not None and time.monotonic() > deadline:
                log.error("the lease ran out without a renewal from the server: stopping now (fenced)")
                os.killpg(os.getpgrp(), signal.SIGKILL)

    # ------------------------------------------------------------------ run

    def run(self, stdin: IO[str]) -> int:
        from sidecast.contract.errors import ConfigError, SidecastError

        from .storage import StorageError

        threading.Thread(target=self._command_loop, args=(stdin,), name="commands", daemon=True).start()
        threading.Thread(target=self._status_loop, name="status", daemon=True).start()
        threading.Thread(target=self._first_loop, name="first", daemon=True).start()
        if self.lease_deadline is not None:
            threading.Thread(target=self._fence_loop, name="fence", daemon=True).start()
        self.publisher.start()
        code = EXIT_OK
        try:
            self.pipeline.run()
        except MemoryError:
            code = EXIT_MEMORY
            self.fail("memory", f"out of memory (the stream's cap is {self.spec.get('memory_limit', 0) >> 20} MiB)")
        except ConfigError as exc:
            code = EXIT_CONFIG
            self.fail("config", str(exc))
        except StorageError as exc:
            code = EXIT_STORAGE
            self.fail("storage", str(exc))
        except SidecastError as exc:
            code = EXIT_SOURCE
            self.fail("source", str(exc))
        except OSError as exc:
            code = EXIT_STORAGE if exc.errno in (28, 122) else 1  # ENOSPC, EDQUOT
            self.fail("storage" if code == EXIT_STORAGE else "crash", f"{exc.strerror or exc}")
        finally:
            self.publisher.close()
            self.done.set()
        if self.publisher.storage_full and code == EXIT_OK:
            code = EXIT_STORAGE
            self.fail("storage", self.publisher.error or "storage full")
        with contextlib.suppress(Exception):
            self.channel.send(self.status())
            self._send_live()
        return code

    def fail(self, kind: str, message: str) -> None:
        log.error("%s", message)
        self.channel.send({"type": "error", "kind": kind, "message": message[:2000]})


def main(argv: list[str] | None = None) -> int:
    """``--warm``: import the pipeline first, then wait for the spec (a pre-started worker of the warm pool:
    supervisor.py); its stderr moves to the stream's log (``log_path``) when the spec arrives."""
    marks = {"main": time.time()}
    warm = "--warm" in (sys.argv[1:] if argv is None else argv)
    channel = Channel(_private_stdout())
    if warm:
        with contextlib.suppress(Exception):  # a failing import fails below, with the stream's error path
            preimport()
        marks["imported"] = time.time()
        channel.send({"type": "warm"})
    stdin = sys.stdin
    line = stdin.readline()
    if not line:
        return 1
    marks["spec"] = time.time()
    spec = json.loads(line)
    if spec.get("log_path"):
        with contextlib.suppress(OSError):
            fd = os.open(spec["log_path"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            os.dup2(fd, 2)
            os.dup2(fd, 1)  # fd 1 follows stderr (see _private_stdout)
            os.close(fd)
    from sidecast.core.logs import setup_logging

    setup_logging(spec.get("log_level", "info"), spec.get("log_format", "text"))
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C in a terminal goes to the server, which stops us
    cap = int(spec.get("memory_limit", 0))
    try:
        _limit_memory(cap)
        worker = Worker(spec, channel, marks)
    except MemoryError:
        channel.send({"type": "error", "kind": "memory",
                      "message": f"out of memory while starting (the stream's cap is {cap >> 20} MiB)"})
        return EXIT_MEMORY
    except (ImportError, OSError) as exc:
        text = str(exc)
        if cap and ("failed to map segment" in text or "Cannot allocate memory" in text
                    or getattr(exc, "errno", None) == 12):
            # the dynamic loader ran out of address space: the cap is below what the process needs
            channel.send({"type": "error", "kind": "memory", "message": (
                f"out of memory while starting: the stream's cap of {cap >> 20} MiB is too small ({text[:200]})")})
            return EXIT_MEMORY
        channel.send({"type": "error", "kind": "crash", "message": text[:2000]})
        log.exception("the worker could not start")
        return 1
    except Exception as exc:  # configuration the pipeline refuses, a source that cannot be opened...
        from sidecast.contract.errors import ConfigError, SidecastError

        kind = "config" if isinstance(exc, ConfigError) else "source" if isinstance(exc, SidecastError) else "crash"
        channel.send({"type": "error", "kind": kind, "message": str(exc)[:2000]})
        if kind == "crash":
            log.exception("the worker could not start")
        return {"config": EXIT_CONFIG, "source": EXIT_SOURCE}.get(kind, 1)
    signal.signal(signal.SIGTERM, lambda *_: worker.pipeline.request_stop())
    return worker.run(stdin)


if __name__ == "__main__":
    sys.exit(main())
