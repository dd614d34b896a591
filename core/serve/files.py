"""What to answer for a file request: path safety, MIME type, cache policy, byte ranges and validators.

Pure functions over names, headers and `os.stat_result`s, so every rule is tested without a socket; the
media router (media.py) wires them to requests. HLS players need the right MIME types, byte ranges,
playlists that are revalidated on every poll and segments that are cached for good, while a server that
faces viewers must never list directories, follow `..` out of the output folder or show operator files.
"""

from __future__ import annotations

import os
import posixpath
import re
import stat
import time
from collections.abc import Mapping
from email.utils import formatdate, parsedate_to_datetime
from pathlib import Path
from urllib.parse import unquote, urlsplit

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

# A file written once under a fresh sequence-numbered name (seg_000042.ts, subs/en/seg_000042.vtt,
# snapshots/000042.jpg) never changes, so browsers and CDNs may keep it without asking again. Everything
# else (playlists, init.mp4, transcript.vtt, crops.jsonl) can change under the same name: revalidate.
IMMUTABLE_SUFFIXES = frozenset({".ts", ".m4s", ".mp4", ".m4a", ".aac", ".vtt", ".jpg", ".jpeg"})
_SEQUENCE_STEM = re.compile(r"^(?:.*[_-])?\d+$")
SEGMENT_CACHE = "public, max-age=86400, immutable"
NO_CACHE = "no-cache"

PRIVATE_DIRS = frozenset({"logs"})
"""Top-level folders of an output directory that are for operators, not viewers (sidecar logs)."""
PRIVATE_SUFFIXES = frozenset({".log"})

SETTLE_SECONDS = 1.0
"""Last-Modified has one-second resolution: a file changed less than this long ago may change again
within the same second, so it gets no Last-Modified (its ETag still lets players revalidate)."""


class UnsafePath(ValueError):
    """A request path that tries to leave the served directory; answered with 400, never resolved."""


class RangeNotSatisfiable(ValueError):
    """A Range that starts past the end of the file; answered with 416 and the real size."""


def _split_name(path: Path | str) -> tuple[str, str]:
    # (stem, lower-case suffix) of the last component; plain string work: this runs on every request
    stem, suffix = os.path.splitext(os.path.basename(os.fspath(path)))
    return stem, suffix.lower()


def content_type_for(path: Path | str) -> str:
    """The Content-Type a player expects for this file name (octet-stream when unknown)."""
    return MIME_TYPES.get(_split_name(path)[1], "application/octet-stream")


def is_immutable_name(path: Path | str) -> bool:
    """True for media segments and snapshots under sequence-numbered names (see IMMUTABLE_SUFFIXES)."""
    stem, suffix = _split_name(path)
    return suffix in IMMUTABLE_SUFFIXES and bool(_SEQUENCE_STEM.match(stem))


def cache_control_for(path: Path | str) -> str:
    """Cached for a day and never revalidated for immutable names; revalidated on every use otherwise."""
    return SEGMENT_CACHE if is_immutable_name(path) else NO_CACHE


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
    try:
        decoded = unquote(path, errors="strict") if "%" in path else path
    except UnicodeDecodeError as exc:
        raise UnsafePath("path is not UTF-8 after percent-decoding") from exc
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


def is_public(rel: str) -> bool:
    """Whether a viewer may fetch this relative path: no hidden names (writers' temporary files), no
    operator files (PRIVATE_DIRS at the top, PRIVATE_SUFFIXES anywhere)."""
    parts = rel.split("/")
    if not rel or any(part.startswith(".") for part in parts):
        return False
    if parts[0] in PRIVATE_DIRS and len(parts) > 1:
        return False
    return _split_name(parts[-1])[1] not in PRIVATE_SUFFIXES


def open_beneath(root: str, rel: str) -> tuple[int, os.stat_result] | None:
    """Open `root/rel` for reading when it is a regular file whose real path stays inside `root` (which
    must be a real path itself); returns (fd, its stat) or None. The caller closes the fd.

    The check is made on the opened file, so nothing can swap it between check and read; O_NONBLOCK keeps
    a FIFO planted in the folder from blocking the server in open().
    """
    try:
        fd = os.open(os.path.join(root, rel), os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    except (OSError, ValueError):
        return None
    try:
        st = os.fstat(fd)
        if stat.S_ISREG(st.st_mode) and _is_beneath(_real_path(fd, os.path.join(root, rel)), root):
            return fd, st
    except OSError:
        pass
    os.close(fd)
    return None


_PROC_FD = os.path.isdir("/proc/self/fd")


def _real_path(fd: int, path: str) -> str:
    # the kernel's name for what was opened (one syscall); elsewhere resolve the name again
    if _PROC_FD:
        return os.readlink(f"/proc/self/fd/{fd}")
    return os.path.realpath(path)


def _is_beneath(real: str, root: str) -> bool:
    return real.startswith(root.rstrip(os.sep) + os.sep)


def resolve_file(root: Path, url_path: str, *, public_only: bool = True) -> Path | None:
    """The regular file a request names under root, or None (missing, a directory, hidden, private, outside).

    Raises UnsafePath for traversal attempts so they can be answered differently from a plain miss.
    """
    rel = safe_relative_path(url_path)
    hidden = any(part.startswith(".") for part in rel.split("/"))
    if not rel or hidden or (public_only and not is_public(rel)):
        return None
    root = root.resolve()
    candidate = (root / rel).resolve()
    if not candidate.is_relative_to(root):  # a symlink pointing out of the folder
        return None
    return candidate if candidate.is_file() else None


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


# ---------------------------------------------------------------- validators (ETag, Last-Modified)

def entity_tag(st: os.stat_result) -> str:
    """A strong ETag from inode, size and nanosecond mtime: playlists are replaced by rename, so a new
    version is a new inode with a new mtime, never the same triple with other bytes."""
    return f'"{st.st_ino:x}-{st.st_size:x}-{st.st_mtime_ns:x}"'


def http_date(seconds: float) -> str:
    """An IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`)."""
    return formatdate(seconds, usegmt=True)


def last_modified(st: os.stat_result, now: float | None = None) -> str | None:
    """Last-Modified for a file, or None while it may still change within the same second (SETTLE_SECONDS):
    otherwise a player holding the first version of that second would be told the second is current."""
    now = time.time() if now is None else now
    if now - st.st_mtime < SETTLE_SECONDS:
        return None
    return http_date(int(st.st_mtime))


def _parse_http_date(value: str) -> float | None:
    try:
        return parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


def _etag_list(header: str) -> list[str]:
    return [t.strip().removeprefix("W/") for t in header.split(",") if t.strip()]


def not_modified(headers: Mapping[str, str], etag: str, st: os.stat_result, now: float | None = None) -> bool:
    """Whether a GET with these request headers gets 304 (RFC 9110 13.2.2: If-None-Match, when present,
    decides alone; If-Modified-Since only counts for a settled file, see `last_modified`)."""
    inm = headers.get("if-none-match")
    if inm is not None:
        return inm.strip() == "*" or etag in _etag_list(inm)
    ims = headers.get("if-modified-since")
    if ims is None or last_modified(st, now) is None:
        return False
    since = _parse_http_date(ims)
    return since is not None and int(st.st_mtime) <= since


def range_applies(headers: Mapping[str, str], etag: str) -> bool:
    """If-Range: a range is only honoured when the client's copy is the current one (else send it all)."""
    if_range = headers.get("if-range")
    return if_range is None or if_range.strip() == etag


def is_regular(st: os.stat_result) -> bool:
    return stat.S_ISREG(st.st_mode)
