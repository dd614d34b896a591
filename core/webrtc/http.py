"""What the WHIP and WHEP endpoints share: Bearer-token auth, CORS, and reading an SDP offer from a request
with every refusal (401, 415, 413, 400, 422) decided before any WebRTC work."""

from __future__ import annotations

import hmac
import logging

from starlette.requests import Request
from starlette.responses import Response

from ..serve.media import text_response
from .sdp import MAX_SDP_BYTES, Codec, Offer, SdpError, check_media, parse_offer

log = logging.getLogger("sidecast.webrtc")

CORS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Headers": "Authorization, Content-Type, If-Match",
    "Access-Control-Expose-Headers": "Location, ETag, Accept-Patch, Link",
    "Access-Control-Max-Age": "600",
}
ENDPOINT_METHODS = "OPTIONS, POST"
SESSION_METHODS = "PATCH, DELETE"  # what RFC 9725 reserves for a session URL (PATCH then answers 501)
ALL_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


def bearer_key(header: str | None) -> str | None:
    """The token of an ``Authorization: Bearer TOKEN`` header (scheme case-insensitive), else None."""
    if not header:
        return None
    scheme, _, token = header.strip().partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


def key_accepted(token: str | None, keys: set[str]) -> bool:
    """Constant-time comparison against every configured key."""
    if token is None:
        return False
    ok = False
    for key in keys:
        ok |= hmac.compare_digest(token.encode(), key.encode())
    return ok


def options_response(methods: str, accept_post: bool) -> Response:
    headers = {**CORS, "Access-Control-Allow-Methods": methods, "Allow": methods}
    if accept_post:
        headers["Accept-Post"] = "application/sdp"
    return Response(status_code=204, headers=headers)


def refuse(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    return text_response(status, message, {**CORS, **(headers or {})})


async def read_offer(request: Request, keys: set[str] | None, *, publish: bool) -> tuple[str, Offer, dict[str, Codec]] | Response:
    """The offer's text, its parsed form and the codec chosen per kind, or the refusal to send.

    ``keys``: the accepted Bearer tokens (None: no auth). Order: auth (401), type (415), size (413), SDP
    (400/422), so that a stranger learns nothing about what the endpoint would accept."""
    role = "WHIP publish" if publish else "WHEP view"
    peer = request.client.host if request.client else "?"
    if keys is not None:
        token = bearer_key(request.headers.get("authorization"))
        if not key_accepted(token, keys):
            log.error("%s refused: %s", role, "no key" if token is None else "unknown key", extra={"peer": peer})
            return refuse(401, f"{role} refused: " + ("send the stream key as 'Authorization: Bearer KEY'"
                                                       if token is None else "unknown key"),
                          {"WWW-Authenticate": 'Bearer realm="sidecast"'})
    ctype = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if ctype != "application/sdp":
        return refuse(415, f"an offer must be Content-Type: application/sdp (got {ctype[:64] or 'none'!r})",
                      {"Accept-Post": "application/sdp"})
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_SDP_BYTES:
        return refuse(413, f"SDP offer larger than {MAX_SDP_BYTES} bytes")
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_SDP_BYTES:
            return refuse(413, f"SDP offer larger than {MAX_SDP_BYTES} bytes")
    try:
        text = body.decode("utf-8")
        offer = parse_offer(text)
        codecs = check_media(offer, publish=publish)
    except UnicodeDecodeError:
        return refuse(400, "malformed SDP offer: not UTF-8 text")
    except SdpError as exc:
        log.warning("%s offer refused: %s", role, exc, extra={"peer": peer})
        return refuse(exc.status, str(exc))
    return text, offer, codecs


def stack_error(exc: Exception, role: str) -> SdpError:
    """What aiortc's refusal of an offer that passed our checks means for the client."""
    status = 422 if "description send parameters" in str(exc) else 400
    return SdpError(status, f"{role} offer refused by the WebRTC stack: {str(exc)[:200] or type(exc).__name__}")


__all__ = ["ALL_METHODS", "CORS", "ENDPOINT_METHODS", "SESSION_METHODS", "bearer_key", "key_accepted",
           "options_response", "read_offer", "refuse", "stack_error"]
