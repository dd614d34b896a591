"""The registry: what the server knows that must survive a restart, in one SQLite file.

Tables (schema version 1):

- ``streams``: one row per stream. ``options`` is the stream's ``RunOptions`` in config-file form (JSON): the
  pipeline's own declaration is the schema, the registry does not copy its fields into columns. ``settings``
  holds the server's fields (DVR window, recording, playback protection, memory cap). The stream key is
  stored as its SHA-256 only (``key_hash``, unique, indexed: a publish is one lookup), with a short prefix
  to show. ``revision`` grows with every change (a worker started on an older revision is out of date).
- ``api_keys``: hashed API keys and their scopes.
- ``events``: one row per broadcast of a stream (go-live to ENDLIST): when it started, went live, ended, and
  when its media may be deleted (``purge_after``: after the live grace period, or after the recording's
  retention).
- ``webhooks`` and ``deliveries``: endpoints, and every delivery with its attempts, next try and last answer
  (the delivery log; pending deliveries survive a restart).
- ``meta``: the schema version and the server secret (signs playback tokens, derives SRT passphrases).

Only the server process writes here (workers never open it), through one connection guarded by a lock:
every operation is a few rows, far below the cost of a second connection per thread.

**Fleets.** The same tables live in PostgreSQL when several ``sidecast server`` replicas share one registry
(``--registry postgresql://...``; fleet.py). Three more tables serve them: ``replicas`` (each replica's
heartbeat, capacity and URLs), ``leases`` (which replica runs which stream, until when, with an ``epoch``
that grows with every claim: the fencing token; ``expires_at = 0`` once released), ``fleet_peers`` (the
peers each replica asks before it keeps publishing through a registry outage: see fleet.py) and
``lease_log`` (every claim, for audits and tests).
Lease times are the database's clock, never a replica's, so replicas with skewed clocks still agree on who
holds what. SQL is written once, with ``?`` parameters; the PostgreSQL connection translates them, and the
schema differs only in types (``DOUBLE PRECISION`` for times, ``BIGINT`` for sizes, ``BYTEA`` for the
secret, an identity column for deliveries).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import keys as K

SCHEMA_VERSION = 1

log = logging.getLogger("sidecast.server.registry")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS streams (
  id TEXT PRIMARY KEY,
  name TEXT NOT NULL DEFAULT '',
  ingest TEXT NOT NULL CHECK (ingest IN ('push', 'pull')),
  source TEXT,
  enabled INTEGER NOT NULL DEFAULT 1,
  options TEXT NOT NULL DEFAULT '{}',
  settings TEXT NOT NULL DEFAULT '{}',
  key_hash TEXT UNIQUE,
  key_prefix TEXT,
  key_created_at REAL,
  revision INTEGER NOT NULL DEFAULT 1,
  created_at REAL NOT NULL,
  updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS api_keys (
  id TEXT PRIMARY KEY,
  name TEXT NOT NULL DEFAULT '',
  hash TEXT NOT NULL UNIQUE,
  prefix TEXT NOT NULL,
  scopes TEXT NOT NULL,
  created_at REAL NOT NULL,
  last_used_at REAL
);
CREATE TABLE IF NOT EXISTS events (
  stream_id TEXT NOT NULL,
  id TEXT NOT NULL,
  started_at REAL NOT NULL,
  live_at REAL,
  ended_at REAL,
  segments INTEGER NOT NULL DEFAULT 0,
  bytes INTEGER NOT NULL DEFAULT 0,
  recording INTEGER NOT NULL DEFAULT 0,
  recording_ready_at REAL,
  purge_after REAL,
  purged_at REAL,
  PRIMARY KEY (stream_id, id)
);
CREATE INDEX IF NOT EXISTS events_purge ON events (purged_at, purge_after);
CREATE TABLE IF NOT EXISTS webhooks (
  id TEXT PRIMARY KEY,
  url TEXT NOT NULL,
  events TEXT NOT NULL,
  secret TEXT NOT NULL,
  enabled INTEGER NOT NULL DEFAULT 1,
  created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS deliveries (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  webhook_id TEXT NOT NULL,
  event_id TEXT NOT NULL,
  type TEXT NOT NULL,
  stream_id TEXT,
  payload TEXT NOT NULL,
  status TEXT NOT NULL CHECK (status IN ('pending', 'delivered', 'failed')),
  attempts INTEGER NOT NULL DEFAULT 0,
  next_at REAL,
  last_status INTEGER,
  last_error TEXT,
  created_at REAL NOT NULL,
  updated_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS deliveries_due ON deliveries (status, next_at);
CREATE TABLE IF NOT EXISTS replicas (
  id TEXT PRIMARY KEY,
  media_url TEXT NOT NULL DEFAULT '',
  api_url TEXT NOT NULL DEFAULT '',
  capacity INTEGER NOT NULL DEFAULT 0,
  started_at REAL NOT NULL,
  seen_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS leases (
  stream_id TEXT PRIMARY KEY,
  owner TEXT NOT NULL,
  epoch INTEGER NOT NULL,
  acquired_at REAL NOT NULL,
  expires_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS fleet_peers (
  replica TEXT NOT NULL,
  peer TEXT NOT NULL,
  PRIMARY KEY (replica, peer)
);
CREATE TABLE IF NOT EXISTS lease_log (
  stream_id TEXT NOT NULL,
  epoch INTEGER NOT NULL,
  owner TEXT NOT NULL,
  acquired_at REAL NOT NULL
);
"""

