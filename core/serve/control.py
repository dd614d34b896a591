"""The control router: `POST /api/<name>` calls into the running pipeline (schedule a break, hold the
vertical crop centred, read the status).

These calls change state, so unlike media they are closed to other origins: no CORS header is ever sent
(a page elsewhere cannot read the answers, and its preflight is refused), and a body must be declared
`application/json` (a `text/plain` or form POST, which any web page may send without a preflight, is
refused with 415 before anything runs). Bodies are capped before they are read (413), and numbers JSON
cannot carry faithfully (NaN, Infinity, integers past 2**53, floats that overflow) are refused with 422.
With `api_keys` the router also wants `Authorization: Bearer KEY` (or `X-API-Key: KEY`): that is how a
multi-stream server puts it on its own port behind keys.
"""

from __future__ import annotations

import hmac
import json
import logging
import math
from collections.abc import Callable, Mapping, MutableMapping, Sequence
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, HTTPException
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

log = logging.getLogger("sidecast.serve")

ApiHandler = Callable[[dict[str, Any]], dict[str, Any]]
"""A control call: the JSON body as a dict in, a JSON-able dict out; ValueError/TypeError/KeyError mean
the caller's arguments are wrong (400 with the message)."""

MAX_API_BODY = 64 * 1024
"""Control calls carry a few fields; anything larger is a mistake or an attack (413)."""
MAX_JSON_INTEGER = 2**53 - 1
"""The largest integer every JSON reader (JavaScript's included) holds exactly."""
NO_STORE = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}


class BadCommand(ValueError):
    """A control request refused before its handler runs: `status` and a message that says what to change."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def is_json_type(content_type: str | None) -> bool:
    """`application/json` or a `+json` type, any parameters (charset) allowed."""
    if not content_type:
        return False
    mime = content_type.split(";", 1)[0].strip().lower()
    return mime == "application/json" or (mime.startswith("application/") and mime.endswith("+json"))


def _refuse_constant(name: str) -> Any:
    raise BadCommand(422, f"{name} is not a number JSON allows: send a finite number")


def _checked_int(text: str) -> int:
    digits = text.lstrip("-")
    if len(digits) > 16 or abs(int(text)) > MAX_JSON_INTEGER:
        raise BadCommand(422, f"integer {text[:24]}{'...' if len(text) > 24 else ''} is out of range "
                              f"(|n| must be at most 2**53 - 1 = {MAX_JSON_INTEGER})")
    return int(text)


def _checked_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise BadCommand(422, f"number {text[:24]} is too large to be a finite float")
    return value


def parse_command(raw: bytes) -> dict[str, Any]:
    """The JSON object a control call carries (empty body: `{}`); raises BadCommand (400 or 422)."""
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw, parse_constant=_refuse_constant, parse_int=_checked_int,
                          parse_float=_checked_float)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BadCommand(400, f"body is not valid JSON: {exc}") from None
    except RecursionError:
        raise BadCommand(400, "body is not valid JSON: nested too deeply") from None
    if not isinstance(body, dict):
        raise BadCommand(400, "body must be a JSON object")
    return body


def json_response(status: int, payload: Any, headers: Mapping[str, str] | None = None) -> Response:
    return Response(json.dumps(payload, allow_nan=False).encode(), status_code=status,
                    media_type="application/json", headers={**NO_STORE, **(headers or {})})


def _error(status: int, message: str, *, close: bool = False) -> Response:
    # close: the body was not read, so the connection must not be reused for the next request
    return json_response(status, {"error": message}, {"Connection": "close"} if close else None)


async def _read_capped(request: Request, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BadCommand(413, f"body over {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def key_checker(api_keys: Sequence[str]) -> Callable[..., None]:
    """A dependency that wants one of `api_keys` (none configured: open, for a single-user local run)."""
    keys = [k.encode() for k in api_keys]

    def require_key(authorization: Annotated[str | None, Header()] = None,
                    x_api_key: Annotated[str | None, Header()] = None) -> None:
        if not keys:
            return
        given = x_api_key
        if given is None and authorization and authorization[:7].lower() == "bearer ":
            given = authorization[7:].strip()
        if given is None:
            raise HTTPException(401, "missing API key: send Authorization: Bearer KEY",
                                headers={"WWW-Authenticate": "Bearer"})
        if not any(hmac.compare_digest(given.encode(), k) for k in keys):
            raise HTTPException(401, "wrong API key", headers={"WWW-Authenticate": "Bearer"})

    return require_key


def control_router(api: MutableMapping[str, ApiHandler], *, api_keys: Sequence[str] = (),
                   max_body: int = MAX_API_BODY) -> APIRouter:
    """`POST /api/<name>` (names may contain slashes: `vertical/keep-centered`) → `api[name](body)`.

    `api` is read on every call, so handlers may be added while the server runs.
    """

    async def call(request: Request, name: str) -> Response:
        name = name.strip("/")
        handler = api.get(name)
        has_body = request.headers.get("content-length", "0") != "0" or "transfer-encoding" in request.headers
        if handler is None:
            known = ", ".join(sorted(api)) or "none"
            return _error(404, f"unknown API {name!r} (known: {known})", close=has_body)
        if not is_json_type(request.headers.get("content-type")):
            return _error(415, "control calls take a JSON body: send Content-Type: application/json",
                          close=has_body)
        length = request.headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > max_body):
            return _error(413, f"body over {max_body} bytes", close=True)
        try:
            body = parse_command(await _read_capped(request, max_body))
        except BadCommand as exc:
            return _error(exc.status, str(exc), close=exc.status == 413)
        try:
            result = await run_in_threadpool(handler, body)
        except (ValueError, TypeError, KeyError) as exc:
            # handlers signal bad arguments with these; the caller can fix the request
            return _error(400, str(exc) or type(exc).__name__)
        except Exception as exc:
            log.exception("API handler %r failed", name)
            return _error(500, f"{type(exc).__name__}: {exc}")
        return json_response(200, result)

    async def wrong_method(request: Request, name: str) -> Response:
        return _error(405, "use POST with a JSON body for /api/ calls")

    deps = [Depends(key_checker(api_keys))]
    router = APIRouter()
    router.add_api_route("/api/{name:path}", call, methods=["POST"], dependencies=deps, include_in_schema=False)
    router.add_api_route("/api/{name:path}", wrong_method, methods=["GET", "HEAD", "PUT", "PATCH", "DELETE",
                                                                    "OPTIONS"], include_in_schema=False)
    return router
