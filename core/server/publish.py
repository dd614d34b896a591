"""Republishing: a worker's pipeline output becomes the stream's playlists in storage.

The pipeline of each attempt writes a plain HLS folder (its scratch directory). After every segment, the
publisher of that worker moves the new segments into storage under the attempt's own prefix and appends them
to the **stream's** playlists, which outlive attempts and events:

    scratch  work/cam1/<event>/r2/video/720p/seg_000004.ts  (+ the pipeline's own index.m3u8)
      │ moved (rename on the same disk, upload for S3)
      ▼
    storage  cam1/e/<event>/r2/video/720p/seg_000004.ts      written once: cached for good
             cam1/video/720p/index.m3u8                       the stream's live window (+ DVR), replaced whole
             cam1/master.m3u8, cam1/vertical.m3u8             the current attempt's masters
             cam1/e/<event>/master.m3u8 + .../vod.m3u8        the event's recording, written at its end

Why it works this way:
- the segment names never repeat: a new attempt (a crash restart, a publisher that reconnects) and a new
  event write under new prefixes, so a segment cached by a CDN for a day can never be replaced;
- the stream's playlists continue across attempts: the first segment of a new attempt carries
  EXT-X-DISCONTINUITY, media and discontinuity sequences keep growing (``LivePlaylist`` keeps those rules);
  a new event continues the sequence numbers too, so a player never sees them go back;
- retention is decided here: a segment that slides out of the window is deleted after the grace period
  RFC 8216 asks for (its duration plus the playlist's), unless the event is recorded.

The stream's playlists are persisted as their own text under ``state/<stream>/`` (the model round-trips
through ``sidecast.hls``), so the next attempt, in a new process, continues exactly where this one stopped:
from that copy or from the one in storage, whichever lists more (``newest_window``: a worker killed between
the two writes leaves the local copy a segment behind what players saw, and a sequence number once given
to players never names another segment).
"""

from __future__ import annotations

import json
import logging
import math
import posixpath
import queue
import re
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from sidecast.hls import MediaPlaylist, PlaylistError, Segment, parse_master, parse_media, tags
from sidecast.hls.live import LivePlaylist, atomic_write

from .storage import Storage, StorageError

log = logging.getLogger("sidecast.server.publish")

MASTERS = ("master.m3u8", "vertical.m3u8")
_SNAPSHOT = re.compile(r"^(\d+)\.jpg$")


@dataclass(frozen=True)
class PublishPlan:
    """What one attempt publishes, and how long things are kept."""

    stream_id: str
    event_id: str
    attempt: int
    segment_duration: float
    window_segments: int          # the stream's playlists keep this many segments (live window + DVR)
    record: bool                  # keep every segment of the event and write its VOD at the end

    @property
    def attempt_prefix(self) -> str:
        return f"{self.stream_id}/e/{self.event_id}/r{self.attempt}/"

    @property
    def grace_seconds(self) -> float:
        """How long a segment stays after it left the playlist (RFC 8216 §6.2.2)."""
        return self.segment_duration * (self.window_segments + 1)


def window_segments(segment_duration: float, window: int | None, dvr_seconds: float) -> int:
    """Segments the stream's playlists keep: the live window (default 6), widened to the DVR window."""
    live = window if window else 6
    return max(live, math.ceil(dvr_seconds / segment_duration)) if dvr_seconds > 0 else live


@dataclass
class PublishState:
    """What survives between attempts of a stream (``state/<stream>/publish.json``)."""

    event_id: str | None = None
    attempt: int = 0
    event_bytes: int = 0                       # stored for the open event, net of deletions
    segments: int = 0                          # main-ladder segments published in the open event
    pending: list[list[Any]] = field(default_factory=list)   # [due, key, size] deletions not done yet
    sizes: dict[str, int] = field(default_factory=dict)      # bytes of each segment in a window (not recorded)
    window_events: dict[str, str] = field(default_factory=dict)  # playlist -> the event its window belongs to

    @classmethod
    def load(cls, path: Path) -> PublishState:
        try:
            doc = json.loads(path.read_text())
        except (OSError, ValueError):
            return cls()
        names = ("event_id", "attempt", "event_bytes", "segments", "pending", "sizes", "window_events")
        return cls(**{k: doc[k] for k in names if k in doc})

    def save(self, path: Path) -> None:
        atomic_write(path, json.dumps(self.__dict__))