# PostgreSQL: the same tables; REAL is 4 bytes there (times would lose their seconds), so DOUBLE PRECISION.
_PG_SCHEMA = (_SCHEMA.replace(" REAL", " DOUBLE PRECISION").replace("value BLOB", "value BYTEA")
              .replace("bytes INTEGER", "bytes BIGINT").replace("epoch INTEGER", "epoch BIGINT")
              .replace("id INTEGER PRIMARY KEY AUTOINCREMENT", "id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY"))

# "now" in seconds since the epoch, by the database's clock (lease times are never a replica's clock)
_SQLITE_NOW = "((julianday('now') - 2440587.5) * 86400.0)"
_PG_NOW = "extract(epoch from clock_timestamp())::double precision"


class RegistryError(Exception):
    """Base of the registry's refusals."""


class NotFound(RegistryError):
    pass


class RegistryUnavailable(RegistryError):
    """The registry's database cannot be reached (a PostgreSQL outage): nothing can be read or written now."""


class Conflict(RegistryError):
    pass


@dataclass
class StreamRow:
    id: str
    name: str
    ingest: str                       # "push" | "pull"
    source: str | None
    enabled: bool
    options: dict[str, Any]
    settings: dict[str, Any]
    key_prefix: str | None
    key_created_at: float | None
    revision: int
    created_at: float
    updated_at: float


@dataclass
class ApiKeyRow:
    id: str
    name: str
    prefix: str
    scopes: list[str]
    created_at: float
    last_used_at: float | None

    def allows(self, scope: str) -> bool:
        return "admin" in self.scopes or scope in self.scopes


@dataclass
class EventRow:
    stream_id: str
    id: str
    started_at: float
    live_at: float | None
    ended_at: float | None
    segments: int
    bytes: int
    recording: bool
    recording_ready_at: float | None
    purge_after: float | None
    purged_at: float | None


@dataclass
class WebhookRow:
    id: str
    url: str
    events: list[str]
    secret: str = field(repr=False)
    enabled: bool
    created_at: float


@dataclass
class DeliveryRow:
    id: int
    webhook_id: str
    event_id: str
    type: str
    stream_id: str | None
    payload: str
    status: str
    attempts: int
    next_at: float | None
    last_status: int | None
    last_error: str | None
    created_at: float
    updated_at: float


@dataclass
class LeaseRow:
    stream_id: str
    owner: str
    epoch: int
    acquired_at: float
    expires_at: float


@dataclass
class ReplicaRow:
    id: str
    media_url: str
    api_url: str
    capacity: int
    started_at: float
    seen_at: float


class _PgRow(dict[str, Any]):
    """A row readable by name and by position, like sqlite3.Row."""

    def __getitem__(self, k: Any) -> Any:
        if isinstance(k, int):
            return list(self.values())[k]
        return super().__getitem__(k)


class _PgConnection:
    """A PostgreSQL connection that looks like the sqlite3 one the registry uses: ``execute(sql, args)`` with
    ``?`` parameters, explicit BEGIN/COMMIT, rows by name or position. A lost connection is opened again on
    the next call; while the database is unreachable every call raises RegistryUnavailable."""

    def __init__(self, url: str, connect_timeout: float = 3.0) -> None:
        self.url = url
        self.connect_timeout = connect_timeout
        self._conn: Any = None
        self._connect()

    def _connect(self) -> Any:
        import psycopg

        if self._conn is not None and not self._conn.closed and not self._conn.broken:
            return self._conn
        try:
            # a registry whose network fails silently must not hold a statement for the kernel's retransmission
            # timeout (~15 min): unacknowledged data or a silent peer fail the connection within seconds
            self._conn = psycopg.connect(self.url, autocommit=True, connect_timeout=max(1, int(self.connect_timeout)),
                                         row_factory=_pg_row_factory, tcp_user_timeout=5000, keepalives=1,
                                         keepalives_idle=5, keepalives_interval=2, keepalives_count=2)
        except psycopg.OperationalError as exc:
            self._conn = None
            raise RegistryUnavailable(f"the registry database is unreachable ({_first_line(exc)})") from None
        return self._conn

    def execute(self, sql: str, args: tuple[Any, ...] | list[Any] = ()) -> Any:
        import psycopg

        conn = self._connect()
        try:
            return conn.execute(sql.replace("?", "%s"), tuple(args))
        except psycopg.errors.UniqueViolation as exc:
            raise sqlite3.IntegrityError(f"UNIQUE constraint failed: {_first_line(exc)}") from None
        except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
            if conn.broken or conn.closed:
                raise RegistryUnavailable(f"the registry database is unreachable ({_first_line(exc)})") from None
            raise

    def executescript(self, script: str) -> None:
        for stmt in script.split(";"):
            if stmt.strip():
                self.execute(stmt)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()


