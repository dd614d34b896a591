"""Short-lived signed tokens for player-facing URLs (asset lists, beacons) and for the core's playback checks.

A token is `base64url(json claims) + "." + base64url(HMAC-SHA256(key, payload))`. It carries its own expiry
("exp", Unix seconds), so any process that holds the key can check it without a shared session store: the
ads API signs, and a player, the stitcher or the core's HLS server hands it back. Pure functions, no I/O.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import time
from typing import Any

__all__ = ["TokenError", "sign", "verify"]


class TokenError(ValueError):
    """A token that must be refused: malformed, forged, or expired. The message says which."""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _key_bytes(key: str | bytes) -> bytes:
    k = key.encode("utf-8") if isinstance(key, str) else key
    if len(k) < 16:
        raise ValueError("token key must be at least 16 bytes long")
    return k


def sign(claims: dict[str, Any], key: str | bytes, ttl: float = 300.0, *, now: float | None = None) -> str:
    """Sign `claims` so that they are valid for `ttl` seconds; claims must be JSON-serialisable."""
    if ttl <= 0:
        raise ValueError("ttl must be positive")
    body = dict(claims)
    body["exp"] = int((time.time() if now is None else now) + ttl)
    payload = _b64(json.dumps(body, separators=(",", ":"), sort_keys=True).encode("utf-8"))
    mac = hmac.digest(_key_bytes(key), payload.encode("ascii"), "sha256")  # one-shot: no HMAC object per token
    return f"{payload}.{_b64(mac)}"


def verify(token: str, key: str | bytes, *, now: float | None = None) -> dict[str, Any]:
    """Return the claims of a valid token, or raise TokenError saying why it is refused."""
    if not isinstance(token, str) or token.count(".") != 1:
        raise TokenError("malformed token: expected '<payload>.<signature>'")
    payload, sig = token.split(".")
    expected = hmac.digest(_key_bytes(key), payload.encode("ascii", "replace"), "sha256")
    try:
        given = _unb64(sig)
    except (binascii.Error, ValueError) as exc:
        raise TokenError("malformed token signature") from exc
    if not hmac.compare_digest(expected, given):
        raise TokenError("bad token signature (wrong key or tampered token)")
    try:
        claims = json.loads(_unb64(payload))
    except (binascii.Error, ValueError) as exc:
        raise TokenError("malformed token payload") from exc
    if not isinstance(claims, dict) or not isinstance(claims.get("exp"), int):
        raise TokenError("token has no expiry")
    if claims["exp"] < (time.time() if now is None else now):
        raise TokenError("token expired")
    return claims
