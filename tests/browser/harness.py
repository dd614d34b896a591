"""Real-browser HLS playback for tests: hls.js in Debian's headless Chromium, one call, one report.

Why: whether captions line up, ads play or the vertical ladder has the right size is only true if a
real player agrees. `play_hls` runs `play.mjs` (Node + playwright-core) and turns its JSON report into
a `PlaybackReport` that tests assert on. `serve` puts an output folder on a loopback HTTP server
with sidecast's own server (`core.serve`), so the browser sees exactly what viewers would.

    from tests.browser.harness import play_hls, serve

    @pytest.mark.browser
    def test_vertical_ladder_plays_at_9_16(outdir):
        with serve(outdir) as base:
            report = play_hls(base + "vertical.m3u8", seconds=4)
        report.raise_for_fatal()
        assert report.video_size == (1080, 1920)
"""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sidecast.core.sched import share_standing
from sidecast.core.serve import start_server

HERE = Path(__file__).resolve().parent
PLAY_SCRIPT = HERE / "play.mjs"
BROWSER_SERVER_SCRIPT = HERE / "browser_server.mjs"
NODE_MODULES = HERE / "node_modules"
DEFAULT_CHROMIUM = "/usr/bin/chromium"


class HarnessError(RuntimeError):
    """The browser harness could not run at all (missing Chromium/node_modules, crash, deadline)."""


@dataclass(frozen=True)
class SeenCue:
    """A text-track cue that was active while the browser played, and where the playhead was then."""

    text: str
    start: float
    end: float
    seen_at: float  # video.currentTime when the cue was first seen active
    last_seen_at: float  # video.currentTime when it was last seen active
    track: int
    language: str
    kind: str
    label: str
    wall_ms: int  # ms since the player was created


