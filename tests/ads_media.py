"""Small real media for the ads tests, made with Debian's ffmpeg in the core's output layout.

    OUT/master.m3u8                  EXT-X-MEDIA audio "aud" + subtitles "subs", one STREAM-INF per rendition
    OUT/video/<name>/index.m3u8      video-only MPEG-TS segments (2 s, closed GOPs)
    OUT/audio/index.m3u8             AAC-in-TS segments
    OUT/subs/en/index.m3u8           WebVTT segments

Every segment gets a true EXT-X-PROGRAM-DATE-TIME from a fixed start, so tests are deterministic.
320x180 and a few seconds: cheap on two shared cores.
"""

from __future__ import annotations

import subprocess
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sidecast.hls import Key, parse_media, quote
from sidecast.hls.timebase import format_pdt

T0 = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
RENDITIONS = (("180p", 320, 180, 300_000), ("144p", 256, 144, 200_000))


def _ffmpeg(args: list[str]) -> None:
    r = subprocess.run(["ffmpeg", "-nostdin", "-y", "-v", "error", *args], capture_output=True, text=True,
                       timeout=120)
    if r.returncode != 0:
        raise RuntimeError(f"ffmpeg failed: {r.stderr.strip()[-500:]}")


def _add_pdt(playlist: Path, start: datetime) -> None:
    pl = parse_media(playlist.read_text())
    t = start
    segs = []
    for s in pl.segments:
        segs.append(replace(s, program_date_time=t))
        t = t + timedelta(seconds=s.duration)
    pl.segments = segs
    playlist.write_text(pl.dumps())


def _encrypt(playlist: Path, root: Path, key: bytes) -> None:
    """AES-128-CBC each segment with IV = its media sequence number, as RFC 8216bis §5.2 has it when the
    EXT-X-KEY has no IV; the key file is shared by every rendition (``root/key.bin``)."""
    (root / "key.bin").write_bytes(key)
    pl = parse_media(playlist.read_text())
    rel = "../" * (len(playlist.relative_to(root).parts) - 1) + "key.bin"
    k = Key({"METHOD": "AES-128", "URI": quote(rel)})
    segs = []
    for i, s in enumerate(pl.segments):
        f = playlist.parent / s.uri
        r = subprocess.run(["openssl", "enc", "-aes-128-cbc", "-K", key.hex(), "-iv", f"{pl.media_sequence + i:032x}",
                            "-in", str(f), "-out", str(f) + ".enc"], capture_output=True, text=True, timeout=30)
        if r.returncode != 0:
            raise RuntimeError(f"openssl failed: {r.stderr.strip()[-300:]}")
        (playlist.parent / (s.uri + ".enc")).replace(f)
        segs.append(replace(s, keys=(k,)))
    pl.segments = segs
    playlist.write_text(pl.dumps())


