"""HTTP for sidecast's HLS output: files, the player page, /healthz and the control calls, as one ASGI
application style (FastAPI routers) served by uvicorn.

One router per resource, so each can be mounted where it belongs:

- `media_router(dir)`: GET/HEAD of the output folder's files, open to any origin (media.py);
- `player_router()`: the player page and its vendored hls.js (media.py);
- `control_router(api)`: `POST /api/<name>` into the running pipeline, JSON only, no CORS, optional API
  keys (control.py);
- `health_router()`: `GET /healthz` (app.py).

`start_server(dir, port, api=...)` serves them all on one port from a background thread and returns a
`ServerHandle` (`.url`, `.port`, `.api`, `.close()`, a context manager). The rules (which file, which type,
which cache policy, which range, 304 or not) are pure functions in files.py.
"""

from __future__ import annotations

from .app import bare_app, create_app, health_router
from .control import MAX_API_BODY, ApiHandler, BadCommand, control_router, parse_command
from .files import (
    MIME_TYPES,
    NO_CACHE,
    SEGMENT_CACHE,
    RangeNotSatisfiable,
    UnsafePath,
    cache_control_for,
    content_type_for,
    is_immutable_name,
    is_public,
    parse_range,
    resolve_file,
    safe_relative_path,
)
from .media import PLAYER_PAGE, STATIC_DIR, STATIC_PREFIX, media_router, player_router
from .server import ServerHandle, ServerOptions, run_in_thread, serve_forever, start_server

__all__ = [
    "ApiHandler", "BadCommand", "MAX_API_BODY", "MIME_TYPES", "NO_CACHE", "PLAYER_PAGE", "RangeNotSatisfiable",
    "SEGMENT_CACHE", "STATIC_DIR", "STATIC_PREFIX", "ServerHandle", "ServerOptions", "UnsafePath", "bare_app",
    "cache_control_for", "content_type_for", "control_router", "create_app", "health_router", "is_immutable_name",
    "is_public", "media_router", "parse_command", "parse_range", "player_router", "resolve_file", "run_in_thread",
    "safe_relative_path", "serve_forever", "start_server",
]
