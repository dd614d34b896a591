"""HTTP server for sidecast's HLS output: playlists, segments, the player page and a small JSON API.

Why a server of our own rather than `python -m http.server`: HLS players need the right MIME types,
CORS on every response, byte ranges, and playlists that are never cached, while a server that faces
viewers must never list directories or follow `..` out of the output folder. The decisions (which
file, which type, which cache policy, which byte range) are pure functions at the top of this module;
the request handler only wires them to sockets.
"""

from __future__ import annotations

import json
import logging
import os
import posixpath
import socket
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

log = logging.getLogger("sidecast.serve")

STATIC_DIR = Path(__file__).resolve().parent / "static"
"""The player page and the vendored hls.js; served under STATIC_PREFIX, never from a CDN."""

STATIC_PREFIX = "/_player/"
PLAYER_PAGE = "player.html"
MAX_API_BODY = 1 << 20  # 1 MiB: API calls carry small JSON commands, not media.

ApiHandler = Callable[[dict[str, Any]], dict[str, Any]]

MIME_TYPES: dict[str, str] = {
    ".m3u8": "application/vnd.apple.mpegurl",
    ".ts": "video/mp2t",
    ".m4s": "video/iso.segment",
    ".mp4": "video/mp4",
    ".m4a": "audio/mp4",
    ".aac": "audio/aac",
    ".vtt": "text/vtt; charset=utf-8",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".png": "image/png",
    ".json": "application/json",
    ".jsonl": "application/json",
    ".js": "text/javascript; charset=utf-8",
    ".html": "text/html; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".txt": "text/plain; charset=utf-8",
    ".xml": "application/xml",
}

# Media segments are written once under a fresh sequence-numbered name, so browsers and CDNs may keep
# them; playlists (and everything else that grows, such as transcript.vtt) must be fetched fresh.
SEGMENT_SUFFIXES = frozenset({".ts", ".m4s", ".mp4", ".m4a", ".aac"})
SEGMENT_CACHE = "public, max-age=86400"
NO_CACHE = "no-cache"

CORS_HEADERS: dict[str, str] = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Expose-Headers": "Content-Length, Content-Range, Accept-Ranges",
}


class UnsafePath(ValueError):
    """A request path that tries to leave the served directory; answered with 400, never resolved."""


def content_type_for(path: Path | str) -> str:
    """The Content-Type a player expects for this file name (octet-stream when unknown)."""
    return MIME_TYPES.get(Path(path).suffix.lower(), "application/octet-stream")


def cache_control_for(path: Path | str) -> str:
    """Long-lived caching for immutable media segments, revalidation for everything that changes."""
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix in SEGMENT_SUFFIXES or (suffix == ".vtt" and p.name.startswith("seg_")):
        return SEGMENT_CACHE
    return NO_CACHE


def request_path(target: str) -> str:
    """The path of a request target, without query or fragment.

    Not urlsplit for origin-form targets: it would read `//etc/passwd` as host `etc`, path `/passwd`.
    """
    if not target.startswith("/"):
        target = urlsplit(target).path or "/"  # absolute-form: http://host/path
    return target.split("?", 1)[0].split("#", 1)[0]


def safe_relative_path(url_path: str) -> str:
    """Turn a request path into a relative POSIX path inside the served folder.

    Raises UnsafePath for anything that could escape it: `..` segments (plain or percent-encoded),
    absolute paths after decoding (`//etc/passwd`, `/%2Fetc`), backslashes, NUL bytes and drive letters.
    Decoding happens exactly once, so `%252e%252e` stays the harmless literal name `%2e%2e`.
    """
    path = request_path(url_path)
    decoded = unquote(path, errors="strict") if "%" in path else path
    if "\x00" in decoded or "\\" in decoded:
        raise UnsafePath("path contains a NUL byte or a backslash")
    if not decoded.startswith("/"):
        raise UnsafePath("path must start with /")
    rel = decoded[1:]
    if rel.startswith("/"):
        raise UnsafePath("absolute path")
    parts = rel.split("/")
    if any(part in ("..", ".") for part in parts):
        raise UnsafePath("path contains a . or .. segment")
    if len(parts[0]) == 2 and parts[0][1] == ":" and parts[0][0].isalpha():
        raise UnsafePath("path looks like a drive letter")
    return posixpath.normpath(rel) if rel else ""