@dataclass
class PlaybackReport:
    """What the browser saw: hls.js events, playhead samples, cues, levels and the picture size.

    `raw` keeps the whole JSON report from play.mjs for anything without a field here.
    """

    url: str
    stop_reason: str | None  # "played" | "ended" | "fatal" | "timeout"
    played: float  # seconds of observed forward playback (sum of small currentTime steps)
    events: list[dict[str, Any]]  # {name, type, t (ms), ct (video.currentTime), data {...}}
    samples: list[dict[str, Any]]  # every ~100 ms: {t, ct, paused, ended, rs, bufferedEnd, w, h[, primary,
    #                                 integrated, playingAd, adId, assetId]}
    cues: list[dict[str, Any]]
    levels: list[dict[str, Any]]  # {index, width, height, bitrate, name, videoCodec, audioCodec, url}
    audio_tracks: list[dict[str, Any]]
    subtitle_tracks: list[dict[str, Any]]  # {id, name, lang, groupId, default, autoselect, forced, url}
    video: dict[str, Any]  # final {width, height, currentTime, duration, paused, ended, errors}
    hls_version: str | None
    console: list[dict[str, Any]] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> PlaybackReport:
        return cls(
            url=data.get("url") or "",
            stop_reason=data.get("stopReason"),
            played=float(data.get("played") or 0.0),
            events=data.get("events") or [],
            samples=data.get("samples") or [],
            cues=data.get("cues") or [],
            levels=data.get("levels") or [],
            audio_tracks=data.get("audioTracks") or [],
            subtitle_tracks=data.get("subtitleTracks") or [],
            video=data.get("video") or {},
            hls_version=data.get("hlsVersion"),
            console=data.get("console") or [],
            page_errors=data.get("pageErrors") or [],
            raw=data,
        )

    # -- events -------------------------------------------------------------------------------------
    def events_named(self, name: str) -> list[dict[str, Any]]:
        """Events by hls.js constant name (`INTERSTITIAL_STARTED`), event string (`hlsError`) or
        `media.<type>` for the video element's own events (`media.playing`, `media.resize`)."""
        return [e for e in self.events if e["name"] == name or e["type"] == name]

    @property
    def errors(self) -> list[dict[str, Any]]:
        """All hls.js ERROR events' data, fatal or not (non-fatal ones such as bufferSeekOverHole are normal)."""
        return [e["data"] for e in self.events_named("ERROR")]

    @property
    def fatal_errors(self) -> list[dict[str, Any]]:
        """hls.js errors that stopped playback: the only errors a test should fail on."""
        return [d for d in self.errors if d.get("fatal")]

    def raise_for_fatal(self) -> None:
        """Fail with a readable summary when playback hit a fatal error or a media element error."""
        problems = [f"{d.get('type')}/{d.get('details')}: {d.get('error') or d.get('reason') or ''}"
                    for d in self.fatal_errors]
        problems += [f"media error {e.get('code')}: {e.get('message')}" for e in self.video.get("errors", [])]
        if problems:
            raise AssertionError(f"playback of {self.url} failed: " + "; ".join(problems))

    # -- playhead -----------------------------------------------------------------------------------
    def positions(self, clock: str = "video") -> list[tuple[int, float]]:
        """(wall ms, seconds) pairs of a clock: "video" (video.currentTime), "primary" or "integrated"
        (hls.interstitialsManager positions, only with interstitials=True)."""
        key = {"video": "ct"}.get(clock, clock)
        return [(s["t"], s[key]) for s in self.samples if s.get(key) is not None]

    def advanced_by(self, clock: str = "video") -> float:
        """How far the clock moved from the first to the last sample, in seconds.

        With interstitials video.currentTime restarts for each ad; use clock="primary" there.
        """
        pos = self.positions(clock)
        return pos[-1][1] - pos[0][1] if pos else 0.0

    @property
    def ad_playing_samples(self) -> list[dict[str, Any]]:
        """Samples taken while hls.js was playing an interstitial (interstitials=True only)."""
        return [s for s in self.samples if s.get("playingAd")]

    # -- picture and captions ----------------------------------------------------------------------
    @property
    def video_size(self) -> tuple[int, int]:
        """(videoWidth, videoHeight) at the end of playback: the decoded picture size."""
        return int(self.video.get("width") or 0), int(self.video.get("height") or 0)

    @property
    def video_sizes(self) -> set[tuple[int, int]]:
        """Every non-zero picture size seen while sampling (more than one after a level switch)."""
        return {(s["w"], s["h"]) for s in self.samples if s.get("w")}

    @property
    def cues_seen(self) -> list[SeenCue]:
        """Every cue that became active, in the order first seen."""
        return [
            SeenCue(text=c["text"], start=c["start"], end=c["end"], seen_at=c["seenAt"],
                    last_seen_at=c.get("lastSeenAt", c["seenAt"]), track=c["track"],
                    language=c.get("language", ""), kind=c.get("kind", ""), label=c.get("label", ""),
                    wall_ms=c["t"])
            for c in self.cues
        ]

    def summary(self) -> str:
        """One line for assertion messages."""
        return (f"{self.url}: stop={self.stop_reason} played={self.played:.2f}s "
                f"advanced={self.advanced_by():.2f}s size={self.video_size} levels={len(self.levels)} "
                f"errors={[(d.get('details'), d.get('fatal')) for d in self.errors]} cues={len(self.cues)}")


def check_environment(chromium: str | None = None) -> tuple[str, str]:
    """(node, chromium) paths, or a HarnessError saying what to install: fail fast instead of hanging."""
    node = shutil.which("node")
    if node is None:
        raise HarnessError("node is not on PATH: install Debian's nodejs (./dev.sh install)")
    browser = chromium or os.environ.get("SIDECAST_CHROMIUM") or DEFAULT_CHROMIUM
    if not Path(browser).exists():
        raise HarnessError(f"Chromium not found at {browser}: install Debian's chromium (./dev.sh install) "
                           "or set SIDECAST_CHROMIUM")
    if not (NODE_MODULES / "playwright-core").is_dir():
        raise HarnessError(f"{NODE_MODULES}/playwright-core is missing: run ./dev.sh install "
                           "(never `npx playwright install`: we use Debian's chromium)")
    return node, browser


