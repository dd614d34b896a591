"""Master (multivariant) playlists: ``master.m3u8`` for the main ladder, ``vertical.m3u8`` for the vertical one.

Live: BANDWIDTH is the declared bound (VBV cap plus TS overhead; with ``--target-ceiling K`` the raised cap's)
or what was measured, if higher, so a player never sees a rendition exceed what the master promised. End of stream: measured peaks; for a
windowed live stream the live masters stay and a VOD set (``*-vod.m3u8``) pointing at the full playlists is
written beside them.
"""

from __future__ import annotations

import math
from pathlib import Path

from sidecast.hls import MasterPlaylist, Rendition, Variant
from sidecast.hls.live import atomic_write
from sidecast.hls.tags import EXT_X_INDEPENDENT_SEGMENTS

from .. import media
from ..ladder import AUDIO_BITRATE, declared_bandwidth
from .audio import AudioRendition
from .copy import CopyLadder
from .subtitles import SubtitleRendition
from .video import VideoLadder


class MasterPlaylists:
    def __init__(self, outdir: Path, segment_duration: float, window: int, fps: float,
                 ladders: list[VideoLadder | CopyLadder], audio: AudioRendition | None,
                 subtitles: list[SubtitleRendition]) -> None:
        self.outdir = outdir
        self.segment_duration = segment_duration
        self.window = window
        self.fps = fps
        self.ladders = ladders
        self.audio = audio
        self.subtitles = subtitles
        self.written = False

    def _audio_rates(self, final: bool) -> tuple[float, float]:
        """(peak, average) bits/s of the audio rendition that plays beside every variant."""
        if self.audio is None:
            return 0.0, 0.0
        seconds = max((rs.total_seconds for ladder in self.ladders for rs in ladder.renditions), default=0.0)
        measured_avg = self.audio.total_bytes * 8 / seconds if seconds else 0.0
        if final and seconds:
            return self.audio.peak_bps, measured_avg
        # AAC's cap plus MPEG-TS overhead (~50% at 128 kb/s), or what was measured, if higher.
        return max(AUDIO_BITRATE * 1.7, self.audio.peak_bps), max(AUDIO_BITRATE * 1.5, measured_avg)

    def _variants(self, ladder: VideoLadder | CopyLadder, final: bool) -> list[Variant]:
        # BANDWIDTH is the peak of the sum of renditions played together (RFC 8216bis §4.4.6.2): video + audio.
        audio, audio_avg = self._audio_rates(final)
        prefix = "video" if ladder.kind == "main" else "vertical"
        out = []
        for rs in ladder.renditions:
            # A copied source has no cap to declare: its measured peak, with room for what comes later.
            # --target-ceiling K: a segment may spend up to K x the rung's cap (declared_cap), so that is declared.
            declared = (declared_bandwidth(rs.declared_cap or rs.rung.max_bitrate, self.segment_duration)
                        if rs.rung.max_bitrate else int(rs.peak_bps * 1.25))
            if final and rs.total_seconds > 0:
                peak, avg = rs.peak_bps, rs.total_bytes * 8 / rs.total_seconds
            else:
                peak = max(declared, rs.peak_bps)
                avg = min(rs.rung.max_bitrate, declared) if rs.rung.max_bitrate else \
                    (rs.total_bytes * 8 / rs.total_seconds if rs.total_seconds else declared)
            codecs = rs.codecs + (f",{media.AUDIO_CODECS}" if self.audio is not None else "")
            out.append(Variant.of(
                f"{prefix}/{rs.rung.name}/{'vod' if final and self.window else 'index'}.m3u8",
                bandwidth=int(math.ceil(peak + audio)), average_bandwidth=int(math.ceil(avg + audio_avg)),
                resolution=(rs.rung.width, rs.rung.height), codecs=codecs, frame_rate=self.fps,
                audio="aud" if self.audio is not None else None, subtitles="subs" if self.subtitles else None))
        return out

    def _media(self, final: bool) -> list[Rendition]:
        pl = "vod" if final and self.window else "index"
        out = []
        if self.audio is not None:
            out.append(Rendition.of("AUDIO", "aud", "Main", f"audio/{pl}.m3u8", language="und", default=True,
                                    autoselect=True, channels="2"))
        for i, s in enumerate(self.subtitles):
            out.append(Rendition.of("SUBTITLES", "subs", s.display_name, f"subs/{s.language}/{pl}.m3u8",
                                    language=s.language, default=i == 0, autoselect=True))
        return out

    def write(self, final: bool = False) -> None:
        """Live: declared caps. End of stream: measured peaks (and, for windowed live, the VOD set)."""
        def render(variants: list[Variant], renditions: list[Rendition]) -> str:
            return MasterPlaylist(variants, renditions, tags=[EXT_X_INDEPENDENT_SEGMENTS], version=4).dumps()

        for ladder in self.ladders:
            fname = "master.m3u8" if ladder.kind == "main" else "vertical.m3u8"
            if not ladder.renditions:
                continue
            live = self._variants(ladder, final=final and self.window == 0)
            atomic_write(self.outdir / fname, render(live, self._media(False)))
            if final and self.window:
                atomic_write(self.outdir / fname.replace(".m3u8", "-vod.m3u8"),
                             render(self._variants(ladder, final=True), self._media(True)))
        self.written = True


__all__ = ["MasterPlaylists"]