def relative_uri(target_key: str, playlist_key: str) -> str:
    """The URI that names ``target_key`` from the playlist stored at ``playlist_key``."""
    return posixpath.relpath(target_key, posixpath.dirname(playlist_key) or ".")


def resolve_uri(uri: str, playlist_key: str) -> str:
    """The storage key a relative URI in the playlist at ``playlist_key`` points at."""
    return posixpath.normpath(posixpath.join(posixpath.dirname(playlist_key), uri))


def restore_window(text: str, segment_duration: float, window: int) -> LivePlaylist:
    """A stream playlist as persisted, ready to grow again."""
    pl = parse_media(text)
    lp = LivePlaylist(None, segment_duration, window)
    lp.segments = deque(pl.segments)
    lp.media_sequence = pl.media_sequence
    lp.discontinuity_sequence = pl.discontinuity_sequence
    lp.total = pl.media_sequence + len(pl.segments)
    while window and len(lp.segments) > window:  # the window was made smaller: slide now
        gone = lp.segments.popleft()
        lp.media_sequence += 1
        lp.discontinuity_sequence += int(gone.discontinuity)
    return lp


def newest_window(storage: Storage, state_dir: Path, stream_id: str, rel: str) -> str | None:
    """The stream playlist ``rel`` as far as it got: the copy in storage or the local one under
    ``state_dir/live``, whichever lists more segments (None: neither exists or parses).

    Why both: storage is written first, the local copy just after. A worker killed between the two writes
    (its fleet lease ran out while its replica was frozen, the watchdog, the kernel's OOM killer) leaves the
    local copy one segment behind what players already saw; continuing from it would give the next
    attempt's first segment a media sequence number that already named another segment. The storage copy
    is what players saw, and what a replica that takes the stream over reads (supervisor._restore_life)."""
    best: tuple[int, bool] | None = None
    out: str | None = None
    texts: list[str] = []
    data = storage.get(f"{stream_id}/{rel}")
    if data is not None:
        texts.append(data.decode("utf-8", "replace"))
    try:
        texts.append((state_dir / "live" / rel).read_text())
    except (OSError, UnicodeDecodeError):
        pass
    for text in texts:
        try:
            pl = parse_media(text)
        except (PlaylistError, ValueError):
            continue
        rank = (pl.media_sequence + len(pl.segments), pl.endlist)
        if best is None or rank > best:
            best, out = rank, text
    return out


def next_event_window(previous: LivePlaylist | None, segment_duration: float, window: int) -> LivePlaylist:
    """A new event's empty playlist: sequence numbers continue from the previous event's, one discontinuity on."""
    lp = LivePlaylist(None, segment_duration, window)
    if previous is not None:
        lp.media_sequence = previous.media_sequence + len(previous.segments)
        lp.discontinuity_sequence = (previous.discontinuity_sequence
                                     + sum(1 for s in previous.segments if s.discontinuity) + 1)
        lp.total = lp.media_sequence
    return lp


def segment_text(seg: Segment) -> str:
    """One segment's lines as they appear in a playlist (for the recording journal)."""
    lines = MediaPlaylist(target_duration=1, segments=[seg]).dumps().splitlines()
    return "\n".join(lines[3:]) + "\n"  # after #EXTM3U, TARGETDURATION and MEDIA-SEQUENCE