def _pg_connect_patiently(url: str, patience: float) -> _PgConnection:
    """The first connection, tried again for ``patience`` seconds (Registry's ``start_patience``)."""
    deadline = time.monotonic() + patience
    while True:
        try:
            return _PgConnection(url)
        except RegistryUnavailable as exc:
            if time.monotonic() + 1.0 > deadline:
                raise
            log.warning("%s; trying again (for up to %.0f s more)", exc, deadline - time.monotonic())
            time.sleep(1.0)


def _pg_row_factory(cursor: Any) -> Callable[[Sequence[Any]], _PgRow]:
    names = [c.name for c in cursor.description or []]
    return lambda values: _PgRow(zip(names, values, strict=True))


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _stream(r: sqlite3.Row) -> StreamRow:
    return StreamRow(id=r["id"], name=r["name"], ingest=r["ingest"], source=r["source"], enabled=bool(r["enabled"]),
                     options=json.loads(r["options"]), settings=json.loads(r["settings"]), key_prefix=r["key_prefix"],
                     key_created_at=r["key_created_at"], revision=r["revision"], created_at=r["created_at"],
                     updated_at=r["updated_at"])


def _event(r: sqlite3.Row) -> EventRow:
    return EventRow(stream_id=r["stream_id"], id=r["id"], started_at=r["started_at"], live_at=r["live_at"],
                    ended_at=r["ended_at"], segments=r["segments"], bytes=r["bytes"], recording=bool(r["recording"]),
                    recording_ready_at=r["recording_ready_at"], purge_after=r["purge_after"],
                    purged_at=r["purged_at"])


def _api_key(r: sqlite3.Row) -> ApiKeyRow:
    return ApiKeyRow(id=r["id"], name=r["name"], prefix=r["prefix"], scopes=json.loads(r["scopes"]),
                     created_at=r["created_at"], last_used_at=r["last_used_at"])


def _webhook(r: sqlite3.Row) -> WebhookRow:
    return WebhookRow(id=r["id"], url=r["url"], events=json.loads(r["events"]), secret=r["secret"],
                      enabled=bool(r["enabled"]), created_at=r["created_at"])


def _delivery(r: sqlite3.Row) -> DeliveryRow:
    return DeliveryRow(**{k: r[k] for k in r.keys()})  # noqa: SIM118 (sqlite3.Row has no __iter__ of names)


