"""Where the decisioning API keeps its state: the catalog (creatives, campaigns, ad sources, scheduled
breaks), decisions, per-session frequency counts, recorded beacons and the outbox of tracking pings still
to send.

Two implementations behind one small interface: SQLite (embedded, the default, one replica) and Redis
(shared by every replica). Both make "record this beacon" an atomic first-writer-wins operation that also
queues its tracking pings, which is what makes forwarding happen once even across restarts and replicas.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Protocol

Kind = Literal["creatives", "campaigns", "sources", "breaks"]
KINDS: tuple[Kind, ...] = ("creatives", "campaigns", "sources", "breaks")

__all__ = ["Kind", "KINDS", "Store", "OutboxItem", "open_store"]


@dataclass(frozen=True)
class OutboxItem:
    """One tracking ping to send: `key` identifies it in the store so it can be marked done or retried."""

    key: str
    url: str
    attempts: int = 0


class Store(Protocol):
    name: str

    def ping(self) -> None: ...
    def put(self, kind: Kind, id: str, doc: dict[str, Any], *, create: bool = True) -> bool: ...
    def get(self, kind: Kind, id: str) -> dict[str, Any] | None: ...
    def items(self, kind: Kind) -> list[dict[str, Any]]: ...
    def delete(self, kind: Kind, id: str) -> bool: ...
    def decision_context(self, session_id: str, break_id: str = "") -> tuple[int, dict[str, int], dict[str, Any] | None]:
        """Catalog version, the session's frequency counts, and the decision already made for this break."""
        ...

    def save_decision(self, decision: dict[str, Any], counted: list[str]) -> dict[str, Any]:
        """Record a decision and count its lines; if the session's break was decided meanwhile (a race),
        record nothing and return that earlier decision instead."""
        ...

    def get_decision(self, decision_id: str) -> dict[str, Any] | None: ...
    def record_beacon(self, decision_id: str, ad_index: int, event: str, urls: list[str]) -> bool: ...
    def beacons(self, decision_id: str) -> list[dict[str, Any]]: ...
    def take_outbox(self, limit: int) -> list[OutboxItem]: ...
    def finish_outbox(self, item: OutboxItem, ok: bool, give_up: bool) -> None: ...
    def close(self) -> None: ...


def open_store(db_path: str = "sidecast-ads.db", redis_url: str | None = None) -> Store:
    """Redis when a URL is given (several replicas), else the SQLite file at `db_path`."""
    if redis_url:
        from sidecast.ads.store.redis import RedisStore
        return RedisStore(redis_url)
    from sidecast.ads.store.sqlite import SqliteStore
    return SqliteStore(db_path)
