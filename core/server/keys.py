"""Secrets of the server: API keys, stream keys, SRT passphrases and playback tokens.

Everything a client presents is a random token; the registry stores only its SHA-256 (a key is shown once,
when it is made). A plain hash is enough here, unlike for passwords: the tokens carry 192+ bits of
randomness, so there is nothing to brute-force, and a fast hash keeps every publish and API call cheap.
Lookups go by the hash itself (an indexed column), and a presented key is compared in constant time.

Two things cannot be hashed because the server needs them in clear, and so are *derived* instead of stored:
- a stream's SRT passphrase (the listener needs it to decrypt): HMAC(server secret, stream key), handed out
  with the key and recomputed when a publisher presents that key;
- playback tokens: ``<expires>.<signature>`` where the signature is HMAC(server secret, stream id and
  expiry), checked on every playlist and segment request without any lookup.

Replicas of a fleet share the server secret (it lives in the shared registry and each replica keeps it in
memory): their internal calls to each other (the registry-outage probe, fleet.py) are signed with
HMAC(server secret, ...), which works while the registry itself cannot be read.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass

API_KEY_PREFIX = "sk_"
STREAM_KEY_PREFIX = "live_"

#: What an API key may do. ``admin`` implies every other scope (and alone may manage API keys).
SCOPES: dict[str, str] = {
    "streams:read": "list and read streams, their status, events and recordings",
    "streams:write": "create, update and delete streams",
    "streams:keys": "generate and rotate stream keys (shown once)",
    "streams:control": "start/stop streams, force ad breaks, live controls, playback tokens",
    "webhooks": "manage webhook endpoints and read the delivery log",
    "admin": "everything, including API keys",
}


def new_token(prefix: str, nbytes: int = 24) -> str:
    """A random URL-safe token with a readable prefix (``sk_...`` for API keys, ``live_...`` for streams)."""
    return prefix + secrets.token_urlsafe(nbytes)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def display_prefix(token: str) -> str:
    """What may be shown and logged of a key: enough to tell keys apart, too little to use one."""
    return token[:10] + "…"


def srt_passphrase(server_secret: bytes, stream_key: str) -> str:
    """The SRT passphrase of the stream that owns ``stream_key`` (SRT wants 10 to 79 characters)."""
    digest = hmac.new(server_secret, b"srt-passphrase\0" + stream_key.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest[:24]).decode().rstrip("=")


# ------------------------------------------------------------------------------ playback tokens

class TokenError(ValueError):
    """A playback token that is malformed, expired or not for this stream (answered with 403)."""


@dataclass(frozen=True)
class PlaybackToken:
    token: str
    expires_at: float


MAX_TOKEN_TTL = 7 * 86400.0


def _signature(secret: bytes, stream_id: str, expires: int) -> str:
    mac = hmac.new(secret, f"play\0{stream_id}\0{expires}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac[:18]).decode()  # 144 bits, no padding at 18 bytes


def sign_playback(secret: bytes, stream_id: str, ttl: float, now: float | None = None) -> PlaybackToken:
    """A token that lets a player fetch ``stream_id``'s playlists and segments for ``ttl`` seconds.

    It goes in the URL path (``/<stream>/t/<token>/master.m3u8``) so that every relative URI a playlist
    holds resolves under it: players send it with every request without knowing about it."""
    if not 0 < ttl <= MAX_TOKEN_TTL:
        raise ValueError(f"ttl must be between 0 and {MAX_TOKEN_TTL:g} seconds")
    expires = int((time.time() if now is None else now) + ttl)
    return PlaybackToken(f"{expires}.{_signature(secret, stream_id, expires)}", float(expires))


def check_playback(secret: bytes, stream_id: str, token: str, now: float | None = None) -> None:
    """Raises TokenError unless ``token`` was signed for ``stream_id`` and has not expired."""
    when, dot, sig = token.partition(".")
    if not dot or not when.isdigit() or len(when) > 12 or len(sig) != 24:
        raise TokenError("malformed playback token")
    expires = int(when)
    if not hmac.compare_digest(sig, _signature(secret, stream_id, expires)):
        raise TokenError("playback token is not valid for this stream")
    if expires < (time.time() if now is None else now):
        raise TokenError("playback token has expired")


# ------------------------------------------------------------------------------ fleet-internal calls

def fleet_signature(server_secret: bytes, *parts: str) -> str:
    """HMAC of an internal fleet message (the probe and its answer): only replicas that read the shared
    registry's secret can make one, so nothing else can tell a replica that the registry is down for all."""
    mac = hmac.new(server_secret, b"fleet\0" + "\0".join(parts).encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).decode().rstrip("=")


def fleet_signature_ok(server_secret: bytes, signature: str, *parts: str) -> bool:
    return hmac.compare_digest(signature.encode(), fleet_signature(server_secret, *parts).encode())


__all__ = ["API_KEY_PREFIX", "MAX_TOKEN_TTL", "PlaybackToken", "SCOPES", "STREAM_KEY_PREFIX", "TokenError",
           "check_playback", "display_prefix", "fleet_signature", "fleet_signature_ok", "hash_token", "new_token", "sign_playback", "srt_passphrase"]