def make_content(out: Path, seconds: int = 12, seg: int = 2, tone: int = 440, subs: bool = True,
                 renditions: tuple[tuple[str, int, int, int], ...] = RENDITIONS, *, fmp4: bool = False,
                 video: str = "testsrc2", encrypt: bytes | None = None) -> Path:
    """A VOD stream in the core's layout; returns the master playlist.

    `fmp4`: CMAF segments (init.mp4 + .m4s per rendition) instead of MPEG-TS. `video`: the lavfi source
    (e.g. "color=c=red" for an ad that looks different). `encrypt`: a 16-byte AES-128 key; every media
    segment is then encrypted the way many packagers do it, with the key in ``OUT/key.bin`` and no IV
    attribute (so the IV is each segment's media sequence number, RFC 8216bis §5.2)."""
    out.mkdir(parents=True, exist_ok=True)
    n = len(renditions)
    fc = f"[0:v]split={n}" + "".join(f"[s{i}]" for i in range(n)) + ";" + ";".join(
        f"[s{i}]scale={w}:{h},format=yuv420p[v{i}]" for i, (_, w, h, _) in enumerate(renditions))
    sep = ":" if "=" in video else "="
    args = ["-f", "lavfi", "-i", f"{video}{sep}size=320x180:rate=25:duration={seconds}",
            "-f", "lavfi", "-i", f"sine=frequency={tone}:sample_rate=48000:duration={seconds}",
            "-filter_complex", fc]
    ext = "m4s" if fmp4 else "ts"
    hls = ["-f", "hls", "-hls_time", str(seg), "-hls_playlist_type", "vod"]
    hls += ["-hls_segment_type", "fmp4", "-hls_fmp4_init_filename", "init.mp4"] if fmp4 else \
        ["-hls_segment_type", "mpegts"]
    for i, (name, _, _, bw) in enumerate(renditions):
        d = out / "video" / name
        d.mkdir(parents=True, exist_ok=True)
        args += ["-map", f"[v{i}]", "-an", "-c:v", "libx264", "-preset", "ultrafast", "-profile:v", "high",
                 "-g", str(25 * seg), "-keyint_min", str(25 * seg), "-sc_threshold", "0",
                 "-b:v", str(bw), *hls, "-hls_segment_filename", str(d / f"seg_%06d.{ext}"), str(d / "index.m3u8")]
    (out / "audio").mkdir(exist_ok=True)
    args += ["-map", "1:a", "-vn", "-c:a", "aac", "-b:a", "64k", "-ac", "2", *hls,
             "-hls_segment_filename", str(out / "audio" / f"seg_%06d.{ext}"), str(out / "audio" / "index.m3u8")]
    _ffmpeg(args)
    # AAC priming makes the audio a few ms longer than the video; the muxer writes that as a runt last
    # segment. The core's audio has one segment per video segment: drop the runt.
    apl = parse_media((out / "audio" / "index.m3u8").read_text())
    apl.segments = [s for s in apl.segments if s.duration >= 0.25]
    (out / "audio" / "index.m3u8").write_text(apl.dumps())
    for p in list((out / "video").glob("*/index.m3u8")) + [out / "audio" / "index.m3u8"]:
        _add_pdt(p, T0)
        if encrypt is not None:
            _encrypt(p, out, encrypt)
    lines = ["#EXTM3U", f"#EXT-X-VERSION:{7 if fmp4 else 3}", "#EXT-X-INDEPENDENT-SEGMENTS",
             '#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID="aud",NAME="main",DEFAULT=YES,AUTOSELECT=YES,CHANNELS="2",'
             'URI="audio/index.m3u8"']
    subs_attr = ""
    if subs:
        d = out / "subs" / "en"
        d.mkdir(parents=True, exist_ok=True)
        sl = ["#EXTM3U", "#EXT-X-VERSION:3", f"#EXT-X-TARGETDURATION:{seg}", "#EXT-X-MEDIA-SEQUENCE:0",
              "#EXT-X-PLAYLIST-TYPE:VOD"]
        for k in range(seconds // seg):
            a, b = k * seg, (k + 1) * seg
            (d / f"seg_{k:06d}.vtt").write_text(
                "WEBVTT\nX-TIMESTAMP-MAP=MPEGTS:126000,LOCAL:00:00:00.000\n\n"
                f"00:00:{a:02d}.000 --> 00:00:{b:02d}.000\ncontent caption {k}\n")
            sl += ["#EXT-X-PROGRAM-DATE-TIME:" + format_pdt(T0 + timedelta(seconds=a)), f"#EXTINF:{seg}.0,",
                   f"seg_{k:06d}.vtt"]
        sl.append("#EXT-X-ENDLIST")
        (d / "index.m3u8").write_text("\n".join(sl) + "\n")
        lines.append('#EXT-X-MEDIA:TYPE=SUBTITLES,GROUP-ID="subs",NAME="English",LANGUAGE="en",DEFAULT=NO,'
                     'AUTOSELECT=YES,URI="subs/en/index.m3u8"')
        subs_attr = ',SUBTITLES="subs"'
    for name, w, h, bw in renditions:
        lines.append(f'#EXT-X-STREAM-INF:BANDWIDTH={bw + 70_000},RESOLUTION={w}x{h},FRAME-RATE=25.000,'
                     f'CODECS="avc1.640015,mp4a.40.2",AUDIO="aud"{subs_attr}')
        lines.append(f"video/{name}/index.m3u8")
    (out / "master.m3u8").write_text("\n".join(lines) + "\n")
    return out / "master.m3u8"


def make_creative(path: Path, seconds: float = 4, color: str = "red", tone: int = 880,
                  size: str = "426x240", rate: int = 30) -> Path:
    """An ad creative as a plain MP4 (different size and frame rate from the content, on purpose)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    _ffmpeg(["-f", "lavfi", "-i", f"color=c={color}:size={size}:rate={rate}:duration={seconds}",
             "-f", "lavfi", "-i", f"sine=frequency={tone}:sample_rate=44100:duration={seconds}",
             "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac", "-ac", "1", "-shortest", str(path)])
    return path


def add_cue_tags(playlist: Path, out_at: int, n_segments: int, duration: float | None = None) -> None:
    """Mark segments [out_at, out_at + n) as an ad break with EXT-X-CUE-OUT/-CONT/-IN (in place)."""
    pl = parse_media(playlist.read_text())
    dur = duration if duration is not None else sum(s.duration for s in pl.segments[out_at:out_at + n_segments])
    segs = []
    elapsed = 0.0
    for i, s in enumerate(pl.segments):
        tags = list(s.tags)
        if i == out_at:
            tags.append(f"#EXT-X-CUE-OUT:{dur:g}")
        elif out_at < i < out_at + n_segments:
            tags.append(f"#EXT-X-CUE-OUT-CONT:ElapsedTime={elapsed:g},Duration={dur:g}")
        elif i == out_at + n_segments:
            tags.append("#EXT-X-CUE-IN")
        if out_at <= i < out_at + n_segments:
            elapsed += s.duration
        segs.append(replace(s, tags=tuple(tags)))
    pl.segments = segs
    playlist.write_text(pl.dumps())


def _psi_packet(pid: int, section: bytes, cc: int = 0) -> bytes:
    """One TS packet carrying a PSI/SCTE-35 section (payload_unit_start, pointer_field 0)."""
    header = bytes([0x47, 0x40 | (pid >> 8), pid & 0xFF, 0x10 | (cc & 0x0F)])
    payload = b"\x00" + section
    if len(payload) > 184:
        raise ValueError("section too long for one packet")
    return header + payload + b"\xff" * (184 - len(payload))


def _section(table_id: int, ext: int, body: bytes) -> bytes:
    import threefive

    length = 5 + len(body) + 4
    head = bytes([table_id, 0xB0 | (length >> 8), length & 0xFF, ext >> 8, ext & 0xFF, 0xC1, 0x00, 0x00])
    data = head + body
    return data + int(threefive.crc.crc32(data)).to_bytes(4, "big")


def ts_with_cues(path: Path, cues: list[bytes], scte_pid: int = 0x1F6, pmt_pid: int = 0x100) -> Path:
    """A minimal MPEG-TS: PAT, a PMT declaring a SCTE-35 stream (type 0x86, 'CUEI'), then the cues."""
    pat = _section(0x00, 1, bytes([0x00, 0x01, 0xE0 | (pmt_pid >> 8), pmt_pid & 0xFF]))
    cuei = b"\x05\x04CUEI"  # registration descriptor
    body = bytes([0xFF, 0xFF, 0xF0, len(cuei)]) + cuei  # PCR_PID 0x1FFF: no PCR
    body += bytes([0x86, 0xE0 | (scte_pid >> 8), scte_pid & 0xFF, 0xF0, 0x00])
    pmt = _section(0x02, 1, body)
    data = b""
    for i, cue in enumerate(cues):
        data += _psi_packet(0, pat, i) + _psi_packet(pmt_pid, pmt, i) + _psi_packet(scte_pid, cue, i)
    path.write_bytes(data)
    return path
