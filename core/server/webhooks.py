"""Webhooks: ``stream.started``, ``stream.ended``, ``stream.failed``, ``recording.ready``, delivered signed
and retried.

Every delivery is a row in the registry before it is sent (so a restart loses none) and keeps its attempts,
its next try and the last answer: that table is the delivery log the API and the dashboard show.

The request: ``POST`` of a JSON body ``{"id", "type", "created_at", "stream_id", "data"}`` with headers
``Sidecast-Event``, ``Sidecast-Delivery`` and ``Sidecast-Signature: t=<unix time>,v1=<hex>`` where ``v1`` is
HMAC-SHA256 of ``"<t>.<body>"`` under the endpoint's secret (the scheme Stripe uses: the timestamp inside the
MAC lets a receiver refuse replays; ``verify_signature`` is the reference check). A 2xx answer is delivered;
anything else, a timeout or a refused connection is retried after 1, 2, 4... s (at most ``max_delay``),
``max_attempts`` times, then marked failed.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Mapping
from typing import Any

from .registry import DeliveryRow, Registry

log = logging.getLogger("sidecast.server.webhooks")

EVENT_TYPES = ("stream.started", "stream.ended", "stream.failed", "recording.ready")
SIGNATURE_HEADER = "Sidecast-Signature"


def sign(secret: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def verify_signature(secret: str, header: str, body: bytes, *, tolerance: float = 300.0,
                     now: float | None = None) -> bool:
    """What a receiver does: recompute the MAC, compare in constant time, refuse old timestamps."""
    parts = dict(p.partition("=")[::2] for p in header.split(","))
    ts, mac = parts.get("t", ""), parts.get("v1", "")
    if not ts.isdigit() or not mac:
        return False
    if abs((time.time() if now is None else now) - int(ts)) > tolerance:
        return False
    expected = sign(secret, int(ts), body).split("v1=", 1)[1]
    return hmac.compare_digest(mac, expected)


class Webhooks:
    """Queues events as deliveries and sends them from one background thread."""

    def __init__(self, registry: Registry, *, timeout: float = 5.0, max_attempts: int = 8,
                 base_delay: float = 1.0, max_delay: float = 300.0) -> None:
        self.registry = registry
        self.timeout = timeout
        self.max_attempts = max_attempts
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.sent = {"delivered": 0, "failed": 0, "retried": 0}
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="webhooks", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(10)

    def emit(self, event_type: str, stream_id: str | None, data: Mapping[str, Any]) -> int:
        """Queue ``event_type`` for every subscribed endpoint; returns how many deliveries were queued."""
        event_id = "evt_" + uuid.uuid4().hex[:20]
        body = json.dumps({"id": event_id, "type": event_type,
                           "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                           "stream_id": stream_id, "data": dict(data)}, separators=(",", ":"), default=str)
        n = self.registry.enqueue_deliveries(event_id, event_type, stream_id, body)
        if n:
            self._wake.set()
        return n

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                for d in self.registry.due_deliveries(time.time()):
                    if self._stop.is_set():
                        return
                    self._deliver(d)
                nxt = self.registry.next_delivery_at()
            except Exception:
                log.exception("webhook loop failed; retrying")
                nxt = time.time() + 1
            wait = 60.0 if nxt is None else max(0.0, min(60.0, nxt - time.time()))
            self._wake.wait(wait)
            self._wake.clear()

    def _deliver(self, d: DeliveryRow) -> None:
        try:
            hook = self.registry.get_webhook(d.webhook_id)
        except Exception:
            self.registry.record_attempt(d.id, status="failed", http_status=None, error="the webhook was deleted",
                                         next_at=None)
            return
        body = d.payload.encode()
        req = urllib.request.Request(hook.url, data=body, method="POST", headers={
            "Content-Type": "application/json", "User-Agent": "sidecast-webhooks/1",
            "Sidecast-Event": d.type, "Sidecast-Delivery": str(d.id),
            SIGNATURE_HEADER: sign(hook.secret, int(time.time()), body)})
        status: int | None = None
        error: str | None = None
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:  # noqa: S310 (operator-given URL)
                status = resp.status
                resp.read(4096)
        except urllib.error.HTTPError as exc:
            status, error = exc.code, f"HTTP {exc.code}"
        except (urllib.error.URLError, OSError, TimeoutError) as exc:
            error = str(getattr(exc, "reason", exc))[:300]
        attempts = d.attempts + 1
        if status is not None and 200 <= status < 300:
            self.registry.record_attempt(d.id, status="delivered", http_status=status, error=None, next_at=None)
            self.sent["delivered"] += 1
        elif attempts >= self.max_attempts:
            self.registry.record_attempt(d.id, status="failed", http_status=status, error=error, next_at=None)
            self.sent["failed"] += 1
            log.warning("webhook delivery failed for good", extra={"url": hook.url, "type": d.type,
                                                                    "attempts": attempts, "error": error})
        else:
            delay = min(self.max_delay, self.base_delay * 2 ** (attempts - 1))
            self.registry.record_attempt(d.id, status="pending", http_status=status, error=error,
                                         next_at=time.time() + delay)
            self.sent["retried"] += 1


__all__ = ["EVENT_TYPES", "SIGNATURE_HEADER", "Webhooks", "sign", "verify_signature"]