def play_hls(
    url: str,
    *,
    seconds: float = 6.0,
    timeout: float = 90.0,
    interstitials: bool = False,
    subtitles: bool | int | str = False,
    start_level: int | None = None,
    until_time: float | None = None,
    until_event: str | None = None,
    hls_config: dict[str, Any] | None = None,
    sample_ms: int = 100,
    cue_ms: int = 50,
    barcode: dict[str, Any] | bool = False,
    chromium: str | None = None,
    hls_debug: bool | str = False,
    network: str | None = None,
) -> PlaybackReport:
    """Play `url` in headless Chromium with hls.js and report what happened.

    Playback stops when `seconds` of forward playback were observed and, if given, the primary position
    reached `until_time` and the hls.js event `until_event` fired; or earlier on a fatal error or the
    end of the stream; or at `timeout` (stop_reason "timeout": assert on the report to see why).
    `subtitles`: True = first subtitle track, an int = that index, a str = that language or name.
    `barcode`: read devkit/barcode.py frame numbers off the presented picture (True, or {"everyMs": N} to
    read at most one frame per N ms): `raw["frames"]` lists {n, shownAt (ms since epoch), w, h}.
    `hls_debug`: True or a regular expression: hls.js's own log lines (those matching) in `raw["debugLog"]`.
    Every cue that reached a text track is in `raw["cuesAdded"]` with the playhead when it arrived.
    `network`: a regular expression; every request whose URL matches is in `raw["network"]` as
    {url, start, end (wall-clock ms), status or failure}; `raw["wall0"]` is the wall clock (ms) at which the
    events' and samples' `t` count from.
    Raises HarnessError only when the harness itself cannot run.
    """
    opts = {
        "url": url, "seconds": seconds, "timeout": timeout, "interstitials": interstitials,
        "subtitles": subtitles, "startLevel": start_level, "untilTime": until_time, "untilEvent": until_event,
        "hlsConfig": hls_config or {}, "sampleMs": sample_ms, "cueMs": cue_ms, "barcode": barcode,
        "hlsDebug": hls_debug, "network": network,
    }
    return PlaybackReport.from_json(_run_play(opts, chromium, timeout))


class _SharedBrowser:
    """One Chromium (browser_server.mjs) that this process's play.mjs runs connect to, each in a fresh
    browser context, while ``sharing_one_browser`` is on: a Chromium start cost each run ~1-2 s of CPU and of
    wall time (2026-12-02, load 8: 1.1-2.0 s a persistent-context start, 0.26-0.46 s a context of a running
    browser). Started at the first run that asks, restarted if it died, stopped when sharing ends. Runs
    may ask from several threads at once (a test module that plays its sessions side by side): one starts
    the browser, the others wait for its endpoint."""

    def __init__(self) -> None:
        self.on = False
        self.proc: subprocess.Popen[str] | None = None
        self.endpoint = ""
        self.chromium = ""
        self._lock = threading.Lock()

    def endpoint_for(self, node: str, chromium: str, timeout: float) -> str:
        with self._lock:
            return self._endpoint_for(node, chromium, timeout)

    def _endpoint_for(self, node: str, chromium: str, timeout: float) -> str:
        if self.proc is not None and (self.proc.poll() is not None or self.chromium != chromium):
            self.stop()
        if self.proc is None:
            self.proc = subprocess.Popen([node, str(BROWSER_SERVER_SCRIPT), json.dumps({"chromium": chromium})],
                                         cwd=HERE, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                         stderr=subprocess.DEVNULL, text=True, start_new_session=True)
            share_standing(self.proc.pid)
            self.chromium = chromium
            line = self._first_line(timeout)
            doc = json.loads(line) if line.startswith("{") else {"error": f"no endpoint ({line!r})"}
            if "wsEndpoint" not in doc:
                self.stop()
                raise HarnessError(f"the shared Chromium did not start: {doc.get('error')}")
            self.endpoint = doc["wsEndpoint"]
        return self.endpoint

    def _first_line(self, timeout: float) -> str:
        assert self.proc is not None and self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ready, _, _ = select.select([self.proc.stdout], [], [], 0.5)
            if ready:
                return self.proc.stdout.readline().strip()
            if self.proc.poll() is not None:
                return ""
        return ""

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.stdin is not None:
            proc.stdin.close()  # browser_server.mjs closes its browser and exits
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


_SHARED = _SharedBrowser()


