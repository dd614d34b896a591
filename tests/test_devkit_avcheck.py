"""devkit.avcheck reads segments as a player would: with the container the playlist names, not FFmpeg's guess."""

from __future__ import annotations

import subprocess
from pathlib import Path

import av
import numpy as np

from devkit import avcheck
from sidecast.core.media import AudioEncoder
from sidecast.hls import timebase


def _short_segment(path: Path, seconds: float) -> None:
    """A segment as the core writes the audio that ends a period: a beep at 0, then silence, ``seconds`` long."""
    enc = AudioEncoder()
    n = int(seconds * 48_000)
    t = np.arange(n) / 48_000
    pcm = np.where(t < 0.02, 0.8 * np.sin(2 * np.pi * 1000 * t), 0.0).astype(np.float32)
    frame = av.AudioFrame.from_ndarray(np.stack([pcm, pcm]), format="fltp", layout="stereo")
    frame.sample_rate = 48_000
    enc.push(frame, 0.0)
    enc.end_period(seconds)
    enc.write_segment(enc.take_until(None), path)


def test_a_ts_segment_of_two_aac_frames_is_read_as_ts(tmp_path: Path) -> None:
    seg = tmp_path / "seg_000005.ts"
    _short_segment(seg, 0.043)
    guessed = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "format=format_name", "-of", "csv=p=0",
                              str(seg)], capture_output=True, text=True)
    # the reason for naming the container: FFmpeg's probe takes this file for an MPEG program stream
    assert guessed.stdout.strip() != "mpegts", guessed
    packets = avcheck._packets(seg)
    assert 2 <= len(packets) <= 4, packets  # 43 ms: two AAC frames, and the encoder's priming and flush
    beeps = avcheck._beeps(seg, avcheck._span(packets)[0])
    # the beep at media time 0, on the TS clock (which starts PTS_OFFSET in)
    assert len(beeps) == 1 and abs(beeps[0] - timebase.PTS_OFFSET / timebase.CLOCK) < 0.005, beeps


def test_a_period_written_after_the_next_one_started_keeps_its_adts_headers(tmp_path: Path) -> None:
    """After a reconnect a loaded packager writes the last period's segments after the audio encoder has
    started the next period (a fresh AAC encoder that has not encoded yet). Those segments are muxed with
    their own encoder's AudioSpecificConfig: a player (and FFmpeg) decodes them at 48 kHz stereo. Before, they
    took the new encoder's unset one and were raw AAC without ADTS headers (sample rate 0)."""
    enc = AudioEncoder()
    n = 48_000
    frame = av.AudioFrame.from_ndarray(np.zeros((2, n), dtype=np.float32), format="fltp", layout="stereo")
    frame.sample_rate = 48_000
    enc.push(frame, 0.0)
    enc.end_period(1.0)
    old = enc.take_until(None)
    enc.start_period(2.0)  # the publisher is back: its audio has not reached the encoder yet
    seg = tmp_path / "seg_000001.ts"
    enc.write_segment(old, seg)
    probe = subprocess.run(["ffprobe", "-v", "error", "-f", "mpegts", "-show_entries", "stream=sample_rate,channels",
                            "-of", "csv=p=0", str(seg)], capture_output=True, text=True)
    assert set(probe.stdout.split()) == {"48000,2"}, (probe.stdout, probe.stderr)
    with av.open(str(seg), format="mpegts") as c:
        samples = sum(f.samples for f in c.decode(audio=0))
    assert samples >= n - 1024, samples


def test_the_packets_of_a_playlist_read_in_one_run_are_those_read_segment_by_segment(tmp_path: Path) -> None:
    """``check`` reads all of a rendition's TS segments in one ffprobe run and gives each packet back to its
    segment by byte position: the same packets as a run per segment, also where the clock goes back more than
    a minute at a discontinuity (where FFmpeg's overflow correction would add 2^33 ticks to the later ones)."""
    segs = []
    for k, offset in enumerate(("100", "0", "0.5")):
        seg = tmp_path / f"seg_{k:06d}.ts"
        subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc2=size=64x64:rate=10:duration=0.5",
                        "-f", "lavfi", "-i", "sine=duration=0.5", "-c:v", "libx264", "-preset", "ultrafast",
                        "-c:a", "aac", "-output_ts_offset", offset, "-f", "mpegts", str(seg)], check=True)
        segs.append(seg)
    one_by_one = [avcheck._packets(s) for s in segs]
    assert all(len(p) >= 10 for p in one_by_one) and one_by_one[0][0]["pts"] > 100 > one_by_one[1][0]["pts"]
    assert avcheck._packets_of(segs) == one_by_one
