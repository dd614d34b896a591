"""Prometheus ``/metrics`` (prometheus_client): per-stream series labelled ``stream``, read from the
supervisor's snapshot at scrape time (a custom collector: nothing to register or forget when streams come and
go, and the series of a deleted stream disappear with it).

Per stream: state (one series per state, 1 for the current one), ingest bitrate and fps, encode speed,
segments published, decision-window waits, sidecar lag, results, drops and errors, worker failures and
restarts, storage bytes, worker RSS. Server-wide: free disk, storage-full flag, webhook deliveries, shared
sidecar processes.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from .lifecycle import STATES


class ServerCollector:
    def __init__(self, server: Any) -> None:
        self.server = server

    def collect(self) -> Iterator[Metric]:
        snap = self.server.supervisor.metrics_snapshot()
        streams: list[dict[str, Any]] = snap["streams"]

        def gauge(name: str, doc: str, key: str, scale: float = 1.0) -> GaugeMetricFamily:
            g = GaugeMetricFamily(name, doc, labels=["stream"])
            for s in streams:
                if s.get(key) is not None:
                    g.add_metric([s["id"]], float(s[key]) * scale)
            return g

        state = GaugeMetricFamily("sidecast_stream_state", "1 for the stream's current lifecycle state",
                                  labels=["stream", "state"])
        for s in streams:
            for st in STATES:
                state.add_metric([s["id"], st], 1.0 if s["state"] == st else 0.0)
        yield state
        yield gauge("sidecast_stream_ingest_bitrate_bps", "bits/s received: what the publisher sent (push), the payload the demuxer read (pull)",
                    "input_bitrate")
        yield gauge("sidecast_stream_ingest_fps", "video frames/s ingested", "input_fps")
        yield gauge("sidecast_stream_encode_speed", "media seconds processed per second (1 = real time)", "speed")
        yield gauge("sidecast_stream_storage_bytes", "bytes the stream keeps in storage (live window, recordings)",
                    "storage_bytes")
        yield gauge("sidecast_stream_worker_rss_bytes", "resident memory of the stream's worker", "rss_bytes")
        segs = CounterMetricFamily("sidecast_stream_segments_published", "segments published (main ladder)",
                                   labels=["stream"])
        waits = CounterMetricFamily("sidecast_stream_decision_wait_seconds",
                                    "seconds segments waited for sidecar results (sum)", labels=["stream"])
        wait_n = CounterMetricFamily("sidecast_stream_decision_waits", "segments that went through the decision "
                                     "window", labels=["stream"])
        late = CounterMetricFamily("sidecast_stream_late_segments", "segments published before all their sidecar "
                                   "results arrived (the decision window ran out)", labels=["stream"])
        fails = CounterMetricFamily("sidecast_stream_errors", "worker failures (crashes, source and storage "
                                    "errors)", labels=["stream"])
        starts = CounterMetricFamily("sidecast_stream_worker_starts", "worker processes started", labels=["stream"])
        lag = GaugeMetricFamily("sidecast_stream_sidecar_lag_seconds", "how far a sidecar's results trail the "
                                "stream", labels=["stream", "sidecar"])
        up = GaugeMetricFamily("sidecast_stream_sidecar_up", "1 while the sidecar serves the stream",
                               labels=["stream", "sidecar"])
        results = CounterMetricFamily("sidecast_stream_sidecar_results", "results received", labels=["stream", "sidecar"])
        drops = CounterMetricFamily("sidecast_stream_sidecar_dropped", "frames dropped for a slow sidecar",
                                    labels=["stream", "sidecar"])
        errors = CounterMetricFamily("sidecast_stream_sidecar_errors", "sidecar errors", labels=["stream", "sidecar"])
        for s in streams:
            sid = s["id"]
            segs.add_metric([sid], s["totals"]["segments"])
            waits.add_metric([sid], s["totals"]["waits"])
            wait_n.add_metric([sid], s["totals"]["wait_count"])
            late.add_metric([sid], s["totals"]["late"])
            fails.add_metric([sid], s["failures_total"])
            starts.add_metric([sid], s["starts_total"])
            for sc in s.get("sidecars") or []:
                if sc.get("lag") is not None:
                    lag.add_metric([sid, sc["name"]], float(sc["lag"]))
                up.add_metric([sid, sc["name"]], 1.0 if sc.get("live") else 0.0)
            for name, tot in (s.get("sidecar_totals") or {}).items():
                results.add_metric([sid, name], tot["results"])
                drops.add_metric([sid, name], tot["dropped"])
                errors.add_metric([sid, name], tot["errors"])
        yield from (segs, waits, wait_n, late, fails, starts, lag, up, results, drops, errors)
        disk = GaugeMetricFamily("sidecast_disk_free_bytes", "free space where the server writes")
        if snap["disk_free"] is not None:
            disk.add_metric([], float(snap["disk_free"]))
        yield disk
        yield GaugeMetricFamily("sidecast_storage_full", "1 while writes are stopped for lack of space",
                                value=1.0 if snap["disk_full"] else 0.0)
        hooks = CounterMetricFamily("sidecast_webhook_deliveries", "webhook delivery attempts by outcome",
                                    labels=["outcome"])
        for outcome, n in snap["webhooks"].items():
            hooks.add_metric([outcome], n)
        yield hooks
        scs = GaugeMetricFamily("sidecast_shared_sidecar_up", "1 while the shared sidecar process runs",
                                labels=["sidecar"])
        for sc in snap["sidecars"]:
            scs.add_metric([sc["name"]], 1.0 if sc["running"] else 0.0)
        yield scs
        yield GaugeMetricFamily("sidecast_streams", "streams registered", value=float(len(streams)))
        pool = snap["warm_pool"]
        yield GaugeMetricFamily("sidecast_warm_workers_ready", "idle pre-started workers ready to take an attempt",
                                value=float(len(pool["ready"])))
        kinds = CounterMetricFamily("sidecast_worker_starts", "attempts started by kind: warm (a pre-started "
                                    "worker) or cold (a new interpreter)", labels=["kind"])
        kinds.add_metric(["warm"], pool["taken"])
        kinds.add_metric(["cold"], pool["cold"])
        yield kinds


def render(server: Any) -> tuple[bytes, str]:
    registry = getattr(server, "_metrics_registry", None)
    if registry is None:
        registry = CollectorRegistry()
        registry.register(ServerCollector(server))
        server._metrics_registry = registry
    return generate_latest(registry), CONTENT_TYPE_LATEST


__all__ = ["ServerCollector", "render"]
