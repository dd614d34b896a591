"""Conditioning: transcode an ad creative to match every rendition of the content before it is stitched.

Why: a player switching from content to an ad at a discontinuity keeps its decoders and its buffer
layout; an ad with another codec profile, resolution, frame rate, audio layout or segment length is the
classic cause of stalls and audio drop-outs after a stitch (and live SSAI needs ad segments of the
content's length, one per slot, see ``ads/ssai.py``). So each creative is transcoded once per *ladder
signature* (the content's renditions, frame rate, audio format and segment duration) into the core's own
layout:

    <cache>/<creative-hash>-<ladder-hash>/master.m3u8
    <cache>/.../video/<rendition>/index.m3u8 + seg_000000.ts ...   (video-only MPEG-TS, H.264)
    <cache>/.../audio/index.m3u8 + seg_000000.ts ...               (AAC-in-TS, separate like the content)

or, for fMP4 (CMAF) content, the same layout in fMP4: ``init.mp4`` + ``seg_000000.m4s`` per rendition, since a
player cannot switch containers at a splice.

One ffmpeg run decodes the creative once and encodes every rendition (``split``), so the renditions
share timestamps. The result is cached by (creative content hash, ladder signature) and reused; a creative
that cannot be conditioned raises ConditionError with ffmpeg's reason, and the caller falls back to content.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from sidecast.hls import MasterPlaylist, PlaylistError, Rendition, Variant, parse_master, parse_media
from sidecast.hls import tags as T

FFMPEG = os.environ.get("SIDECAST_FFMPEG", "ffmpeg")
FFPROBE = os.environ.get("SIDECAST_FFPROBE", "ffprobe")


class ConditionError(RuntimeError):
    """The creative could not be conditioned (unreadable, no video, ffmpeg failed)."""


@dataclass(frozen=True)
class VideoRendition:
    key: str            # path of its media playlist in the layout, e.g. "video/720p/index.m3u8"
    width: int
    height: int
    bandwidth: int
    codecs: str = "avc1.640028"


@dataclass(frozen=True)
class Ladder:
    """What an ad must match: the content's renditions, frame rate, audio and segment duration."""

    video: tuple[VideoRendition, ...]
    fps: float
    segment_duration: float
    audio_key: str | None = "audio/index.m3u8"
    audio_rate: int = 48000
    audio_channels: int = 2
    container: str = "mpegts"   # or "fmp4" (CMAF): ads must be in the content's container to be spliced

    def signature(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Conditioned:
    master: Path
    directory: Path
    duration: float
    reused: bool


def _probe(path: str) -> dict:
    try:
        r = subprocess.run([FFPROBE, "-v", "error", "-show_streams", "-show_format", "-of", "json", path],
                           capture_output=True, text=True, timeout=60)
    except FileNotFoundError:
        raise ConditionError(f"{FFPROBE} not found: install Debian's ffmpeg") from None
    if r.returncode != 0:
        reason = (r.stderr.strip().splitlines() or ["unreadable"])[-1]
        raise ConditionError(f"cannot read {path}: {reason}")
    return json.loads(r.stdout or "{}")


def _rate(text: str | None) -> float:
    if not text or text in ("0/0",):
        return 0.0
    n, _, d = text.partition("/")
    return float(n) / float(d or 1) if float(d or 1) else 0.0


def ladder_from_master(master_path: str | Path) -> Ladder:
    """Read the content's ladder from its master playlist and one segment of each kind."""
    mp = Path(master_path)
    try:
        master = parse_master(mp.read_text())
    except (OSError, PlaylistError) as exc:
        raise ConditionError(f"cannot read content master {mp}: {exc}") from None
    videos: list[VideoRendition] = []
    fps = 0.0
    for v in master.variants:
        res = v.resolution
        if res is None:
            continue
        videos.append(VideoRendition(v.uri, res[0], res[1], v.bandwidth or 0,
                                     (v.string("CODECS") or "avc1.640028").split(",")[0]))
        fps = v.number("FRAME-RATE") or fps
    audio_key = next((r.uri for r in master.renditions if r.type == "AUDIO" and r.uri is not None), None)
    if not videos:
        raise ConditionError(f"content master {mp} lists no video rendition with a RESOLUTION")
    first = parse_media((mp.parent / videos[0].key).read_text())
    if not first.segments:
        raise ConditionError(f"content rendition {videos[0].key} has no segments yet")
    durs = sorted(s.duration for s in first.segments)
    seg = round(durs[len(durs) // 2], 3)
    seg_file = str((mp.parent / videos[0].key).parent / first.segments[0].uri)
    container = "fmp4" if first.segments[0].init_section is not None else "mpegts"
    if not fps and any(k.method != "NONE" for k in first.segments[0].keys):
        raise ConditionError(f"content rendition {videos[0].key} is encrypted and its master gives no FRAME-RATE")
    if not fps:
        if first.segments[0].init_section is not None and first.segments[0].init_section.uri:
            seg_file = str((mp.parent / videos[0].key).parent / first.segments[0].init_section.uri)
        vs = [s for s in _probe(seg_file).get("streams", []) if s.get("codec_type") == "video"]
        fps = _rate(vs[0].get("avg_frame_rate") or vs[0].get("r_frame_rate")) if vs else 30.0
    rate, channels = 48000, 2
    audio = next((r for r in master.renditions if r.type == "AUDIO" and r.uri is not None), None)
    if audio is not None and (audio.string("CHANNELS") or "").split("/")[0].isdigit():
        channels = int((audio.string("CHANNELS") or "2").split("/")[0])
    if audio_key is not None:
        apl = parse_media((mp.parent / audio_key).read_text())
        if apl.segments and any(k.method != "NONE" for k in apl.segments[0].keys):
            # encrypted content cannot be probed: the master's CHANNELS and the usual 48 kHz it is
            apl.segments = []
        if apl.segments:
            a0 = apl.segments[0]
            a_file = str((mp.parent / audio_key).parent / (a0.init_section.uri if a0.init_section is not None
                                                           and a0.init_section.uri else a0.uri))
            aus = [s for s in _probe(a_file).get("streams", []) if s.get("codec_type") == "audio"]
            if aus:
                rate = int(aus[0].get("sample_rate") or rate)
                channels = int(aus[0].get("channels") or channels)
    return Ladder(tuple(videos), round(fps, 3), seg, audio_key, rate, channels, container)


def _hash_creative(creative: str) -> str:
    h = hashlib.sha256()
    with open(creative, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:16]


def condition(creative: str | Path, ladder: Ladder, cache_dir: str | Path, timeout: float = 600.0) -> Conditioned:
    """Conditioned renditions of ``creative`` (a media file, or an HLS playlist ffmpeg can read)."""
    src = str(creative)
    if not src.startswith(("http://", "https://")) and not os.path.isfile(src):
        raise ConditionError(f"creative {src} does not exist")
    key = (_hash_creative(src) if os.path.isfile(src) else hashlib.sha256(src.encode()).hexdigest()[:16])
    out = Path(cache_dir) / f"{key}-{ladder.signature()}"
    if (out / "master.m3u8").is_file():
        return Conditioned(out / "master.m3u8", out, _duration(out, ladder), True)
    info = _probe(src)
    streams = info.get("streams", [])
    if not any(s.get("codec_type") == "video" for s in streams):
        raise ConditionError(f"creative {src} has no video stream")
    has_audio = any(s.get("codec_type") == "audio" for s in streams)
    Path(cache_dir).mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{key}-", dir=cache_dir))
    try:
        src_duration = float(info.get("format", {}).get("duration") or 0) or 3600.0
        _run_ffmpeg(src, has_audio, src_duration, ladder, tmp, timeout)
        _write_master(tmp, ladder)
        try:
            os.replace(tmp, out)
        except OSError:  # another process finished first: use its result
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return Conditioned(out / "master.m3u8", out, _duration(out, ladder), False)


def _run_ffmpeg(src: str, has_audio: bool, src_duration: float, ladder: Ladder, out: Path,
                timeout: float) -> None:
    n = len(ladder.video)
    seg = ladder.segment_duration
    fps = ladder.fps
    keyint = max(1, int(round(fps * seg)))
    split = f"[0:v]fps={fps},split={n}" + "".join(f"[s{i}]" for i in range(n)) + ";"
    chains = []
    for i, v in enumerate(ladder.video):
        chains.append(f"[s{i}]scale={v.width}:{v.height}:force_original_aspect_ratio=decrease,"
                      f"pad={v.width}:{v.height}:(ow-iw)/2:(oh-ih)/2,setsar=1,format=yuv420p[v{i}]")
    cmd = [FFMPEG, "-nostdin", "-y", "-v", "error", "-i", src]
    if not has_audio and ladder.audio_key:
        cmd += ["-f", "lavfi", "-i",
                f"anullsrc=r={ladder.audio_rate}:cl={'mono' if ladder.audio_channels == 1 else 'stereo'}"]
    cmd += ["-filter_complex", split + ";".join(chains)]
    fmp4 = ladder.container == "fmp4"
    ext = "m4s" if fmp4 else "ts"
    hls = ["-f", "hls", "-hls_time", f"{seg:g}", "-hls_playlist_type", "vod", "-hls_flags", "independent_segments"]
    hls += ["-hls_segment_type", "fmp4", "-hls_fmp4_init_filename", "init.mp4"] if fmp4 else \
        ["-hls_segment_type", "mpegts"]
    for i, v in enumerate(ladder.video):
        d = out / os.path.dirname(v.key)
        d.mkdir(parents=True, exist_ok=True)
        maxrate = max(v.bandwidth, 200_000)
        cmd += ["-map", f"[v{i}]", "-an", "-c:v", "libx264", "-preset", "veryfast", "-profile:v", "high",
                "-crf", "23", "-maxrate", str(maxrate), "-bufsize", str(maxrate),
                "-g", str(keyint), "-keyint_min", str(keyint), "-sc_threshold", "0",
                "-force_key_frames", f"expr:gte(t,n_forced*{seg:g})", "-bf", "2",
                *hls, "-hls_segment_filename", str(d / f"seg_%06d.{ext}"), str(out / v.key)]
    if ladder.audio_key:
        d = out / os.path.dirname(ladder.audio_key)
        d.mkdir(parents=True, exist_ok=True)
        amap = "0:a:0" if has_audio else "1:a:0"
        cmd += ["-map", amap, "-vn", "-c:a", "aac", "-b:a", "128k", "-ar", str(ladder.audio_rate),
                "-ac", str(ladder.audio_channels)]
        if not has_audio:
            cmd += ["-t", f"{src_duration:.3f}"]  # anullsrc never ends by itself
        cmd += [*hls, "-hls_segment_filename", str(d / f"seg_%06d.{ext}"), str(out / ladder.audio_key)]
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except FileNotFoundError:
        raise ConditionError(f"{FFMPEG} not found: install Debian's ffmpeg") from None
    except subprocess.TimeoutExpired:
        raise ConditionError(f"conditioning {src} took longer than {timeout:.0f} s") from None
    if r.returncode != 0:
        reason = (r.stderr.strip().splitlines() or [f"exit {r.returncode}"])[-1]
        raise ConditionError(f"ffmpeg could not condition {src}: {reason}")
    for v in ladder.video:
        # a source whose timestamps run a frame or two past a segment boundary leaves a runt segment of
        # a few frames; it would take a whole slot when stitched live, so it goes
        _drop_runt(out / v.key)
    if ladder.audio_key:
        # AAC frames overhang the video by a few ms, which the HLS muxer writes as a tiny last segment;
        # the stitcher needs one audio segment per video segment (one per slot), so trim to the video.
        _trim_to(out / ladder.audio_key, _duration_of(out / ladder.video[0].key))


def _duration_of(playlist: Path) -> float:
    return parse_media(playlist.read_text()).duration


def _drop_runt(playlist: Path, shortest: float = 0.25) -> None:
    pl = parse_media(playlist.read_text())
    if len(pl.segments) > 1 and pl.segments[-1].duration < shortest:
        pl.segments = pl.segments[:-1]
        playlist.write_text(pl.dumps())


def _trim_to(playlist: Path, seconds: float) -> None:
    pl = parse_media(playlist.read_text())
    keep, t = [], 0.0
    for s in pl.segments:
        if t >= seconds - 0.25:
            break
        keep.append(s)
        t += s.duration
    pl.segments = keep
    playlist.write_text(pl.dumps())


def _duration(out: Path, ladder: Ladder) -> float:
    return _duration_of(out / ladder.video[0].key)


def _write_master(out: Path, ladder: Ladder) -> None:
    renditions, audio = [], None
    if ladder.audio_key:
        audio = "aud"
        renditions.append(Rendition.of("AUDIO", audio, "main", ladder.audio_key, default=True, autoselect=True,
                                       channels=str(ladder.audio_channels)))
    variants = [Variant.of(v.key, bandwidth=max(v.bandwidth, 1) + (128_000 if audio else 0),
                           resolution=(v.width, v.height), frame_rate=ladder.fps,
                           codecs=f"{v.codecs},mp4a.40.2" if audio else v.codecs, audio=audio)
                for v in ladder.video]
    master = MasterPlaylist(variants, renditions, tags=[T.EXT_X_INDEPENDENT_SEGMENTS],
                            version=7 if ladder.container == "fmp4" else 3)
    (out / "master.m3u8").write_text(master.dumps())


def segments_fit(duration: float, ladder: Ladder) -> int:
    """How many content slots an ad of ``duration`` seconds fills."""
    return int(math.ceil(duration / ladder.segment_duration - 1e-6))


class Conditioner:
    """Conditions creatives for one content master, with the cache; what the SSAI service calls.

    `download(url, path)`, when given, fetches an http(s) creative into the cache before ffmpeg reads it,
    so ffmpeg never opens a URL itself: creatives come from ad servers, and the download goes through the
    decisioning service's fetch policy (no internal addresses, a size cap, a time budget)."""

    def __init__(self, content_master: str | Path, cache_dir: str | Path,
                 download: Callable[[str, Path], object] | None = None) -> None:
        self.content_master = Path(content_master)
        self.cache_dir = Path(cache_dir)
        self.download = download
        self._ladder: Ladder | None = None

    @property
    def ladder(self) -> Ladder:
        if self._ladder is None:
            self._ladder = ladder_from_master(self.content_master)
        return self._ladder

    def __call__(self, creative: str | Path) -> Conditioned:
        src = str(creative)
        if self.download is not None and src.startswith(("http://", "https://")):
            local = self.cache_dir / ".sources" / hashlib.sha256(src.encode()).hexdigest()[:32]
            if not local.is_file():
                local.parent.mkdir(parents=True, exist_ok=True)
                try:
                    self.download(src, local)
                except Exception as exc:
                    raise ConditionError(f"cannot download creative {src}: {exc}") from None
            creative = local
        return condition(creative, self.ladder, self.cache_dir)
