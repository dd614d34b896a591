"""The body guard: who may send a request body, and how large, decided before a byte of it is read.

FastAPI reads and parses a route's body *before* it runs the route's dependencies, so a key check in a
dependency comes too late: an unauthenticated 200 MB POST would be read into memory first (and answered
422, not 401). This pure ASGI middleware runs first, for every request that may carry a body:

- **auth first**: a management route (every POST/PUT/PATCH/DELETE under /v1/ but decisions) needs a valid
  ``X-API-Key``; ``POST /v1/decisions`` needs a key or a player token that verifies. Otherwise 401, and
  the body is never read;
- **size before reading**: a ``Content-Length`` over the route's cap (``--max-upload-bytes`` for creative
  uploads, ``--max-body-bytes`` for everything else) is answered 413 at once; a body without one
  (chunked) is counted as it arrives and cut with 413 at the cap.

The routes check the same things again (they are the contract); this only makes sure no one gets to cost
the server memory or CPU before that.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import parse_qs

from sidecast.ads.api import tokens

__all__ = ["BodyGuard", "BodyTooLarge"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

UPLOAD_PATH = "/v1/creatives/upload"
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class BodyTooLarge(Exception):
    """Raised from `receive` when a body without Content-Length passes its cap."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"request body is over the {limit}-byte limit")
        self.limit = limit


async def _answer(send: Send, status: int, detail: str, headers: list[tuple[bytes, bytes]] | None = None) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send({"type": "http.response.start", "status": status, "headers": [
        (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"), *(headers or [])]})
    await send({"type": "http.response.body", "body": body})


class BodyGuard:
    """ASGI middleware; `settings` is the service's Settings (api_keys, token_key, require_player_tokens,
    max_body_bytes, max_upload_bytes)."""

    def __init__(self, app: ASGIApp, settings: Any) -> None:
        self.app = app
        self.settings = settings

    def _has_key(self, scope: Scope) -> bool:
        from sidecast.ads.api.deps import has_key

        for name, value in scope.get("headers", ()):
            if name == b"x-api-key":
                return has_key(self.settings, value.decode("latin-1"))
        return False

    def _has_token(self, scope: Scope) -> bool:
        qs = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        tok = (qs.get("token") or [None])[0]
        if not tok:
            return False
        try:
            tokens.verify(tok, self.settings.token_key)
        except tokens.TokenError:
            return False
        return True

    def _refusal(self, scope: Scope) -> str | None:
        """Why this request may not send a body (None: it may)."""
        path: str = scope.get("path", "")
        if not path.startswith("/v1/"):
            return None
        if path == "/v1/decisions" and scope.get("method") == "POST":
            if self._has_key(scope) or not self.settings.require_player_tokens or self._has_token(scope):
                return None
            return "a decision needs an X-API-Key header or a valid player token (token query parameter)"
        if not self.settings.api_keys:
            return "this server has no API keys configured: start it with --api-key KEY"
        if not self._has_key(scope):
            return "missing or wrong X-API-Key header"
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("method") not in _BODY_METHODS:
            await self.app(scope, receive, send)
            return
        why = self._refusal(scope)
        if why is not None:
            await _answer(send, 401, why, [(b"www-authenticate", b"ApiKey")])
            return
        limit = self.settings.max_upload_bytes if scope.get("path") == UPLOAD_PATH else self.settings.max_body_bytes
        length = next((v for k, v in scope.get("headers", ()) if k == b"content-length"), None)
        if length is not None:
            if not length.isdigit():
                await _answer(send, 400, "Content-Length is not a number")
                return
            if int(length) > limit:
                await _answer(send, 413, f"request body is {int(length)} bytes, over the {limit}-byte limit")
                return
        seen = 0
        started = False

        async def counted() -> Message:
            nonlocal seen
            msg = await receive()
            if msg["type"] == "http.request":
                seen += len(msg.get("body", b""))
                if seen > limit:
                    raise BodyTooLarge(limit)
            return msg

        async def tracked(msg: Message) -> None:
            nonlocal started
            if msg["type"] == "http.response.start":
                started = True
            await send(msg)

        try:
            await self.app(scope, counted, tracked)
        except BodyTooLarge as exc:
            if started:
                raise
            await _answer(send, 413, str(exc))
        except Exception as exc:
            # FastAPI wraps errors raised while it reads a body; find ours underneath
            cause: BaseException | None = exc
            while cause is not None and not isinstance(cause, BodyTooLarge):
                cause = cause.__cause__ or cause.__context__
            if cause is None or started:
                raise
            await _answer(send, 413, str(cause))
