"""The packager: publishes each closed segment through every output.

Every output runs on its own worker thread and takes the segments in order from its own bounded queue.
Before publishing a segment, an output waits for the sidecars that declared the result kinds it needs
(``Output.needs``), and only for them, under the decision window: the main ladder for bitrate hints, the
vertical ladder for crops, captions for cues, audio for nothing. So a slow caption model delays the
caption rendition, never the video; a slow crop model delays the vertical rendition, never the main ladder.

Waiting rules (per output, per segment):
- live sources and ``--realtime``: at most the decision window after the segment closed;
- files processed faster than real time: until the sidecars have covered the segment, for as long as they
  keep making progress (complete results matter more than latency), ending after a stall;
- the last segment: up to the drain timeout, for the sidecars' end-of-stream flush.
A sidecar that is disconnected, stalled or failed is not waited for at all.

Bounded queues keep memory flat: when any output falls behind, ``put`` blocks the ingest.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence

from .links import SidecarLink
from .outputs.base import Output, SegmentJob
from .timeline import Timeline

log = logging.getLogger("sidecast.packager")

QUEUE_SEGMENTS = 3  # segments an output may have waiting; the ingest blocks beyond that


class _Worker:
    def __init__(self, output: Output, packager: Packager) -> None:
        self.output = output
        self.packager = packager
        self.jobs: queue.Queue[SegmentJob | None] = queue.Queue(maxsize=QUEUE_SEGMENTS)
        self.published = 0
        self.failed: BaseException | None = None
        self.thread = threading.Thread(target=self._loop, name=f"out-{output.name}", daemon=True)

    def _loop(self) -> None:
        while True:
            job = self.jobs.get()
            if job is None:
                return
            if self.packager.error is not None:
                continue  # drain: the stream is failing, publish nothing more
            if self.failed is not None:
                self.packager.published(job, self)  # switched off: the others go on without it
                continue
            try:
                self.packager.wait_results(job, self.output)
                self.output.publish(job)
                self.published += 1
            except BaseException as exc:
                if self.output.essential:  # surface in the ingest thread; never die silently
                    log.exception("publishing segment %d of %s failed", job.index, self.output.name)
                    self.packager.fail(exc)
                    continue
                log.exception("publishing segment %d of %s failed; the stream goes on without it",
                              job.index, self.output.name)
                self.failed = exc
            self.packager.published(job, self)


class Packager:
    def __init__(self, outputs: Sequence[Output], timeline: Timeline, links: Sequence[SidecarLink], *,
                 window_s: float, vod: bool, drain_timeout: float,
                 on_segment: Callable[[SegmentJob], None] | None = None) -> None:
        self.timeline = timeline
        self.links = links
        self.window_s = window_s
        self.vod = vod
        self.drain_timeout = drain_timeout
        self.on_segment = on_segment
        self.error: BaseException | None = None
        self.result_waits: list[float] = []  # seconds the main ladder's segments waited for sidecar results
        self._lock = threading.Lock()
        self._done: dict[int, int] = {}      # segment index -> outputs that published it
        self.segments_done = 0
        self.workers = [_Worker(o, self) for o in outputs]
        for w in self.workers:
            w.thread.start()

    # ------------------------------------------------------------ ingest side

    def put(self, job: SegmentJob) -> None:
        """Hand a closed segment to every output; blocks while one of them is QUEUE_SEGMENTS behind."""
        for w in self.workers:
            while True:
                if self.error is not None:
                    raise self.error
                try:
                    w.jobs.put(job, timeout=0.5)
                    break
                except queue.Full:
                    continue

    def close(self) -> None:
        """No more segments: let every output finish what it has, then stop its thread."""
        for w in self.workers:
            while w.thread.is_alive():
                try:
                    w.jobs.put(None, timeout=0.5)
                    break
                except queue.Full:
                    continue
        for w in self.workers:
            w.thread.join()

    def fail(self, exc: BaseException) -> None:
        with self._lock:
            if self.error is None:
                self.error = exc

    # ------------------------------------------------------------ output side

    def producers_of(self, output: Output) -> list[str]:
        """The sidecars whose declared results this output uses."""
        return [lk.name for lk in self.links
                if lk.description is not None and lk.failed is None
                and output.needs.intersection(lk.description.produces)]

    def wait_results(self, job: SegmentJob, output: Output) -> None:
        names = self.producers_of(output)
        if not names:
            return
        if job.final:
            # The ingest sent the end of stream; the last segment waits for the flush (drain timeout).
            deadline = time.monotonic() + max(self.drain_timeout, self.window_s)
        else:
            deadline = job.closed_at + self.window_s
        began = time.monotonic()
        covered = self.timeline.wait_covered(job.end, deadline, names=names,
                                             stall=max(10.0, 3 * self.window_s) if self.vod else None)
        waited = time.monotonic() - began
        if output.name == "video-main":
            self.result_waits.append(waited)
        if not covered:
            late = [n for n in names if self.timeline.watermark_of(n) < job.end]
            log.info("decision window closed without all results",
                     extra={"segment": job.index, "output": output.name, "late": ",".join(late)})

    def published(self, job: SegmentJob, worker: _Worker) -> None:
        with self._lock:
            n = self._done.get(job.index, 0) + 1
            complete = n == len(self.workers)
            if complete:
                self._done.pop(job.index, None)
                self.segments_done += 1
            else:
                self._done[job.index] = n
        if complete:
            job.frames.clear()  # every output is done with the pictures
            if self.on_segment is not None:
                self.on_segment(job)


__all__ = ["Packager", "QUEUE_SEGMENTS"]