class Registry:
    """The server's SQLite registry (see the module docstring for the tables)."""

    START_PATIENCE = 30.0  # seconds a shared registry may take to answer a starting replica

    def __init__(self, location: Path | str, start_patience: float = START_PATIENCE) -> None:
        """``location``: the SQLite file, or a ``postgresql://`` URL (a registry shared by a fleet).

        ``start_patience``: how long a shared registry that does not answer (refused, or slower than the
        connection's 3 s timeout) is tried again before RegistryUnavailable. A replica starting beside its
        database (a Kubernetes rollout, a node coming back), or on a loaded box where a new backend takes
        more than 3 s (a full test run at load 15-20, 2026-12-01), waits instead of exiting at once."""
        text = str(location)
        self.shared = text.startswith(("postgresql://", "postgres://"))
        self._lock = threading.RLock()
        self._db: Any
        self.path: Path | None
        if self.shared:
            self.path = None
            self.url = text
            self.now_sql = _PG_NOW
            self._db = _pg_connect_patiently(text, start_patience)
            with self._lock:
                # one replica at a time creates the tables (several may start together)
                self._db.execute("BEGIN")
                try:
                    self._db.execute("SELECT pg_advisory_xact_lock(7261534)")
                    self._db.executescript(_PG_SCHEMA)
                    self._check_version()
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise
                self._db.execute("COMMIT")
        else:
            self.path = Path(location)
            self.url = str(self.path)
            self.now_sql = _SQLITE_NOW
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fresh = not self.path.exists()
            self._db = sqlite3.connect(str(self.path), check_same_thread=False, timeout=10, isolation_level=None)
            if fresh:
                os.chmod(self.path, 0o600)  # holds webhook secrets and the server secret
            self._db.row_factory = sqlite3.Row
            with self._lock:
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute("PRAGMA synchronous=NORMAL")
                self._db.executescript(_SCHEMA)
                self._check_version()
        self.secret = self._server_secret()

    def _check_version(self) -> None:
        row = self._db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        if row is None:
            self._db.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION).encode(),))
        elif int(row[0] if isinstance(row[0], str) else bytes(row[0])) > SCHEMA_VERSION:
            raise RegistryError(f"{self.url} was written by a newer sidecast (schema {row[0]!r}); "
                                "upgrade sidecast to use it")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def _tx(self) -> Iterator[Any]:
        with self._lock:
            self._db.execute("BEGIN" if self.shared else "BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                with contextlib.suppress(Exception):
                    self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _one(self, sql: str, args: tuple[Any, ...] = ()) -> sqlite3.Row | None:
        with self._lock:
            row: sqlite3.Row | None = self._db.execute(sql, args).fetchone()
            return row

    def _all(self, sql: str, args: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        with self._lock:
            return list(self._db.execute(sql, args).fetchall())

    def ping(self) -> None:
        """Raises sqlite3.Error (or RegistryUnavailable) when the registry cannot be read (readiness)."""
        self._one("SELECT 1")

    # ------------------------------------------------------------------ meta

    def _server_secret(self) -> bytes:
        with self._tx() as db:
            row = db.execute("SELECT value FROM meta WHERE key='secret'").fetchone()
            if row is not None:
                return bytes(row[0])
            secret = secrets.token_bytes(32)
            db.execute("INSERT INTO meta VALUES ('secret', ?) ON CONFLICT (key) DO NOTHING", (secret,))
        row = self._one("SELECT value FROM meta WHERE key='secret'")  # another replica may have been first
        assert row is not None
        return bytes(row[0])

    # ------------------------------------------------------------------ streams

    def create_stream(self, stream_id: str, *, ingest: str, name: str = "", source: str | None = None,
                      enabled: bool = True, options: Mapping[str, Any] | None = None,
                      settings: Mapping[str, Any] | None = None) -> StreamRow:
        now = time.time()
        try:
            with self._tx() as db:
                db.execute("INSERT INTO streams (id, name, ingest, source, enabled, options, settings, created_at, "
                           "updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                           (stream_id, name, ingest, source, int(enabled), json.dumps(dict(options or {})),
                            json.dumps(dict(settings or {})), now, now))
        except sqlite3.IntegrityError as exc:
            if "UNIQUE" not in str(exc):
                raise
            raise Conflict(f"a stream with id {stream_id!r} already exists") from None
        return self.get_stream(stream_id)

    def get_stream(self, stream_id: str) -> StreamRow:
        row = self._one("SELECT * FROM streams WHERE id = ?", (stream_id,))
        if row is None:
            raise NotFound(f"no stream {stream_id!r}")
        return _stream(row)

    def list_streams(self, limit: int = 1000, offset: int = 0) -> list[StreamRow]:
        return [_stream(r) for r in self._all("SELECT * FROM streams ORDER BY created_at, id LIMIT ? OFFSET ?",
                                              (limit, offset))]

    def count_streams(self) -> int:
        row = self._one("SELECT COUNT(*) FROM streams")
        return int(row[0]) if row else 0

    def update_stream(self, stream_id: str, **changes: Any) -> StreamRow:
        """Change some of name, source, enabled, options, settings; bumps the revision."""
        allowed = {"name", "source", "enabled", "options", "settings"}
        bad = set(changes) - allowed
        if bad:
            raise ValueError(f"cannot change {sorted(bad)}")
        if not changes:
            return self.get_stream(stream_id)
        cols, args = [], []
        for k, v in changes.items():
            cols.append(f"{k} = ?")
            args.append(json.dumps(v) if k in ("options", "settings") else (int(v) if k == "enabled" else v))
        with self._tx() as db:
            cur = db.execute(f"UPDATE streams SET {', '.join(cols)}, revision = revision + 1, updated_at = ? "
                             "WHERE id = ?", (*args, time.time(), stream_id))
            if cur.rowcount == 0:
                raise NotFound(f"no stream {stream_id!r}")
        return self.get_stream(stream_id)

    def delete_stream(self, stream_id: str) -> None:
        with self._tx() as db:
            cur = db.execute("DELETE FROM streams WHERE id = ?", (stream_id,))
            if cur.rowcount == 0:
                raise NotFound(f"no stream {stream_id!r}")

    def rotate_stream_key(self, stream_id: str) -> str:
        """A new stream key for ``stream_id`` (the old one stops working now); returns it, the only time it
        is ever available in clear."""
        key = K.new_token(K.STREAM_KEY_PREFIX)
        with self._tx() as db:
            cur = db.execute("UPDATE streams SET key_hash = ?, key_prefix = ?, key_created_at = ?, "
                             "updated_at = ? WHERE id = ?",
                             (K.hash_token(key), K.display_prefix(key), time.time(), time.time(), stream_id))
            if cur.rowcount == 0:
                raise NotFound(f"no stream {stream_id!r}")
        return key

    def stream_for_key(self, key: str) -> StreamRow | None:
        row = self._one("SELECT * FROM streams WHERE key_hash = ?", (K.hash_token(key),))
        return _stream(row) if row is not None else None

    # ------------------------------------------------------------------ API keys

    def create_api_key(self, name: str, scopes: list[str], token: str | None = None) -> tuple[str, ApiKeyRow]:
        """A new API key (or ``token`` itself, for a key given by the operator); returns (key, its row)."""
        unknown = sorted(set(scopes) - set(K.SCOPES))
        if unknown or not scopes:
            raise ValueError(f"unknown scope(s) {unknown}: choose from {', '.join(K.SCOPES)}" if unknown
                             else "an API key needs at least one scope")
        token = token or K.new_token(K.API_KEY_PREFIX)
        key_id = uuid.uuid4().hex[:12]
        try:
            with self._tx() as db:
                db.execute("INSERT INTO api_keys (id, name, hash, prefix, scopes, created_at) VALUES (?, ?, ?, ?, ?, ?)",
                           (key_id, name, K.hash_token(token), K.display_prefix(token), json.dumps(sorted(set(scopes))),
                            time.time()))
        except sqlite3.IntegrityError:
            raise Conflict("that API key exists already") from None
        row = self._one("SELECT * FROM api_keys WHERE id = ?", (key_id,))
        assert row is not None
        return token, _api_key(row)

    def authenticate(self, token: str) -> ApiKeyRow | None:
        row = self._one("SELECT * FROM api_keys WHERE hash = ?", (K.hash_token(token),))
        if row is None:
            return None
        info = _api_key(row)
        now = time.time()
        if info.last_used_at is None or now - info.last_used_at > 60:  # a write per minute, not per call
            with self._lock:
                self._db.execute("UPDATE api_keys SET last_used_at = ? WHERE id = ?", (now, info.id))
            info.last_used_at = now
        return info

    def list_api_keys(self) -> list[ApiKeyRow]:
        return [_api_key(r) for r in self._all("SELECT * FROM api_keys ORDER BY created_at")]

    def count_api_keys(self) -> int:
        row = self._one("SELECT COUNT(*) FROM api_keys")
        return int(row[0]) if row else 0

    def delete_api_key(self, key_id: str) -> None:
        with self._tx() as db:
            if db.execute("DELETE FROM api_keys WHERE id = ?", (key_id,)).rowcount == 0:
                raise NotFound(f"no API key {key_id!r}")

    # ------------------------------------------------------------------ events

    def open_event(self, stream_id: str, event_id: str, recording: bool) -> None:
        with self._tx() as db:
            db.execute("INSERT INTO events (stream_id, id, started_at, recording) VALUES (?, ?, ?, ?)",
                       (stream_id, event_id, time.time(), int(recording)))

    def event_live(self, stream_id: str, event_id: str) -> None:
        with self._tx() as db:
            db.execute("UPDATE events SET live_at = COALESCE(live_at, ?) WHERE stream_id = ? AND id = ?",
                       (time.time(), stream_id, event_id))

    def close_event(self, stream_id: str, event_id: str, *, segments: int, size: int, purge_after: float | None,
                    recording_ready: bool) -> None:
        now = time.time()
        with self._tx() as db:
            db.execute("UPDATE events SET ended_at = ?, segments = ?, bytes = ?, purge_after = ?, "
                       "recording_ready_at = ? WHERE stream_id = ? AND id = ?",
                       (now, segments, size, purge_after, now if recording_ready else None, stream_id, event_id))

    def stored_bytes(self, stream_id: str) -> int:
        """Bytes kept for the stream's ended events that are not purged yet."""
        row = self._one("SELECT COALESCE(SUM(bytes), 0) FROM events WHERE stream_id = ? AND ended_at IS NOT NULL "
                        "AND purged_at IS NULL", (stream_id,))
        return int(row[0]) if row else 0

    def get_event(self, stream_id: str, event_id: str) -> EventRow:
        row = self._one("SELECT * FROM events WHERE stream_id = ? AND id = ?", (stream_id, event_id))
        if row is None:
            raise NotFound(f"no event {event_id!r} of stream {stream_id!r}")
        return _event(row)

    def list_events(self, stream_id: str, limit: int = 100) -> list[EventRow]:
        return [_event(r) for r in self._all("SELECT * FROM events WHERE stream_id = ? ORDER BY started_at DESC "
                                             "LIMIT ?", (stream_id, limit))]

    def open_events(self) -> list[EventRow]:
        """Events a previous run of the server left open (it stopped or crashed mid-broadcast)."""
        return [_event(r) for r in self._all("SELECT * FROM events WHERE ended_at IS NULL")]

    def due_purges(self, now: float) -> list[EventRow]:
        return [_event(r) for r in self._all("SELECT * FROM events WHERE purged_at IS NULL AND purge_after IS NOT "
                                             "NULL AND purge_after <= ? ORDER BY purge_after LIMIT 100", (now,))]

    def event_purged(self, stream_id: str, event_id: str) -> None:
        with self._tx() as db:
            db.execute("UPDATE events SET purged_at = ? WHERE stream_id = ? AND id = ?",
                       (time.time(), stream_id, event_id))

    def delete_events(self, stream_id: str) -> None:
        with self._tx() as db:
            db.execute("DELETE FROM events WHERE stream_id = ?", (stream_id,))

    # ------------------------------------------------------------------ webhooks

    def create_webhook(self, url: str, events: list[str], secret: str | None = None) -> WebhookRow:
        hook_id = uuid.uuid4().hex[:12]
        with self._tx() as db:
            db.execute("INSERT INTO webhooks (id, url, events, secret, created_at) VALUES (?, ?, ?, ?, ?)",
                       (hook_id, url, json.dumps(sorted(set(events))), secret or K.new_token("whsec_"), time.time()))
        return self.get_webhook(hook_id)

    def get_webhook(self, hook_id: str) -> WebhookRow:
        row = self._one("SELECT * FROM webhooks WHERE id = ?", (hook_id,))
        if row is None:
            raise NotFound(f"no webhook {hook_id!r}")
        return _webhook(row)

    def list_webhooks(self) -> list[WebhookRow]:
        return [_webhook(r) for r in self._all("SELECT * FROM webhooks ORDER BY created_at")]

    def delete_webhook(self, hook_id: str) -> None:
        with self._tx() as db:
            if db.execute("DELETE FROM webhooks WHERE id = ?", (hook_id,)).rowcount == 0:
                raise NotFound(f"no webhook {hook_id!r}")

    def enqueue_deliveries(self, event_id: str, event_type: str, stream_id: str | None, payload: str) -> int:
        """One pending delivery per enabled webhook subscribed to ``event_type``; returns how many."""
        now = time.time()
        n = 0
        with self._tx() as db:
            for r in db.execute("SELECT * FROM webhooks WHERE enabled = 1").fetchall():
                hook = _webhook(r)
                if event_type in hook.events or "*" in hook.events:
                    db.execute("INSERT INTO deliveries (webhook_id, event_id, type, stream_id, payload, status, "
                               "next_at, created_at, updated_at) VALUES (?, ?, ?, ?, ?, 'pending', ?, ?, ?)",
                               (hook.id, event_id, event_type, stream_id, payload, now, now, now))
                    n += 1
        return n

    def due_deliveries(self, now: float, limit: int = 50) -> list[DeliveryRow]:
        return [_delivery(r) for r in self._all(
            "SELECT * FROM deliveries WHERE status = 'pending' AND next_at <= ? ORDER BY next_at LIMIT ?", (now, limit))]

    def next_delivery_at(self) -> float | None:
        row = self._one("SELECT MIN(next_at) FROM deliveries WHERE status = 'pending'")
        return float(row[0]) if row is not None and row[0] is not None else None

    def record_attempt(self, delivery_id: int, *, status: str, http_status: int | None, error: str | None,
                       next_at: float | None) -> None:
        with self._tx() as db:
            db.execute("UPDATE deliveries SET status = ?, attempts = attempts + 1, last_status = ?, last_error = ?, "
                       "next_at = ?, updated_at = ? WHERE id = ?",
                       (status, http_status, error, next_at, time.time(), delivery_id))

    def list_deliveries(self, limit: int = 100, webhook_id: str | None = None) -> list[DeliveryRow]:
        if webhook_id is None:
            rows = self._all("SELECT * FROM deliveries ORDER BY id DESC LIMIT ?", (limit,))
        else:
            rows = self._all("SELECT * FROM deliveries WHERE webhook_id = ? ORDER BY id DESC LIMIT ?",
                             (webhook_id, limit))
        return [_delivery(r) for r in rows]

    # ------------------------------------------------------------------ fleet: replicas and leases
    # Every time below is the database's clock (``now_sql``), so replicas never compare their own clocks.

    def db_now(self) -> float:
        row = self._one(f"SELECT {self.now_sql}")
        assert row is not None
        return float(row[0])

    def heartbeat(self, replica: str, *, media_url: str, api_url: str, capacity: int) -> None:
        """``replica`` is alive (its row is what other replicas count to share streams fairly)."""
        now = self.now_sql
        with self._tx() as db:
            db.execute(f"INSERT INTO replicas (id, media_url, api_url, capacity, started_at, seen_at) "
                       f"VALUES (?, ?, ?, ?, {now}, {now}) ON CONFLICT (id) DO UPDATE SET "
                       "media_url = excluded.media_url, api_url = excluded.api_url, capacity = excluded.capacity, "
                       "seen_at = excluded.seen_at", (replica, media_url, api_url, capacity))

    def live_replicas(self, within: float) -> list[ReplicaRow]:
        rows = self._all(f"SELECT * FROM replicas WHERE seen_at >= {self.now_sql} - ? ORDER BY id", (within,))
        return [ReplicaRow(id=r["id"], media_url=r["media_url"], api_url=r["api_url"], capacity=r["capacity"],
                           started_at=r["started_at"], seen_at=r["seen_at"]) for r in rows]

    def expire_replicas(self, older_than: float) -> list[str]:
        """Delete the rows (``replicas`` and its ``fleet_peers`` list) of every replica not seen for
        ``older_than`` seconds (the database's clock); returns their ids. A dead replica's peer list matters
        only while one of its leases expired less than the outage grace ago (the claim rule of
        ``_claimable_sql``): the caller keeps it longer than a lease plus the grace (fleet.py)."""
        with self._tx() as db:
            rows = db.execute(f"SELECT id FROM replicas WHERE seen_at < {self.now_sql} - ?", (older_than,)).fetchall()
            gone = [str(r[0]) for r in rows]
            for rid in gone:
                db.execute("DELETE FROM fleet_peers WHERE replica = ?", (rid,))
                db.execute("DELETE FROM replicas WHERE id = ?", (rid,))
        return gone

    def all_replicas(self) -> list[str]:
        """Every replica row, alive or not (tests and audits)."""
        return [str(r[0]) for r in self._all("SELECT id FROM replicas ORDER BY id")]

    def forget_replica(self, replica: str) -> None:
        with self._tx() as db:
            db.execute("DELETE FROM replicas WHERE id = ?", (replica,))
            db.execute("DELETE FROM fleet_peers WHERE replica = ?", (replica,))

    def _claimable_sql(self, lease: str) -> str:
        """The condition under which the lease row ``lease`` (a table alias) may be taken by a claimer
        (parameters: grace, settled as 0/1, claimer, claimer). Free: released (``expires_at = 0``), or expired
        for more than ``grace`` seconds (no holder publishes that long past its lease, outage or not). Expired
        more recently: only by a *settled* claimer (it has watched the registry without a break for a whole
        lease, so holders that lost their lease only to an outage have renewed it first) that is the holder
        itself, or one of the peers the holder asks before it keeps a stream through an outage, or anyone
        when the holder recorded no peers (it never keeps a stream past its lease then). See fleet.py."""
        now = self.now_sql
        return (f"({lease}.expires_at <= {now} AND ({lease}.expires_at = 0 OR {lease}.expires_at + ? <= {now} OR "
                f"(? = 1 AND ({lease}.owner = ? OR NOT EXISTS (SELECT 1 FROM fleet_peers p WHERE p.replica = "
                f"{lease}.owner) OR EXISTS (SELECT 1 FROM fleet_peers p WHERE p.replica = {lease}.owner AND "
                "p.peer = ?)))))")

    def claim_lease(self, stream_id: str, owner: str, ttl: float, *, settled: bool = True,
                    grace: float = 0.0) -> int | None:
        """Take ``stream_id`` for ``owner`` for ``ttl`` seconds if its lease is free for ``owner`` (never
        taken, released, or expired: ``_claimable_sql`` says who may take one that expired less than ``grace``
        seconds ago); returns the new epoch (the fencing token: it grows with every claim), or None."""
        now = self.now_sql
        with self._tx() as db:
            row = db.execute(
                f"INSERT INTO leases (stream_id, owner, epoch, acquired_at, expires_at) VALUES (?, ?, 1, {now}, "
                f"{now} + ?) ON CONFLICT (stream_id) DO UPDATE SET owner = excluded.owner, epoch = leases.epoch + 1, "
                f"acquired_at = excluded.acquired_at, expires_at = excluded.expires_at WHERE "
                f"{self._claimable_sql('leases')} RETURNING epoch, acquired_at",
                (stream_id, owner, ttl, grace, int(settled), owner, owner)).fetchone()
            if row is None:
                return None
            db.execute("INSERT INTO lease_log (stream_id, epoch, owner, acquired_at) VALUES (?, ?, ?, ?)",
                       (stream_id, int(row[0]), owner, float(row[1])))
        return int(row[0])

    def renew_leases(self, owner: str, ttl: float, held: Mapping[str, int]) -> dict[str, int]:
        """Extend the leases of ``owner`` listed in ``held`` ({stream: epoch}) by ``ttl`` seconds; returns
        {stream: epoch} of those renewed. A lease is renewed while nobody else took it (same owner, same epoch)
        even if it expired meanwhile: after a registry outage the holders renew before any other replica may
        claim (fleet.py). One that another replica took, or that was released, is lost."""
        if not held:
            return {}
        now = self.now_sql
        out: dict[str, int] = {}
        items = sorted(held.items())
        with self._lock:
            for i in range(0, len(items), 200):
                chunk = items[i:i + 200]
                match = " OR ".join(["(stream_id = ? AND epoch = ?)"] * len(chunk))
                args: list[Any] = [ttl, owner]
                for sid, epoch in chunk:
                    args += [sid, epoch]
                rows = self._db.execute(f"UPDATE leases SET expires_at = {now} + ? WHERE owner = ? AND expires_at > 0 "
                                        f"AND ({match}) RETURNING stream_id, epoch", tuple(args)).fetchall()
                out.update({str(r[0]): int(r[1]) for r in rows})
        return out

    def write_peers(self, replica: str, peers: Sequence[str]) -> None:
        """The peers ``replica`` asks before it keeps its streams through a registry outage (fleet.py)."""
        with self._tx() as db:
            db.execute("DELETE FROM fleet_peers WHERE replica = ?", (replica,))
            for peer in sorted(set(peers)):
                db.execute("INSERT INTO fleet_peers (replica, peer) VALUES (?, ?)", (replica, peer))

    def peers_of(self, replica: str) -> list[str]:
        return [str(r[0]) for r in self._all("SELECT peer FROM fleet_peers WHERE replica = ? ORDER BY peer",
                                             (replica,))]

    def release_lease(self, stream_id: str, owner: str, epoch: int) -> None:
        """Give the stream up now (it stopped here, or this replica shuts down): others may claim it at once.
        The row stays, expired, so the next claim's epoch keeps growing."""
        with self._lock:
            self._db.execute("UPDATE leases SET expires_at = 0 WHERE stream_id = ? AND owner = ? AND epoch = ?",
                             (stream_id, owner, epoch))

    def leases(self) -> list[LeaseRow]:
        """Leases that have not expired."""
        return [LeaseRow(stream_id=r["stream_id"], owner=r["owner"], epoch=int(r["epoch"]),
                         acquired_at=r["acquired_at"], expires_at=r["expires_at"])
                for r in self._all(f"SELECT * FROM leases WHERE expires_at > {self.now_sql} ORDER BY stream_id")]

    def lease_of(self, stream_id: str) -> LeaseRow | None:
        r = self._one(f"SELECT * FROM leases WHERE stream_id = ? AND expires_at > {self.now_sql}", (stream_id,))
        return None if r is None else LeaseRow(stream_id=r["stream_id"], owner=r["owner"], epoch=int(r["epoch"]),
                                               acquired_at=r["acquired_at"], expires_at=r["expires_at"])

    def lease_log(self, stream_id: str | None = None) -> list[LeaseRow]:
        """Every claim ever made (``expires_at`` is not kept there: 0)."""
        rows = (self._all("SELECT * FROM lease_log ORDER BY acquired_at") if stream_id is None else
                self._all("SELECT * FROM lease_log WHERE stream_id = ? ORDER BY acquired_at", (stream_id,)))
        return [LeaseRow(stream_id=r["stream_id"], owner=r["owner"], epoch=int(r["epoch"]),
                         acquired_at=r["acquired_at"], expires_at=0.0) for r in rows]

    def claimable_streams(self, limit: int, claimer: str = "", *, settled: bool = True,
                          grace: float = 0.0) -> list[str]:
        """Enabled pull streams whose lease ``claimer`` may take now (``claim_lease``), oldest first."""
        rows = self._all("SELECT s.id FROM streams s LEFT JOIN leases l ON l.stream_id = s.id WHERE s.ingest = 'pull' "
                         f"AND s.enabled = 1 AND (l.stream_id IS NULL OR {self._claimable_sql('l')}) "
                         "ORDER BY s.created_at, s.id LIMIT ?", (grace, int(settled), claimer, claimer, limit))
        return [str(r[0]) for r in rows]

    def count_pull_streams(self) -> int:
        row = self._one("SELECT COUNT(*) FROM streams WHERE ingest = 'pull' AND enabled = 1")
        return int(row[0]) if row else 0

    def stream_revisions(self) -> dict[str, int]:
        return {str(r[0]): int(r[1]) for r in self._all("SELECT id, revision FROM streams")}

    def forget_leases(self, stream_id: str) -> None:
        """The stream is deleted: its lease and lease history go with it."""
        with self._tx() as db:
            db.execute("DELETE FROM leases WHERE stream_id = ?", (stream_id,))
            db.execute("DELETE FROM lease_log WHERE stream_id = ?", (stream_id,))

    def open_event_of(self, stream_id: str) -> EventRow | None:
        """The stream's newest event that has not ended (a replica that died left it open)."""
        r = self._one("SELECT * FROM events WHERE stream_id = ? AND ended_at IS NULL ORDER BY started_at DESC LIMIT 1",
                      (stream_id,))
        return None if r is None else _event(r)


__all__ = ["ApiKeyRow", "Conflict", "DeliveryRow", "EventRow", "LeaseRow", "NotFound", "Registry", "RegistryError",
           "RegistryUnavailable", "ReplicaRow", "StreamRow", "WebhookRow"]