@contextmanager
def sharing_one_browser() -> Iterator[None]:
    """While on, `play_hls` and `open_page` in this process play in one shared Chromium, a fresh context
    each (the test suite turns it on per worker). Off, each run starts its own browser in a session of its
    own and gives it the caller's scheduling standing (what benches measure with)."""
    _SHARED.on = True
    try:
        yield
    finally:
        _SHARED.on = False
        _SHARED.stop()


def _run_play(opts: dict[str, Any], chromium: str | None, timeout: float) -> dict[str, Any]:
    """Run play.mjs with these options; its JSON report, or HarnessError when it could not run."""
    url = opts["url"]
    node, browser = check_environment(chromium)
    opts = {**opts, "chromium": browser}
    if _SHARED.on:
        opts["wsEndpoint"] = _SHARED.endpoint_for(node, browser, min(60.0, timeout))
    proc = subprocess.Popen([node, str(PLAY_SCRIPT), json.dumps(opts)], cwd=HERE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    # node's own session (play.mjs gives the Chromium it starts node's nice); a bench may put the player
    # below the pipeline it measures (bench/latency.py --browser-lower)
    share_standing(proc.pid, int(os.environ.get("SIDECAST_BROWSER_LOWER") or 0))
    try:
        # play.mjs keeps its own deadline; this one only catches a wedged node or browser.
        out, err = proc.communicate(timeout=timeout + 30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # node and the Chromium it started
        proc.communicate()
        raise HarnessError(f"play.mjs did not finish within {timeout + 30:.0f} s playing {url}") from None
    try:
        data = json.loads(out.strip().splitlines()[-1]) if out.strip() else None
    except json.JSONDecodeError:
        data = None
    if not isinstance(data, dict):
        tail = (err or out).strip().splitlines()[-5:]
        raise HarnessError(f"play.mjs exited {proc.returncode} without a report: {' | '.join(tail)}")
    if data.get("harnessError"):
        raise HarnessError(f"browser harness failed: {data['harnessError']}")
    return data


def open_page(url: str, *, seconds: float = 2.0, timeout: float = 60.0, until: str | None = None,
              chromium: str | None = None) -> dict[str, Any]:
    """Open a page that plays video by itself (e.g. the server's player page, `GET /`).

    Waits until its first <video> has played `seconds` (or the deadline) and returns play.mjs's raw
    report: `stopReason`, `video` {width, height, currentTime, paused, ended, errors}, `pageText`
    (the page's visible text), `hlsVersion`, `console`, `pageErrors`. `until`: a JavaScript expression that
    must also become true in the page before the report is taken (e.g. captions shown).
    """
    return _run_play({"url": url, "page": True, "seconds": seconds, "timeout": timeout, "until": until},
                     chromium, timeout)


def keep_evidence(fallback: Path, name: str, items: dict[str, Any]) -> Path:
    """Write what a failed browser test saw (the player's report, the server's files and their times) to
    ``$SIDECAST_TEST_EVIDENCE/<name>-<UTC time>/`` if that is set, else ``fallback``; returns the folder.

    Why: a flaky player failure that is not reproduced alone is only understood from the run that failed
    (issue #21: "tick 7 never showed" once in five full runs, and the player's report was gone). Each item
    is written as ``<key>.json`` (or ``<key>.txt`` for a str)."""
    root = os.environ.get("SIDECAST_TEST_EVIDENCE")
    folder = Path(root) / f"{name}-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}-{os.getpid()}" if root else fallback
    folder.mkdir(parents=True, exist_ok=True)
    for key, value in items.items():
        if isinstance(value, str):
            (folder / f"{key}.txt").write_text(value)
        else:
            (folder / f"{key}.json").write_text(json.dumps(value, indent=1, default=str))
    return folder


@contextmanager
def serve(directory: Path | str) -> Iterator[str]:
    """Serve `directory` with sidecast's HTTP server on 127.0.0.1 (a free port); yields the base URL
    with a trailing slash, e.g. "http://127.0.0.1:41234/"."""
    handle = start_server(Path(directory), 0, host="127.0.0.1")
    try:
        yield handle.url
    finally:
        handle.close()
