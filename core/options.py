"""The options of one stream, declared once.

``RunOptions`` is the single declaration of what a stream can be told: ``sidecast run`` builds its
command-line flags from it (``add_arguments``), ``--config FILE.toml`` fills it from a TOML table
(``from_mapping``), and the pipeline reads it. Each field carries its flag, help text and a parser from
text, so a new option is one field here, not three edits in three files.

Values are parsed and checked here, once: anything a user can get wrong raises ``ConfigError`` with a
one-line message that names the option.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import re
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sidecast.contract.errors import ConfigError
from sidecast.contract.params import MAX_PAN_SPEED_RANGE, SAFE_MARGIN_RANGE, TARGET_VMAF_RANGE, parse_aspect

from .breaks import parse_break_at
from .ladder import DEFAULT_LADDER, RateControl, Rung, parse_ladder, parse_rate_control

_PARSE = "parse"
# Seconds a low-latency stream a sidecar captions live adds to its PART-HOLD-BACK (--caption-hold-back): three
# quiet-box runs of bench/latency.py (kh) showed 60 of 61 captions at a 2.78-3.29 s median, (k) without it 38 of
# 44 at 1.76-1.96 s (docs/latency.md, "eighteenth session").
CAPTION_HOLD_BACK = 0.8


def opt(*flags: str, help: str, parse: Callable[[str], Any] | None = None, metavar: str | None = None,  # noqa: A002
        choices: Sequence[str] | None = None, repeat: bool = False, negate: bool = False,
        positional: bool = False, required: bool = False, cli: bool = True) -> dict[str, Any]:
    """Field metadata: how the option looks on the command line and how its text is parsed.

    ``repeat``: the flag may be given several times (and the config file takes a list). ``negate``: a
    boolean that defaults to True and is switched off by the flag (``--no-audio``). ``cli=False``: set in
    the config file or by code only.
    """
    return {"flags": flags, "help": help, _PARSE: parse, "metavar": metavar, "choices": choices,
            "repeat": repeat, "negate": negate, "positional": positional, "required": required, "cli": cli}


@dataclass(frozen=True)
class RangeParser:
    """Parses one number from text and checks its range; ``lo``/``hi`` stay readable, so the server's API
    schema can state the same bounds (minimum/maximum) the parser enforces."""

    name: str
    lo: float
    hi: float
    kind: type = float
    unit: str = ""  # "seconds": the message says "a number of seconds"

    def __call__(self, text: str) -> Any:
        try:
            v = self.kind(text)
        except ValueError:
            what = "a number of seconds" if self.unit == "seconds" else (
                "an integer" if self.kind is int else "a number")
            raise ConfigError(f"{self.name} must be {what}, not {text!r}") from None
        if not (math.isfinite(v) and self.lo <= v <= self.hi):
            unit = " seconds" if self.unit == "seconds" else ""
            raise ConfigError(f"{self.name} must be between {self.lo:g} and {self.hi:g}{unit}, not {text}")
        return v


def _seconds(name: str, lo: float, hi: float) -> RangeParser:
    return RangeParser(name, lo, hi, float, "seconds")


def _number(name: str, lo: float, hi: float, kind: type = float) -> RangeParser:
    return RangeParser(name, lo, hi, kind)


def _csv(text: str) -> list[str]:
    return [s.strip() for s in str(text).split(",") if s.strip()]


def _name_value(flag: str, expect: str) -> Callable[[str], tuple[str, str]]:
    def parse(text: str) -> tuple[str, str]:
        name, sep, value = str(text).partition("=")
        if not sep or not name.strip() or not value.strip():
            raise ConfigError(f"bad {flag} {text!r}: expected {expect}")
        return name.strip(), value.strip()
    return parse


def _ladder(text: str) -> tuple[Rung, ...]:
    try:
        return parse_ladder(text)
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc


def _rate_control(text: str) -> RateControl:
    try:
        return parse_rate_control(text)
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc


def _aspect(text: str) -> str:
    try:
        parse_aspect(text)  # validates; the string travels to sidecars as a stream parameter
    except ValueError as exc:
        raise ConfigError(f"bad --aspect: {exc}") from None
    return text.strip()


def _break_at(text: str) -> tuple[float, float]:
    try:
        return parse_break_at(str(text))
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def _language(text: str) -> str:
    tag = str(text).strip()
    if not tag or len(tag) > 35 or not all(p.isalnum() for p in tag.split("-")):
        raise ConfigError(f"bad language {text!r}: expected a BCP-47 tag such as en, es or pt-BR")
    return tag


@dataclass
class RunOptions:
    """Everything one stream can be configured with (``sidecast run``, a config file, the server API)."""

    source: str = field(default="", metadata=opt(positional=True, help=(
        "a media file, rtmp://0.0.0.0:1935/live/KEY (listen for a publisher), rtsp://... or srt://... "
        "(pull; srt://...?mode=listener to listen), or an http(s) HLS playlist")))
    outdir: Path = field(default=Path("out"), metadata=opt(
        "-o", "--output", "--outdir", required=True, parse=Path, metavar="OUTDIR", help="output directory"))
    realtime: bool = field(default=False, metadata=opt("--realtime", help="pace a file source as a live stream"))
    segment_duration: float = field(default=2.0, metadata=opt(
        "--segment-duration", parse=_seconds("--segment-duration", 0.5, 30),
        help="HLS segment duration, seconds (default 2)"))
    window: int | None = field(default=None, metadata=opt(
        "--window", parse=_number("--window", 0, 100_000, int),
        help="live sliding-window length in segments (default: 6 for live sources, 0 = keep all)"))
    ladder: tuple[Rung, ...] = field(default=DEFAULT_LADDER, metadata=opt(
        "--ladder", parse=_ladder,
        help='renditions, e.g. "1080p:6000k,720p:3000k,480p:1400k:crf=24" (default 1080/720/480/360)'))
    rate_control: RateControl = field(default="crf", metadata=opt(
        "--rate-control", parse=_rate_control, metavar="crf|vbr",
        help="static ladder: crf = capped CRF, each rung's CRF under its bitrate as a cap (default); vbr = "
             "fixed-bitrate ladder, each rung at its bitrate (x264 ABR, same cap). A bitrate hint makes its "
             "segment capped CRF in either mode (docs/bitrate.md)"))
    target_vmaf: float | None = field(default=None, metadata=opt(
        "--target-vmaf", parse=_number("--target-vmaf", *TARGET_VMAF_RANGE), metavar="N",
        help="with a bitrate sidecar: aim every segment of every rung at VMAF N (at the rung's display size) "
             "instead of the static CRF; segments that cannot reach N spend up to the rung's cap (with "
             "--target-anchor, up to --target-ceiling times it) (docs/bitrate.md)"))
    target_anchor: bool = field(default=False, metadata=opt(
        "--target-anchor",
        help="with --target-vmaf: measure each hinted segment's VMAF after encoding it and, when it misses N by "
             "more than 1.5, encode it once more at a corrected CRF (about 2.5 times the video encoding CPU; needs "
             "the imageio-ffmpeg wheel's libvmaf; docs/bitrate.md)"))
    target_ceiling: float | None = field(default=None, metadata=opt(
        "--target-ceiling", parse=_number("--target-ceiling", 1, 10), metavar="K",
        help="with --target-anchor: a segment whose encode fills its rung's cap short of N is encoded again "
             "under K times the cap (1 to 10; default 3 with --target-anchor; 1: never above the cap); the master "
             "playlist declares K times each rung's BANDWIDTH (docs/bitrate.md)"))
    size_anchor: bool = field(default=False, metadata=opt(
        "--size-anchor",
        help="capped-CRF ladder: also encode each segment of each rung at 0.75 and 0.5 of its size (on rungs "
             "up to 480p also with x264's slower 'medium' preset), measure their VMAF and PSNR against the segment's "
             "own encode, and publish the one with the fewest bits within 1 VMAF and 1 dB of it (fewer bits at the ladder's "
             "quality; several times the video encoding CPU; needs the imageio-ffmpeg wheel's libvmaf; "
             "docs/bitrate.md)"))
    size_anchor_auto: bool = field(default=True, metadata=opt(
        "--no-size-anchor", negate=True,
        help="a file read as fast as it goes with a bitrate sidecar (--sidecars bitrate) gets --size-anchor by "
             "default (the hinted segments measured and published at the fewest bits of the ladder's quality: "
             "about 20 %% fewer bits for several times the video encoding CPU); this keeps the hints alone. Live "
             "sources and --realtime never get it unless --size-anchor is given (docs/bitrate.md)"))
    audio: bool = field(default=True, metadata=opt("--no-audio", negate=True, help="ignore the source's audio"))
    sidecars: list[str] = field(default_factory=list, metadata=opt(
        "--sidecars", parse=_csv, help="comma-separated sidecars to start locally (e.g. stt,autocrop)"))
    sidecar_addrs: dict[str, str] = field(default_factory=dict, metadata=opt(
        "--sidecar-addr", repeat=True, metavar="NAME=ADDR",
        parse=_name_value("--sidecar-addr", "NAME=host:port or NAME=unix:///path"),
        help="connect to a running sidecar (host:port or unix:///path); repeatable"))
    sidecar_args: dict[str, list[str]] = field(default_factory=dict, metadata=opt(
        "--sidecar-arg", repeat=True, metavar="NAME=ARG",
        parse=_name_value("--sidecar-arg", "NAME=ARG for a sidecar named in --sidecars"),
        help="extra argument for a local sidecar, e.g. stt=--language=de; repeatable"))
    sidecar_nice: dict[str, int] = field(default_factory=dict, metadata=opt(
        "--sidecar-nice", repeat=True, metavar="NAME=N",
        parse=_name_value("--sidecar-nice", "NAME=N (0..19) for a sidecar named in --sidecars"),
        help="run a local sidecar N steps of CPU priority below the core (its scheduling group's nice is the "
             "core's + N; default 0, the same): a sidecar whose output may trail (autocrop's vertical) can "
             "give way to the ladder and the captions on a busy machine; repeatable"))
    captions_language: str = field(default="en", metadata=opt(
        "--captions-language", parse=_language,
        help="language spoken in the source, for the caption rendition (LANGUAGE in master.m3u8; default en)"))
    captions_translate: list[str] = field(default_factory=list, metadata=opt(
        "--captions-translate", parse=lambda t: [_language(x) for x in _csv(t)], metavar="LANG,...",
        help="add one translated caption rendition per language, e.g. es,pt (needs a caption sidecar that "
             "declares those translations)"))
    captions_translation: bool = field(default=False, metadata=opt(
        "--captions-translation",
        help="old name of --captions-translate en (an English translation rendition); kept as an alias"))
    decision_window: float | None = field(default=None, metadata=opt(
        "--decision-window", parse=_seconds("--decision-window", 0, 30),
        help="seconds a finished segment waits for sidecar results (default: the longest latency the "
             "running sidecars declare, at most 5)"))
    transport: str = field(default="auto", metadata=opt(
        "--transport", choices=("auto", "shm", "bytes"),
        help="frame transport to sidecars (auto: shared memory when on the same host)"))
    snapshots_fps: float = field(default=1.0, metadata=opt(
        "--snapshots-fps", parse=_number("--snapshots-fps", 0, 60), help="JPEG snapshots per second (0 = off)"))
    snapshots_width: int = field(default=640, metadata=opt(
        "--snapshots-width", parse=_number("--snapshots-width", 16, 8192, int), help="snapshot width in pixels"))
    vertical: str = field(default="auto", metadata=opt(
        "--vertical", choices=("auto", "on", "off"),
        help="publish vertical.m3u8 (auto: when a running sidecar declares crop results)"))
    aspect: str = field(default="9:16", metadata=opt(
        "--aspect", parse=_aspect, help="vertical aspect ratio: 9:16 (default), 4:5, 1:1"))
    safe_margin: float = field(default=0.05, metadata=opt(
        "--safe-margin", parse=_number("--safe-margin", *SAFE_MARGIN_RANGE),
        help="vertical crop safe margin, fraction"))
    max_pan_speed: float = field(default=0.5, metadata=opt(
        "--max-pan-speed", parse=_number("--max-pan-speed", *MAX_PAN_SPEED_RANGE),
        help="vertical crop max pan speed, fraction of source width per second"))
    keep_centered: bool = field(default=False, metadata=opt(
        "--keep-centered", help="vertical: ignore the crop path, keep centred"))
    stream_keys: set[str] = field(default_factory=set, metadata=opt(
        "--stream-key", repeat=True, parse=str, help="accepted RTMP stream key; repeatable"))
    stream_keys_file: Path | None = field(default=None, metadata=opt(
        "--stream-keys-file", parse=Path, help="file with one accepted stream key per line"))
    reconnect_timeout: float = field(default=30.0, metadata=opt(
        "--reconnect-timeout", parse=_seconds("--reconnect-timeout", 0, 86_400),
        help="live sources: seconds to wait for the publisher/source to come back (default 30)"))
    breaks: list[tuple[float, float]] = field(default_factory=list, metadata=opt(
        "--break-at", repeat=True, parse=_break_at, metavar="SECONDS[:DURATION]",
        help="schedule an ad break at a media time (forces a boundary, signals it in playlists)"))
    latency: str = field(default="normal", metadata=opt(
        "--latency", choices=("normal", "low"),
        help="low: LL-HLS (CMAF parts of --part-duration, blocking playlist reload, preload hints) for the main "
             "ladder and audio, encoded with x264's zero-latency settings; normal: MPEG-TS segments (default)"))
    part_duration: float = field(default=1 / 3, metadata=opt(
        "--part-duration", parse=_seconds("--part-duration", 0.1, 2.0),
        help="low latency: the partial segment duration (PART-TARGET), seconds (default 0.333)"))
    part_hold_back: float | None = field(default=None, metadata=opt(
        "--part-hold-back", parse=_seconds("--part-hold-back", 0.2, 30.0),
        help="low latency: how far behind the live edge players are asked to sit (PART-HOLD-BACK), seconds "
             "(default: three parts, plus --caption-hold-back on a stream with live captions); more lets late "
             "captions reach viewers in time, at that cost in latency"))
    caption_hold_back: float | None = field(default=None, metadata=opt(
        "--caption-hold-back", parse=_seconds("--caption-hold-back", 0.0, 10.0),
        help="low latency: seconds added to the default PART-HOLD-BACK when a sidecar captions the stream live "
             f"(default {CAPTION_HOLD_BACK}; 0: three parts, as without captions). A caption is decided ~2 s after "
             "its words and hls.js loads no caption part behind its playhead: at three parts 38 of 44 of the "
             "captions reached it in time, at +0.8 s 60 of 61 (docs/latency.md, \"eighteenth session\")"))
    caption_part_cut: str | None = field(default=None, metadata=opt(
        "--caption-part-cut", choices=("decided", "covered"),
        help="low latency: when a WebVTT part is written: covered (once the captioners have decided all of "
             "it; the default) or decided (as soon as they have decided part of it, so a cue's last part goes "
             "out with the cue; a cue decided later may then land one part further on: docs/latency.md)"))
    caption_segments: str = field(default="part", metadata=opt(
        "--caption-segments", choices=("part", "segment"),
        help="low latency: how long a WebVTT segment of the live caption playlist is: part (one part each, the "
             "default: hls.js never loads part of a growing caption segment, where it loses caption parts as it "
             "joins) or segment (as long as the video's, its parts listed as it grows: the layout before; "
             "docs/low-latency.md)"))
    passthrough: bool = field(default=False, metadata=opt(
        "--passthrough",
        help="package the source's H.264/H.265 as it is (no re-encoding, one rendition, segments cut on its "
             "keyframes); video is decoded only for sidecars that analyse it and keyframes for snapshots"))
    deinterlace: str = field(default="auto", metadata=opt(
        "--deinterlace", choices=("auto", "on", "off"),
        help="deinterlace with bwdif: auto (frames the source flags as interlaced, the default), on (every "
             "frame), off"))
    progress: bool = field(default=True, metadata=opt(
        "--no-progress", negate=True, help="no progress line on stderr"))
    describe_timeout: float = field(default=60.0, metadata=opt(
        cli=False, parse=_seconds("describe_timeout", 1, 600), help="seconds to wait for a sidecar's Describe"))
    drain_timeout: float = field(default=5.0, metadata=opt(
        cli=False, parse=_seconds("drain_timeout", 0, 600),
        help="seconds the last segment waits for sidecars to flush at the end of the stream"))

    def __post_init__(self) -> None:
        self.outdir = Path(self.outdir)
        if self.captions_translation and "en" not in self.captions_translate:
            self.captions_translate = [*self.captions_translate, "en"]

    def hold_back(self, live_captions: bool) -> float | None:
        """PART-HOLD-BACK to advertise (None: the playlists' default of three parts, or not low latency).

        A live caption is decided ~2 s after its words and hls.js never loads a caption part behind its
        playhead, so at three parts many cues reached a viewer after their words had played; a stream a
        sidecar captions asks its players to sit ``--caption-hold-back`` further back (CAPTION_HOLD_BACK by
        default since the eighteenth session: opt-in before, while hls.js skipped caption parts of a growing
        subtitle segment as it joined, which ``--caption-segments part`` avoids). Without live captions, or
        with ``--part-hold-back``, nothing changes."""
        if self.latency != "low":
            return None
        if self.part_hold_back is not None:
            return self.part_hold_back
        extra = CAPTION_HOLD_BACK if self.caption_hold_back is None else self.caption_hold_back
        if not live_captions or extra <= 0:
            return None
        return 3 * self.part_duration + extra

    def size_anchor_for(self, as_it_happens: bool, hinted: bool, vmaf: Callable[[], bool]) -> tuple[bool, str]:
        """Whether this run measures its size decisions (``--size-anchor``), and why, in words for the log.

        The per-segment decisions only pay with the measurement: hints alone save under 1 % against the
        capped-CRF ladder, the measured decision about 20 % at the same VMAF and PSNR (docs/bitrate.md). So a
        user who adds ``--sidecars bitrate`` to a file run gets it without asking. It costs several times the
        video encoding CPU and holds each whole segment until it is measured, which a file run can afford
        (it only takes longer) and a live stream cannot (it would fall behind real time and add a segment of
        latency): live sources and ``--realtime`` keep the hints alone unless ``--size-anchor`` is given.
        ``as_it_happens``: the media comes as it happens (a live source or ``--realtime``); ``hinted``: a
        running sidecar sends bitrate hints; ``vmaf``: whether libvmaf is at hand (asked last: it runs FFmpeg)."""
        if self.size_anchor:
            return True, "--size-anchor"
        if not self.size_anchor_auto:
            return False, "--no-size-anchor"
        if not hinted:
            return False, "no bitrate sidecar"
        if as_it_happens:
            return False, "media comes as it happens (live source or --realtime): hints only"
        if self.rate_control != "crf" or self.target_vmaf is not None:
            return False, "not the capped-CRF ladder's quality (--rate-control vbr or --target-vmaf)"
        if self.latency == "low" or self.passthrough:
            return False, "--latency low or --passthrough"
        if not vmaf():
            return False, "libvmaf not found (pip install 'sidecast[bitrate]'): hints only"
        return True, "a file run with bitrate hints (--no-size-anchor: hints only)"

    # ------------------------------------------------------------ checks across options

    def validate(self) -> RunOptions:
        """Checks that involve several options; returns self so callers can chain."""
        if not self.source:
            raise ConfigError("no SOURCE given")
        both = set(self.sidecars) & set(self.sidecar_addrs)
        if both:
            raise ConfigError(f"sidecar {sorted(both)[0]!r} is both started locally (--sidecars) and remote "
                              "(--sidecar-addr): pick one")
        for name in self.sidecar_args:
            if name not in self.sidecars:
                raise ConfigError(f"bad --sidecar-arg {name}=...: expected NAME=ARG for a sidecar named in --sidecars")
        for name in self.sidecar_nice:
            if name not in self.sidecars:
                raise ConfigError(f"bad --sidecar-nice {name}=...: expected NAME=N for a sidecar named in --sidecars")
        if self.latency == "low" and self.passthrough:
            raise ConfigError("--latency low encodes CMAF parts; --passthrough copies the source: pick one")
        if self.latency == "low" and self.part_duration * 2 > self.segment_duration:
            raise ConfigError("--part-duration must be at most half of --segment-duration")
        if self.part_hold_back is not None:
            if self.latency != "low":
                raise ConfigError("--part-hold-back is a low-latency setting: add --latency low")
            if self.part_hold_back < 2 * self.part_duration:
                raise ConfigError(f"--part-hold-back {self.part_hold_back:g}: must be at least two parts "
                                  f"({2 * self.part_duration:.3f} s, RFC 8216bis 4.4.3.8)")
        if self.caption_hold_back:
            if self.latency != "low":
                raise ConfigError("--caption-hold-back is a low-latency setting: add --latency low")
            if self.part_hold_back is not None:
                raise ConfigError("--caption-hold-back adds to the default hold-back; --part-hold-back sets it: "
                                  "pick one")
        if self.caption_segments != "part" and self.latency != "low":
            raise ConfigError("--caption-segments is a low-latency setting: add --latency low")
        if self.caption_part_cut is not None and self.latency != "low":
            raise ConfigError("--caption-part-cut is a low-latency setting: add --latency low")
        if self.target_anchor:
            if self.target_vmaf is None:
                raise ConfigError("--target-anchor corrects --target-vmaf N: add --target-vmaf")
            if self.latency == "low" or self.passthrough:
                raise ConfigError("--target-anchor re-encodes hinted segments: not with --latency low or --passthrough")
            from .anchor import vmaf_ffmpeg
            if vmaf_ffmpeg() is None:
                raise ConfigError("--target-anchor measures VMAF with libvmaf: pip install 'sidecast[bitrate]' (imageio-ffmpeg)")
        if self.target_ceiling is not None and not self.target_anchor:
            raise ConfigError("--target-ceiling raises the cap where --target-anchor measures a segment short of N: "
                              "add --target-vmaf N --target-anchor")
        if self.size_anchor and not self.size_anchor_auto:
            raise ConfigError("--size-anchor and --no-size-anchor contradict each other: pick one")
        if self.size_anchor:
            if self.latency == "low" or self.passthrough:
                raise ConfigError("--size-anchor re-encodes each segment: not with --latency low or --passthrough")
            if self.target_vmaf is not None:
                raise ConfigError("--size-anchor keeps the ladder's quality; --target-vmaf sets another: pick one")
            if self.rate_control != "crf":
                raise ConfigError("--size-anchor measures against the capped-CRF ladder: not with --rate-control vbr")
            from .anchor import vmaf_ffmpeg
            if vmaf_ffmpeg() is None:
                raise ConfigError("--size-anchor measures VMAF with libvmaf: pip install 'sidecast[bitrate]' (imageio-ffmpeg)")
        if self.captions_language in self.captions_translate:
            raise ConfigError(f"--captions-translate {self.captions_language}: that is the source language "
                              "(--captions-language) already")
        return self

    # ------------------------------------------------------------ building

    @classmethod
    def fields(cls) -> list[dataclasses.Field[Any]]:
        return list(dataclasses.fields(cls))

    @classmethod
    def from_mapping(cls, doc: Mapping[str, Any], base: RunOptions | None = None) -> RunOptions:
        """Options from a config document (keys as field names or flag names, ``-`` or ``_``)."""
        known = {f.name: f for f in cls.fields()}
        for f in cls.fields():
            for flag in f.metadata["flags"]:
                known.setdefault(flag.lstrip("-").replace("-", "_"), f)
        values: dict[str, Any] = {}
        for key, raw in doc.items():
            name = str(key).replace("-", "_")
            found = known.get(name)
            if found is None:
                raise ConfigError(f"unknown option {key!r} in the configuration")
            f = found
            value = _convert(f, raw)
            if f.metadata["negate"] and name != f.name:  # `no_audio = true` is `audio = false`
                value = not value
            values[f.name] = value
        current = {f.name: getattr(base, f.name) for f in cls.fields()} if base is not None else {}
        return cls(**{**current, **values})

    @classmethod
    def from_toml(cls, path: Path) -> RunOptions:
        try:
            doc = tomllib.loads(path.read_text())
        except OSError as exc:
            raise ConfigError(f"cannot read config {path}: {exc.strerror}") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config {path} is not valid TOML: {exc}") from exc
        return cls.from_mapping(doc.get("run", doc))

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        """Flags for every CLI option; values stay text (parsed by ``from_namespace``) so that a config
        file can supply what the command line leaves out."""
        for f in cls.fields():
            m = f.metadata
            if not m["cli"]:
                continue
            if m["positional"]:
                parser.add_argument(f.name, nargs="?", default=None, help=m["help"])
            elif f.type == "bool":
                parser.add_argument(*m["flags"], dest=f.name, action="store_true", default=None, help=m["help"])
            else:
                parser.add_argument(*m["flags"], dest=f.name, default=None, metavar=m["metavar"],
                                    choices=m["choices"], action="append" if m["repeat"] else "store",
                                    help=m["help"])

    @classmethod
    def from_namespace(cls, ns: argparse.Namespace, base: RunOptions | None = None) -> RunOptions:
        """Options from parsed flags, over ``base`` (a config file's options, or the defaults)."""
        given: dict[str, Any] = {}
        for f in cls.fields():
            if not f.metadata["cli"]:
                continue
            raw = getattr(ns, f.name, None)
            if raw is None:
                continue
            given[f.name] = (not raw) if f.metadata["negate"] else raw
        opts = cls.from_mapping(given, base)
        if not opts.source:
            raise ConfigError("no SOURCE given (on the command line or as `source` in --config)")
        if base is None and getattr(ns, "outdir", None) is None:
            raise ConfigError("-o/--output OUTDIR is required (on the command line or as `outdir` in --config)")
        return opts


def _convert(f: dataclasses.Field[Any], raw: Any) -> Any:
    """One option's value from text (CLI), or from a TOML value (numbers, booleans, lists)."""
    m = f.metadata
    parse = m[_PARSE]
    if raw is None:
        return None  # unset: the option's own "automatic" value (window, decision window...)
    if m["choices"] is not None and str(raw) not in m["choices"]:
        raise ConfigError(f"bad {m['flags'][0] if m['flags'] else f.name} {raw!r}: expected one of "
                          f"{', '.join(m['choices'])}")
    if f.name in ("sidecar_addrs", "sidecar_args", "sidecar_nice"):
        items = raw.items() if isinstance(raw, Mapping) else [parse(x) for x in _as_list(raw)]
        if f.name == "sidecar_nice":
            return {k: _sidecar_nice(k, v) for k, v in items}
        if f.name == "sidecar_addrs":
            return {k: (f"unix://{v}" if str(v).startswith("/") else str(v)) for k, v in items}
        out: dict[str, list[str]] = {}
        for k, v in items:
            out.setdefault(k, []).extend(v if isinstance(v, list) else [str(v)])
        return out
    if m["repeat"]:
        values = [parse(str(x)) if parse else x for x in _as_list(raw)]
        return set(values) if f.name == "stream_keys" else values
    if isinstance(raw, bool):
        return raw
    if isinstance(raw, list):
        raw = ",".join(str(x) for x in raw)
    return parse(str(raw)) if parse else raw


def _sidecar_nice(name: str, value: Any) -> int:
    """One ``--sidecar-nice`` step count: a whole number 0..19 (a sidecar never runs above the core)."""
    text = str(value).strip()
    if isinstance(value, bool) or not re.fullmatch(r"\d{1,2}", text) or int(text) > 19:
        raise ConfigError(f"bad --sidecar-nice {name}={value!r}: expected a whole number of steps 0..19")
    return int(text)


def _as_list(raw: Any) -> list[Any]:
    return list(raw) if isinstance(raw, list | tuple | set) else [raw]


__all__ = ["RangeParser", "RunOptions", "opt"]
