"""Captions in a real player: `sidecast run --sidecars stt` on a clip with spoken sentences, then hls.js in
headless Chromium plays the master playlist with subtitles on, and the cues must show while the video
plays, at their time."""

from __future__ import annotations

import json
import subprocess
import sys
import wave
from pathlib import Path

import jiwer
import numpy as np
import pytest

from devkit import speech as synth
from tests.browser.harness import play_hls, serve

SIDECAST = Path(sys.executable).with_name("sidecast")
NORMALISE = jiwer.Compose([jiwer.ToLowerCase(), jiwer.RemovePunctuation(), jiwer.RemoveMultipleSpaces(),
                           jiwer.Strip(), jiwer.ReduceToListOfListOfWords()])


@pytest.fixture(scope="module")
def captioned_output(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[synth.Utterance]]:
    tmp = tmp_path_factory.mktemp("stt-browser")
    chosen = [synth.SENTENCES[i] for i in (6, 1, 7)]
    audio, utterances = synth.programme(chosen, seed=3)
    with wave.open(str(tmp / "speech.wav"), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes((np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes())
    clip = tmp / "clip.mp4"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc=size=320x180:rate=25",
                    "-i", str(tmp / "speech.wav"), "-shortest", "-c:v", "libx264", "-preset", "veryfast",
                    "-g", "50", "-c:a", "aac", "-ar", "48000", str(clip)], check=True, timeout=60)
    out = tmp / "out"
    r = subprocess.run([str(SIDECAST), "run", str(clip), "-o", str(out), "--sidecars", "stt",
                        "--ladder", "180p:300k", "--snapshots-fps", "0", "--no-progress"],
                       capture_output=True, text=True, timeout=240)
    assert r.returncode == 0, r.stderr[-2000:]
    # A file waits for its captions: every segment got them in time, none was let go by a timeout (the
    # last caption is completed by the end-of-stream flush, which must not wait behind those segments).
    assert "decision window closed" not in r.stderr, r.stderr[-2000:]
    return out, utterances


def test_sidecast_run_writes_a_subtitle_rendition_and_transcripts(
        captioned_output: tuple[Path, list[synth.Utterance]]) -> None:
    out, utterances = captioned_output
    master = (out / "master.m3u8").read_text()
    assert 'TYPE=SUBTITLES,GROUP-ID="subs"' in master and 'SUBTITLES="subs"' in master
    vtts = sorted((out / "subs" / "en").glob("seg_*.vtt"))
    videos = sorted((out / "video" / "180p").glob("seg_*.ts"))
    assert len(vtts) == len(videos)  # one subtitle segment per video segment, silent ones included
    assert all(v.read_text().startswith("WEBVTT\nX-TIMESTAMP-MAP=MPEGTS:") for v in vtts)
    doc = json.loads((out / "transcript.json").read_text())
    said = " ".join(u.text for u in utterances)
    # Accuracy is measured in test_stt_sidecar.py; here only that the transcript is this speech.
    assert jiwer.wer(said, doc["text"], reference_transform=NORMALISE, hypothesis_transform=NORMALISE) <= 0.5
    assert all(c["words"] for c in doc["cues"])
    assert (out / "transcript.vtt").read_text().startswith("WEBVTT")


@pytest.mark.browser
def test_captions_show_in_hls_js_while_the_video_plays_at_their_time(
        captioned_output: tuple[Path, list[synth.Utterance]]) -> None:
    out, utterances = captioned_output
    cues = json.loads((out / "transcript.json").read_text())["cues"]
    assert cues, "the recogniser produced no captions"
    with serve(out) as base:
        report = play_hls(base + "master.m3u8", seconds=12.5, subtitles=True, timeout=90)
    report.raise_for_fatal()
    seen = report.cues_seen
    assert report.advanced_by() >= 11.0, report.summary()
    for cue in cues:
        text = cue["text"].replace("\n", " ")
        shown = [s for s in seen if " ".join(s.text.split()) == " ".join(text.split())]
        assert shown, f"cue {text!r} at {cue['start']:.2f} s never became active: {[s.text for s in seen]}"
        s = shown[0]
        assert abs(s.start - cue["start"]) <= 0.5, (s, cue["start"])  # the timestamp map places it right
        assert -0.05 <= s.seen_at - cue["start"] <= 0.5, (s, cue["start"])  # and it shows while playing
    # Nothing else was shown: no partial or stray captions, and never two different captions at once.
    distinct = sorted({(s.start, s.end, " ".join(s.text.split())) for s in seen})
    published = {" ".join(c["text"].split()) for c in cues}
    assert {t for _, _, t in distinct} <= published, (distinct, published)
    for a, b in zip(distinct, distinct[1:], strict=False):
        assert a[1] <= b[0] + 0.01, (a, b)