class Publisher:
    """Moves one attempt's segments into storage and keeps the stream's playlists (runs on its own thread)."""

    def __init__(self, storage: Storage, state_dir: Path, workdir: Path, plan: PublishPlan,
                 on_error: Callable[[str, bool], None] | None = None,
                 clock: Callable[[], float] = time.time, shared_state: bool = False) -> None:
        self.storage = storage
        self.clock = clock
        self.state_dir = state_dir
        self.workdir = workdir
        self.plan = plan
        self.on_error = on_error
        self.state_path = state_dir / "publish.json"
        # fleet: the state also goes to the shared storage (a hidden key players cannot fetch), so the replica
        # that takes the stream over continues its playlists where this one stopped
        self.shared_state = shared_state
        self.state = PublishState.load(self.state_path)
        self.new_event = self.state.event_id != plan.event_id
        if self.new_event:
            self.state = PublishState(event_id=plan.event_id, attempt=plan.attempt,
                                      window_events=self.state.window_events)
        else:
            self.state.attempt = plan.attempt
        self.windows: dict[str, LivePlaylist] = {}
        self.started: set[str] = set()          # renditions that already took a segment in this attempt
        self.last_seq: dict[str, int] = {}      # per pipeline playlist: last media sequence published
        self.masters: dict[str, bytes] = {}
        self.published_segments = 0
        self.last_published_at: float | None = None
        self.error: str | None = None
        self.storage_full = False
        self._snapshot_mtime = 0
        self._queue: queue.Queue[bool] = queue.Queue()
        self._thread = threading.Thread(target=self._loop, name="publisher", daemon=True)
        self._lock = threading.Lock()

    # -------------------------------------------------------------------- threading

    def start(self) -> None:
        self._save_state()
        self._thread.start()

    def _save_state(self) -> None:
        self.state.save(self.state_path)
        if self.shared_state:
            self.storage.put_bytes(f"{self.plan.stream_id}/.state/publish.json", json.dumps(self.state.__dict__).encode())

    def notify(self, *_: object) -> None:
        """A segment is done (called from the pipeline's output thread: returns at once)."""
        self._queue.put(True)

    def close(self, timeout: float = 30.0) -> None:
        """Publish what is left, then stop the thread."""
        self._queue.put(False)
        self._thread.join(timeout)

    def _loop(self) -> None:
        while True:
            more = self._queue.get()
            while more and not self._queue.empty():  # coalesce a burst of notifications
                more = self._queue.get()
            self.sync()
            if not more:
                return

    # -------------------------------------------------------------------- the work

    def _window(self, rel: str) -> tuple[LivePlaylist, bool]:
        """The stream playlist ``rel`` grows, and whether it continues this event (True) or starts it."""
        lp = self.windows.get(rel)
        if lp is not None:
            return lp, True
        previous = None
        text = newest_window(self.storage, self.state_dir, self.plan.stream_id, rel)
        if text is not None:
            try:
                previous = restore_window(text, self.plan.segment_duration, self.plan.window_segments)
            except (PlaylistError, ValueError):
                previous = None
        continuing = (previous is not None and self.state.window_events.get(rel) == self.plan.event_id
                      and previous.target_duration == math.ceil(self.plan.segment_duration))
        if continuing:
            assert previous is not None
            lp = previous
        else:
            lp = next_event_window(previous, self.plan.segment_duration, self.plan.window_segments)
        self.state.window_events[rel] = self.plan.event_id
        self.windows[rel] = lp
        return lp, continuing and bool(lp.segments)

    def _media_playlists(self) -> list[str]:
        """The pipeline's media playlists (relative paths), from the masters it has written so far."""
        out: list[str] = []
        for name in MASTERS:
            try:
                text = (self.workdir / name).read_text()
            except OSError:
                continue
            for uri in parse_master(text).media_uris():
                if uri not in out and "://" not in uri and not uri.startswith("/"):
                    out.append(uri)
        return out

    def sync(self) -> None:
        """Publish every segment the pipeline has listed since the last call; then playlists, masters,
        the latest snapshot, and the deletions that are due."""
        with self._lock:
            try:
                self._sync()
                if self.error is not None:
                    log.info("storage writes work again")
                self.error, self.storage_full = None, False
            except StorageError as exc:
                self.error, self.storage_full = str(exc), exc.full
                log.error("publishing failed: %s", exc)
                if self.on_error is not None:
                    self.on_error(str(exc), exc.full)

    def _sync(self) -> None:
        stream = self.plan.stream_id
        changed: list[str] = []
        new_video = 0
        for rel in self._media_playlists():
            try:
                pl = parse_media((self.workdir / rel).read_text())
            except (OSError, PlaylistError):
                continue
            last = self.last_seq.get(rel, -1)
            rel_dir = posixpath.dirname(rel)
            playlist_key = f"{stream}/{rel}"
            window: LivePlaylist | None = None
            continuing = False
            for i, seg in enumerate(pl.segments):
                seq = pl.media_sequence + i
                if seq <= last:
                    continue
                if window is None:
                    window, continuing = self._window(rel)
                keys: dict[str, str] = {}
                for uri in _segment_files(seg):
                    src = self.workdir / rel_dir / uri
                    key = self.plan.attempt_prefix + posixpath.normpath(posixpath.join(rel_dir, uri))
                    if uri == seg.uri:
                        size = self.storage.put_file(src, key)
                        self.state.event_bytes += size
                        if not self.plan.record:
                            self.state.sizes[key] = size
                    elif src.exists():   # an init section: copied, the pipeline keeps its own
                        self.storage.put_bytes(key, src.read_bytes())
                    keys[uri] = key
                out = seg.with_uris(_uri_map(keys, playlist_key))
                if rel not in self.started:
                    # the first segment of this attempt: after a discontinuity when it continues the event
                    out = replace(out, discontinuity=continuing)
                self.started.add(rel)
                before = list(window.segments)
                window.add(out)
                gone = before[:len(before) + 1 - len(window.segments)]
                if self.plan.record:
                    self._journal(rel, out)
                else:
                    due = self.clock() + self.plan.grace_seconds
                    for old in gone:
                        k = resolve_uri(old.uri, playlist_key)
                        self.state.pending.append([due, k, self.state.sizes.pop(k, 0)])
                self.last_seq[rel] = seq
                if rel.startswith("video/"):
                    self.state.segments += 1
                    new_video += 1
            if rel in self.started:
                changed.append(rel)
        for rel in changed:
            text = self.windows[rel].render()
            self.storage.put_bytes(f"{stream}/{rel}", text.encode())
            atomic_write(self.state_dir / "live" / rel, text)
        if changed:
            self._masters()
            self._snapshot()
        if new_video:
            # counted once the playlists and masters that list them are out: the worker reports the attempt
            # live on the first, and a client told "live" must find the new segment (not the ended event's
            # playlist, which a loaded run read)
            self.published_segments += new_video
            self.last_published_at = self.clock()
        self._deletions()
        self._save_state()

    def _masters(self) -> None:
        for name in MASTERS:
            try:
                data = (self.workdir / name).read_bytes()
            except OSError:
                continue
            if self.masters.get(name) != data:
                self.storage.put_bytes(f"{self.plan.stream_id}/{name}", data)
                atomic_write(self.state_dir / "masters" / name, data)
                self.masters[name] = data

    def _snapshot(self) -> None:
        snaps = self.workdir / "snapshots"
        latest = snaps / "latest.jpg"
        try:
            st = latest.stat()
        except OSError:
            return
        if st.st_mtime_ns != self._snapshot_mtime:
            self._snapshot_mtime = st.st_mtime_ns
            try:
                self.storage.put_bytes(f"{self.plan.stream_id}/snapshot.jpg", latest.read_bytes())
            except FileNotFoundError:
                pass
        # the pipeline writes one numbered JPEG a second: keep the scratch folder from growing (the two
        # newest stay, the pipeline may still be copying the newest to latest.jpg)
        numbered = sorted((int(m.group(1)), p) for p in snaps.iterdir() if (m := _SNAPSHOT.match(p.name)))
        for _, p in numbered[:-2]:
            p.unlink(missing_ok=True)

    def _journal(self, rel: str, seg: Segment) -> None:
        path = self.state_dir / "events" / self.plan.event_id / (rel + ".journal")
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a") as f:
            f.write(segment_text(seg))

    def _deletions(self) -> None:
        now = self.clock()
        due = [p for p in self.state.pending if p[0] <= now]
        if not due:
            return
        self.storage.delete([p[1] for p in due])
        self.state.pending = [p for p in self.state.pending if p[0] > now]
        self.state.event_bytes = max(0, self.state.event_bytes - sum(_size_of(p) for p in due))


