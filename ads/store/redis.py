"""The shared store for several API replicas: Redis, through redis-py.

The first-writer-wins beacon record and the queueing of its tracking pings run as one Lua script, so two
replicas receiving the same beacon queue its pings once. Pings are popped from a list by whichever replica
gets there first (LPOP is atomic); a replica that dies between popping and sending loses that ping, which is
the one at-most-once window of this store (the SQLite store re-sends instead). Durability across a Redis
restart is Redis' own (enable appendonly in production).
"""

from __future__ import annotations

import json
import time
from typing import Any

import redis

from sidecast.ads.store import Kind, OutboxItem

_RECORD = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX') then
  redis.call('RPUSH', KEYS[2], ARGV[2])
  for i = 3, #ARGV do redis.call('RPUSH', KEYS[3], ARGV[i]) end
  return 1
end
return 0
"""

# KEYS: break key ("" when none), decision key, frequency key; ARGV: decision id, body, decision TTL,
# frequency TTL, decision key prefix, then the line ids to count
_SAVE = """
if KEYS[1] ~= '' then
  local prior = redis.call('GET', KEYS[1])
  if prior then return redis.call('GET', ARGV[5] .. prior) or '' end
  redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[3])
end
redis.call('SET', KEYS[2], ARGV[2], 'EX', ARGV[3])
for i = 6, #ARGV do redis.call('HINCRBY', KEYS[3], ARGV[i], 1) end
if #ARGV >= 6 then redis.call('EXPIRE', KEYS[3], ARGV[4]) end
return false
"""

DECISION_TTL = 7 * 86400
FREQUENCY_TTL = 86400


class RedisStore:
    name = "redis"

    def __init__(self, url: str, prefix: str = "sidecast:ads:") -> None:
        self.r = redis.Redis.from_url(url, socket_timeout=5.0, socket_connect_timeout=5.0)
        self.p = prefix
        try:
            self.r.ping()
        except redis.RedisError as exc:
            raise RuntimeError(f"cannot reach Redis at {url}: {exc}") from exc
        self._record = self.r.register_script(_RECORD)
        self._save = self.r.register_script(_SAVE)

    def ping(self) -> None:
        self.r.ping()

    def put(self, kind: Kind, id: str, doc: dict[str, Any], *, create: bool = True) -> bool:
        key = f"{self.p}cat:{kind}"
        body = json.dumps(doc)
        if create:
            added = bool(self.r.hsetnx(key, id, body))
        else:
            self.r.hset(key, id, body)
            added = True
        if added:
            self.r.incr(f"{self.p}cat:version")
        return added

    def get(self, kind: Kind, id: str) -> dict[str, Any] | None:
        raw = self.r.hget(f"{self.p}cat:{kind}", id)
        return json.loads(raw) if raw else None  # type: ignore[arg-type]

    def items(self, kind: Kind) -> list[dict[str, Any]]:
        items: dict[bytes, bytes] = self.r.hgetall(f"{self.p}cat:{kind}")  # type: ignore[assignment]
        return [json.loads(items[k]) for k in sorted(items)]

    def delete(self, kind: Kind, id: str) -> bool:
        removed = bool(self.r.hdel(f"{self.p}cat:{kind}", id))
        if removed:
            self.r.incr(f"{self.p}cat:version")
        return removed

    def decision_context(self, session_id: str, break_id: str = "") -> tuple[int, dict[str, int], dict[str, Any] | None]:
        pipe = self.r.pipeline(transaction=False)
        pipe.get(f"{self.p}cat:version")
        pipe.hgetall(f"{self.p}freq:{session_id}")
        if break_id:
            pipe.get(f"{self.p}brk:{session_id}:{break_id}")
        version, freq, *prior_id = pipe.execute()
        prior = self.get_decision(prior_id[0].decode()) if prior_id and prior_id[0] else None
        return int(version or 0), {k.decode(): int(v) for k, v in freq.items()}, prior  # bytes from redis-py

    def save_decision(self, decision: dict[str, Any], counted: list[str]) -> dict[str, Any]:
        sid, bid = decision["session_id"], decision.get("break_id", "")
        keys = [f"{self.p}brk:{sid}:{bid}" if bid else "", f"{self.p}decision:{decision['decision_id']}",
                f"{self.p}freq:{sid}"]
        prior = self._save(keys=keys, args=[decision["decision_id"], json.dumps(decision), DECISION_TTL,
                                            FREQUENCY_TTL, f"{self.p}decision:", *counted])
        return json.loads(prior) if prior else decision

    def get_decision(self, decision_id: str) -> dict[str, Any] | None:
        raw = self.r.get(f"{self.p}decision:{decision_id}")
        return json.loads(raw) if raw else None  # type: ignore[arg-type]

    def record_beacon(self, decision_id: str, ad_index: int, event: str, urls: list[str]) -> bool:
        entry = json.dumps({"ad_index": ad_index, "event": event, "at": time.time()})
        keys = [f"{self.p}beacon:{decision_id}:{ad_index}:{event}", f"{self.p}beacons:{decision_id}",
                f"{self.p}outbox"]
        pings = [json.dumps({"url": u, "attempts": 0}) for u in urls]
        return bool(self._record(keys=keys, args=["1", entry, *pings]))

    def beacons(self, decision_id: str) -> list[dict[str, Any]]:
        entries: list[bytes] = self.r.lrange(f"{self.p}beacons:{decision_id}", 0, -1)  # type: ignore[assignment]
        return [json.loads(x) for x in entries]

    def take_outbox(self, limit: int) -> list[OutboxItem]:
        raw: list[bytes] = self.r.lpop(f"{self.p}outbox", limit) or []  # type: ignore[assignment]
        out = []
        for x in raw:
            d = json.loads(x)
            if d.get("next_at", 0) > time.time():
                self.r.rpush(f"{self.p}outbox", x)   # not due yet: back of the queue
                continue
            out.append(OutboxItem(x.decode(), d["url"], int(d.get("attempts", 0))))
        return out

    def finish_outbox(self, item: OutboxItem, ok: bool, give_up: bool) -> None:
        if ok or give_up:
            return
        delay = min(60.0, 0.5 * 2 ** item.attempts)
        self.r.rpush(f"{self.p}outbox", json.dumps({"url": item.url, "attempts": item.attempts + 1,
                                                    "next_at": time.time() + delay}))

    def close(self) -> None:
        self.r.close()