def resolve_file(root: Path, url_path: str) -> Path | None:
    """The regular file a request names under root, or None (missing, a directory, hidden, outside).

    Raises UnsafePath for traversal attempts so they can be answered differently from a plain miss.
    Hidden names (a leading dot) are never served: writers use them for temporary files.
    """
    rel = safe_relative_path(url_path)
    if not rel or any(part.startswith(".") for part in rel.split("/")):
        return None
    root = root.resolve()
    candidate = (root / rel).resolve()
    if not candidate.is_relative_to(root):  # a symlink pointing out of the folder
        return None
    return candidate if candidate.is_file() else None


class RangeNotSatisfiable(ValueError):
    """A Range that starts past the end of the file; answered with 416 and the real size."""


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """The inclusive byte range (first, last) a `Range` header asks for, or None to send everything.

    Only a single `bytes=` range is honoured; multi-range and malformed headers get the whole file
    (RFC 9110 allows ignoring Range). Raises RangeNotSatisfiable for ranges past the end.
    """
    if not header:
        return None
    unit, _, spec = header.strip().partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return None
    first_s, dash, last_s = (s.strip() for s in spec.partition("-"))
    if not dash or not all(s == "" or s.isdigit() for s in (first_s, last_s)):
        return None
    if first_s == "":  # suffix range: the last N bytes
        if last_s == "":
            return None
        n = int(last_s)
        if n == 0 or size == 0:
            raise RangeNotSatisfiable(f"cannot send the last {n} bytes of a {size}-byte file")
        return max(0, size - n), size - 1
    first = int(first_s)
    last = int(last_s) if last_s else size - 1
    if first >= size:
        raise RangeNotSatisfiable(f"range starts at {first} but the file has {size} bytes")
    if last < first:
        return None
    return first, min(last, size - 1)


def api_name(url_path: str) -> str | None:
    """The API handler name in `/api/<name>` (names may contain slashes: `vertical/keep-centered`)."""
    path = request_path(url_path)
    if not path.startswith("/api/"):
        return None
    return unquote(path[len("/api/"):]).strip("/")