def _uri_map(keys: dict[str, str], playlist_key: str) -> Callable[[str], str]:
    """URIs of the pipeline's playlist (keys of ``keys``) as seen from the stream playlist at ``playlist_key``."""
    return lambda uri: relative_uri(keys.get(uri, uri), playlist_key)


def _rebase(from_key: str, to_key: str) -> Callable[[str], str]:
    """A relative URI of the playlist at ``from_key`` as seen from the playlist at ``to_key``."""
    return lambda uri: relative_uri(resolve_uri(uri, from_key), to_key)


def _size_of(pending: list[Any]) -> int:
    return int(pending[2]) if len(pending) > 2 else 0


def _segment_files(seg: Segment) -> list[str]:
    """The files a segment entry needs: its media file, and its init section (fMP4) when it has one."""
    uris = [seg.uri]
    if seg.init_section is not None and seg.init_section.uri:
        uris.insert(0, seg.init_section.uri)
    return uris


# ------------------------------------------------------------------------------ end of an event

@dataclass
class Recording:
    """An event's archive: its master playlist keys in storage."""

    masters: list[str]
    duration: float
    segments: int


def finalize_event(storage: Storage, state_dir: Path, stream_id: str, event_id: str, *, record: bool,
                   segment_duration: float) -> Recording | None:
    """End ``event_id``: ENDLIST on the stream's playlists and, when it was recorded, its VOD archive.

    Runs in the server process once no worker of the stream is running (nothing else writes then)."""
    state = PublishState.load(state_dir / "publish.json")
    live_dir = state_dir / "live"
    if live_dir.is_dir():
        for path in sorted(live_dir.rglob("*.m3u8")):
            rel = path.relative_to(live_dir).as_posix()
            if state.window_events.get(rel) != event_id:
                continue
            # the local copy may lag the stored one by a segment (a killed worker): ENDLIST goes on the
            # newest, or the stored playlist would lose a segment players already saw
            newest = newest_window(storage, state_dir, stream_id, rel)
            if newest is None:
                continue
            try:
                pl = parse_media(newest)
            except (PlaylistError, ValueError):
                continue
            if pl.endlist:
                continue
            pl.endlist = True
            text = pl.dumps()
            storage.put_bytes(f"{stream_id}/{rel}", text.encode())
            atomic_write(path, text)
    if not record:
        return None
    journal_dir = state_dir / "events" / event_id
    if not journal_dir.is_dir():
        return None
    duration, segments, masters = 0.0, 0, []
    target = math.ceil(segment_duration)
    for journal in sorted(journal_dir.rglob("*.journal")):
        rel = journal.relative_to(journal_dir).as_posix().removesuffix(".journal")   # video/720p/index.m3u8
        live_key = f"{stream_id}/{rel}"
        vod_key = f"{stream_id}/e/{event_id}/{posixpath.dirname(rel)}/vod.m3u8"
        try:
            pl = parse_media(f"#EXTM3U\n#EXT-X-TARGETDURATION:{target}\n#EXT-X-MEDIA-SEQUENCE:0\n"
                             + journal.read_text())
        except (OSError, PlaylistError) as exc:
            log.error("cannot read the recording journal %s: %s", journal, exc)
            continue
        if not pl.segments:
            continue
        segs = [s.with_uris(_rebase(live_key, vod_key)) for s in pl.segments]
        segs[0] = replace(segs[0], discontinuity=False)
        vod = MediaPlaylist(target_duration=max(target, max(math.floor(s.duration + 0.5) for s in segs)),
                            segments=segs, version=3, playlist_type="VOD", endlist=True,
                            header_tags=[tags.EXT_X_INDEPENDENT_SEGMENTS])
        storage.put_bytes(vod_key, vod.dumps().encode())
        if rel.startswith("video/"):
            duration = max(duration, vod.duration)
            segments = max(segments, len(segs))
    for name in MASTERS:
        try:
            text = (state_dir / "masters" / name).read_text()
        except OSError:
            continue
        master = parse_master(text).with_uris(
            lambda u: posixpath.join(posixpath.dirname(u), "vod.m3u8") if u.endswith("index.m3u8") else u)
        key = f"{stream_id}/e/{event_id}/{name}"
        storage.put_bytes(key, master.dumps().encode())
        masters.append(key)
    return Recording(masters=masters, duration=duration, segments=segments) if masters else None


def clear_stream_playlists(storage: Storage, state_dir: Path, stream_id: str) -> None:
    """The stream is off the air for good (its last event purged): its playlists go, players get 404."""
    keys = [f"{stream_id}/{name}" for name in (*MASTERS, "snapshot.jpg")]
    live_dir = state_dir / "live"
    if live_dir.is_dir():
        keys += [f"{stream_id}/{p.relative_to(live_dir).as_posix()}" for p in live_dir.rglob("*.m3u8")]
    storage.delete(keys)


__all__ = ["MASTERS", "PublishPlan", "PublishState", "Publisher", "Recording", "clear_stream_playlists",
           "finalize_event", "newest_window", "next_event_window", "relative_uri", "resolve_uri", "restore_window", "segment_text",
           "window_segments"]
