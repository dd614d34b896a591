"""The embedded store: one SQLite file in WAL mode, so `sidecast ads serve` needs nothing else.

Every write commits before the request answers; WAL with synchronous=NORMAL survives a crash or restart of
the process (only an OS crash or power cut can lose the last transactions). A lock serialises access so the
store may be used from the event loop and from worker threads alike. WAL checkpoints (the only step that
fsyncs) run on a background thread with their own connection, so they never stall a decision.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from typing import Any

from sidecast.ads.store import Kind, OutboxItem

_SCHEMA = """
CREATE TABLE IF NOT EXISTS catalog (kind TEXT NOT NULL, id TEXT NOT NULL, body TEXT NOT NULL, PRIMARY KEY (kind, id));
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS decisions (id TEXT PRIMARY KEY, session_id TEXT NOT NULL, created REAL NOT NULL, body TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS break_decisions (session_id TEXT NOT NULL, break_id TEXT NOT NULL, decision_id TEXT NOT NULL,
                                            PRIMARY KEY (session_id, break_id));
CREATE TABLE IF NOT EXISTS frequency (session_id TEXT NOT NULL, line_id TEXT NOT NULL, count INTEGER NOT NULL,
                                      PRIMARY KEY (session_id, line_id));
CREATE TABLE IF NOT EXISTS beacons (decision_id TEXT NOT NULL, ad_index INTEGER NOT NULL, event TEXT NOT NULL,
                                    at REAL NOT NULL, PRIMARY KEY (decision_id, ad_index, event));
CREATE TABLE IF NOT EXISTS outbox (id INTEGER PRIMARY KEY AUTOINCREMENT, url TEXT NOT NULL, state TEXT NOT NULL,
                                   attempts INTEGER NOT NULL DEFAULT 0, next_at REAL NOT NULL DEFAULT 0);
CREATE INDEX IF NOT EXISTS outbox_pending ON outbox (state, next_at);
INSERT OR IGNORE INTO meta VALUES ('catalog_version', 0);
"""


class SqliteStore:
    name = "sqlite"

    def __init__(self, path: str) -> None:
        self.path = path
        try:
            self.db = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=5.0)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
            self.db.execute("PRAGMA wal_autocheckpoint=0")
            self.db.executescript(_SCHEMA)
        except sqlite3.Error as exc:
            raise RuntimeError(f"cannot open the ads database {path!r}: {exc}") from exc
        self.lock = threading.Lock()
        with self.lock:
            # pings that were being sent when the process stopped are sent again (at-least-once on a crash)
            self.db.execute("UPDATE outbox SET state='pending' WHERE state='sending'")
        self._closing = threading.Event()
        self._checkpointer = threading.Thread(target=self._checkpoint_loop, name="sqlite-checkpoint", daemon=True)
        self._checkpointer.start()

    def _checkpoint_loop(self) -> None:
        con = sqlite3.connect(self.path, timeout=5.0)
        try:
            while not self._closing.wait(1.0):
                try:
                    con.execute("PRAGMA wal_checkpoint(PASSIVE)")
                except sqlite3.Error:
                    pass  # busy: the next round catches up
        finally:
            con.close()

    @contextlib.contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """One transaction under the lock: all of it commits, or none of it (autocommit mode needs BEGIN)."""
        with self.lock:
            self.db.execute("BEGIN IMMEDIATE")
            try:
                yield self.db
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
            self.db.execute("COMMIT")

    def ping(self) -> None:
        with self.lock:
            self.db.execute("SELECT 1").fetchone()

    def _bump(self) -> None:
        self.db.execute("UPDATE meta SET value = value + 1 WHERE key='catalog_version'")

    def put(self, kind: Kind, id: str, doc: dict[str, Any], *, create: bool = True) -> bool:
        body = json.dumps(doc)
        with self._tx():
            if create:
                cur = self.db.execute("INSERT OR IGNORE INTO catalog VALUES (?, ?, ?)", (kind, id, body))
            else:
                cur = self.db.execute("INSERT OR REPLACE INTO catalog VALUES (?, ?, ?)", (kind, id, body))
            if cur.rowcount:
                self._bump()
            return cur.rowcount > 0

    def get(self, kind: Kind, id: str) -> dict[str, Any] | None:
        with self.lock:
            row = self.db.execute("SELECT body FROM catalog WHERE kind=? AND id=?", (kind, id)).fetchone()
        return json.loads(row[0]) if row else None

    def items(self, kind: Kind) -> list[dict[str, Any]]:
        with self.lock:
            rows = self.db.execute("SELECT body FROM catalog WHERE kind=? ORDER BY id", (kind,)).fetchall()
        return [json.loads(r[0]) for r in rows]

    def delete(self, kind: Kind, id: str) -> bool:
        with self._tx():
            cur = self.db.execute("DELETE FROM catalog WHERE kind=? AND id=?", (kind, id))
            if cur.rowcount:
                self._bump()
            return cur.rowcount > 0

    def decision_context(self, session_id: str, break_id: str = "") -> tuple[int, dict[str, int], dict[str, Any] | None]:
        with self.lock:
            version = self.db.execute("SELECT value FROM meta WHERE key='catalog_version'").fetchone()[0]
            rows = self.db.execute("SELECT line_id, count FROM frequency WHERE session_id=?", (session_id,)).fetchall()
            prior = self._prior(session_id, break_id) if break_id else None
        return int(version), {r[0]: int(r[1]) for r in rows}, prior

    def _prior(self, session_id: str, break_id: str) -> dict[str, Any] | None:
        row = self.db.execute("SELECT d.body FROM break_decisions b JOIN decisions d ON d.id = b.decision_id "
                              "WHERE b.session_id=? AND b.break_id=?", (session_id, break_id)).fetchone()
        return json.loads(row[0]) if row else None

    def save_decision(self, decision: dict[str, Any], counted: list[str]) -> dict[str, Any]:
        sid, bid = decision["session_id"], decision.get("break_id", "")
        with self._tx():
            if bid:
                prior = self._prior(sid, bid)
                if prior is not None:
                    return prior
                self.db.execute("INSERT INTO break_decisions VALUES (?, ?, ?)", (sid, bid, decision["decision_id"]))
            self.db.execute("INSERT INTO decisions VALUES (?, ?, ?, ?)",
                            (decision["decision_id"], sid, time.time(), json.dumps(decision)))
            self.db.executemany(
                "INSERT INTO frequency VALUES (?, ?, 1) ON CONFLICT (session_id, line_id) DO UPDATE SET count = count + 1",
                [(sid, line) for line in counted])
        return decision

    def get_decision(self, decision_id: str) -> dict[str, Any] | None:
        with self.lock:
            row = self.db.execute("SELECT body FROM decisions WHERE id=?", (decision_id,)).fetchone()
        return json.loads(row[0]) if row else None

    def record_beacon(self, decision_id: str, ad_index: int, event: str, urls: list[str]) -> bool:
        with self._tx():
            cur = self.db.execute("INSERT OR IGNORE INTO beacons VALUES (?, ?, ?, ?)",
                                  (decision_id, ad_index, event, time.time()))
            if cur.rowcount == 0:
                return False
            self.db.executemany("INSERT INTO outbox (url, state) VALUES (?, 'pending')", [(u,) for u in urls])
            return True

    def beacons(self, decision_id: str) -> list[dict[str, Any]]:
        with self.lock:
            rows = self.db.execute("SELECT ad_index, event, at FROM beacons WHERE decision_id=? ORDER BY at, ad_index",
                                   (decision_id,)).fetchall()
        return [{"ad_index": r[0], "event": r[1], "at": r[2]} for r in rows]

    def take_outbox(self, limit: int) -> list[OutboxItem]:
        now = time.time()
        with self._tx():
            rows = self.db.execute("SELECT id, url, attempts FROM outbox WHERE state='pending' AND next_at<=? "
                                   "ORDER BY id LIMIT ?", (now, limit)).fetchall()
            self.db.executemany("UPDATE outbox SET state='sending' WHERE id=?", [(r[0],) for r in rows])
        return [OutboxItem(str(r[0]), r[1], r[2]) for r in rows]

    def finish_outbox(self, item: OutboxItem, ok: bool, give_up: bool) -> None:
        with self._tx():
            if ok or give_up:
                self.db.execute("UPDATE outbox SET state=?, attempts=attempts+1 WHERE id=?",
                                ("sent" if ok else "failed", int(item.key)))
            else:
                delay = min(60.0, 0.5 * 2 ** item.attempts)
                self.db.execute("UPDATE outbox SET state='pending', attempts=attempts+1, next_at=? WHERE id=?",
                                (time.time() + delay, int(item.key)))

    def close(self) -> None:
        self._closing.set()
        self._checkpointer.join(5)
        with self.lock:
            try:
                self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            except sqlite3.Error:
                pass
            self.db.close()