class _Server(ThreadingHTTPServer):
    """Carries the served folder and the API table to the handlers; logs socket errors quietly."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], root: Path, api: dict[str, ApiHandler]) -> None:
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        self.root = root
        self.api = api
        super().__init__(address, _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Players abort requests all the time (seeks, level switches); that is not worth a traceback.
        log.debug("connection from %s ended with an error", client_address, exc_info=True)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    server_version = "sidecast"
    sys_version = ""  # no Python version in the Server header
    timeout = 60  # an idle keep-alive connection must not pin a thread forever

    # -- plumbing ---------------------------------------------------------------------------------
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (stdlib signature)
        log.debug("%s %s", self.address_string(), format % args)

    def _send(self, status: int, body: bytes, content_type: str, extra: Mapping[str, str] = {}) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for k, v in {**CORS_HEADERS, "Cache-Control": NO_CACHE, **extra}.items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _text(self, status: int, message: str) -> None:
        self._send(status, (message + "\n").encode(), "text/plain; charset=utf-8")

    def _json(self, status: int, payload: Any) -> None:
        self._send(status, json.dumps(payload).encode(), "application/json")

    # -- methods ----------------------------------------------------------------------------------
    def do_OPTIONS(self) -> None:
        """CORS preflight: any origin may GET media and POST JSON to the API."""
        requested = self.headers.get("Access-Control-Request-Headers")
        self.send_response(HTTPStatus.NO_CONTENT)
        for k, v in CORS_HEADERS.items():
            self.send_header(k, v)
        self.send_header("Access-Control-Allow-Methods", "GET, HEAD, POST, OPTIONS")
        self.send_header("Access-Control-Allow-Headers", requested or "Content-Type, Range")
        self.send_header("Access-Control-Max-Age", "86400")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_HEAD(self) -> None:
        self.do_GET()

    def do_GET(self) -> None:
        path = request_path(self.path)
        if path == "/healthz":
            self._json(HTTPStatus.OK, {"status": "ok"})
            return
        if path.startswith("/api/"):
            self._text(HTTPStatus.METHOD_NOT_ALLOWED, "use POST with a JSON body for /api/ calls")
            return
        if path in ("/", "/index.html"):
            self._send_file(STATIC_DIR / PLAYER_PAGE)
            return
        try:
            if path.startswith(STATIC_PREFIX):
                file = resolve_file(STATIC_DIR, "/" + path[len(STATIC_PREFIX):])
            else:
                file = resolve_file(self.server.root, self.path)
        except (UnsafePath, UnicodeDecodeError):
            self._text(HTTPStatus.BAD_REQUEST, "bad path: it must stay inside the served folder")
            return
        if file is None:
            self._text(HTTPStatus.NOT_FOUND, f"not found: {path}")
            return
        self._send_file(file)

    def do_POST(self) -> None:
        name = api_name(self.path)
        if name is None:
            self.close_connection = True  # the unread body must not be parsed as the next request
            self._text(HTTPStatus.METHOD_NOT_ALLOWED, "POST is only accepted under /api/")
            return
        handler = self.server.api.get(name)
        length_s = self.headers.get("Content-Length", "0")
        try:
            length = int(length_s)
        except ValueError:
            self._json(HTTPStatus.BAD_REQUEST, {"error": "Content-Length must be a number"})
            return
        if length > MAX_API_BODY:
            self.close_connection = True
            self._json(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, {"error": f"body over {MAX_API_BODY} bytes"})
            return
        raw = self.rfile.read(length) if length > 0 else b""
        if handler is None:
            known = ", ".join(sorted(self.server.api)) or "none"
            self._json(HTTPStatus.NOT_FOUND, {"error": f"unknown API {name!r} (known: {known})"})
            return
        try:
            body = json.loads(raw or b"{}")
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            self._json(HTTPStatus.BAD_REQUEST, {"error": f"body is not valid JSON: {exc}"})
            return
        if not isinstance(body, dict):
            self._json(HTTPStatus.BAD_REQUEST, {"error": "body must be a JSON object"})
            return
        try:
            result = handler(body)
        except (ValueError, TypeError, KeyError) as exc:
            # Handlers signal bad arguments with these; the caller can fix the request.
            self._json(HTTPStatus.BAD_REQUEST, {"error": str(exc) or type(exc).__name__})
            return
        except Exception as exc:
            log.exception("API handler %r failed", name)
            self._json(HTTPStatus.INTERNAL_SERVER_ERROR, {"error": f"{type(exc).__name__}: {exc}"})
            return
        self._json(HTTPStatus.OK, result)

    # -- files ------------------------------------------------------------------------------------
    def _send_file(self, file: Path) -> None:
        try:
            f = file.open("rb")
        except OSError:
            self._text(HTTPStatus.NOT_FOUND, f"not found: {file.name}")
            return
        with f:
            # One open file, one size: a playlist replaced by rename mid-request stays consistent.
            size = os.fstat(f.fileno()).st_size
            headers = {"Cache-Control": cache_control_for(file), "Accept-Ranges": "bytes"}
            try:
                byte_range = parse_range(self.headers.get("Range"), size)
            except RangeNotSatisfiable:
                self._send(HTTPStatus.REQUESTED_RANGE_NOT_SATISFIABLE, b"", "text/plain",
                           {**headers, "Content-Range": f"bytes */{size}"})
                return
            if byte_range is None:
                status, first, length = HTTPStatus.OK, 0, size
            else:
                first, last = byte_range
                status, length = HTTPStatus.PARTIAL_CONTENT, last - first + 1
                headers["Content-Range"] = f"bytes {first}-{last}/{size}"
            self.send_response(status)
            self.send_header("Content-Type", content_type_for(file))
            self.send_header("Content-Length", str(length))
            for k, v in {**CORS_HEADERS, **headers}.items():
                self.send_header(k, v)
            self.end_headers()
            if self.command == "HEAD":
                return
            f.seek(first)
            remaining = length
            while remaining > 0:
                chunk = f.read(min(remaining, 256 * 1024))
                if not chunk:
                    break
                self.wfile.write(chunk)
                remaining -= len(chunk)


@dataclass
class ServerHandle:
    """A running server: where it listens, its API table (add handlers at any time), and how to stop it."""

    host: str
    port: int
    directory: Path
    api: dict[str, ApiHandler] = field(repr=False)
    _server: _Server = field(repr=False)
    _thread: threading.Thread = field(repr=False)

    @property
    def url(self) -> str:
        """Base URL with a trailing slash; wildcard binds are shown as loopback so the URL works here."""
        host = {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "::1"}.get(self.host, self.host)
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}/"

    def close(self) -> None:
        """Stop accepting requests and free the port; safe to call twice."""
        if self._thread.is_alive():
            self._server.shutdown()
            self._thread.join(timeout=5)
        self._server.server_close()

    def __enter__(self) -> ServerHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _make_server(directory: Path, port: int, host: str, api: Mapping[str, ApiHandler] | None) -> _Server:
    root = Path(directory)
    if not root.is_dir():
        raise FileNotFoundError(f"cannot serve {root}: it is not a directory")
    try:
        return _Server((host, port), root.resolve(), dict(api or {}))
    except OSError as exc:
        raise OSError(exc.errno, f"cannot listen on {host}:{port}: {exc.strerror}") from None


def start_server(
    directory: Path,
    port: int,
    host: str = "0.0.0.0",
    api: Mapping[str, ApiHandler] | None = None,
) -> ServerHandle:
    """Serve `directory` from a daemon thread so the pipeline keeps running in the foreground.

    Port 0 picks a free port (read it back from `.port`). `api` maps names to handlers for
    `POST /api/<name>`; each handler gets the JSON body as a dict and returns a JSON-able dict.
    """
    server = _make_server(directory, port, host, api)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2},
                              name=f"sidecast-serve-{server.server_address[1]}", daemon=True)
    thread.start()
    handle = ServerHandle(host=host, port=server.server_address[1], directory=server.root,
                          api=server.api, _server=server, _thread=thread)
    log.info("serving %s at %s", handle.directory, handle.url)
    return handle


def serve_forever(directory: Path, port: int, host: str = "0.0.0.0") -> None:
    """Serve in the foreground until Ctrl-C: for `sidecast serve` and `python -m core.serve`."""
    server = _make_server(directory, port, host, None)
    shown = "127.0.0.1" if host in ("0.0.0.0", "") else host
    print(f"serving {server.root} at http://{shown}:{server.server_address[1]}/ (Ctrl-C to stop)", flush=True)
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


def main(argv: list[str] | None = None) -> int:
    """`python -m core.serve OUTDIR [--port 8080] [--host 0.0.0.0]`: look at an output folder in a browser."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m core.serve", description=main.__doc__)
    parser.add_argument("directory", type=Path)
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--host", default="0.0.0.0")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        serve_forever(args.directory, args.port, args.host)
    except OSError as exc:
        parser.exit(1, f"error: {exc.strerror or exc}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
