"""Synthetic audio with known content, for tests and benchmarks of the stt sidecar: sentences spoken by
espeak-ng, separated by silence, under a little noise, plus non-speech signals (noise, chords) that must
produce no captions. Deterministic for a given seed.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SAMPLE_RATE = 16_000

SENTENCES = (
    "Good evening and welcome to the news at six.",
    "The city council approved the new budget on Tuesday.",
    "Heavy rain is expected across the north this weekend.",
    "Scientists have found water on a distant planet.",
    "The train to London leaves from platform four.",
    "Our team won the final match by two goals.",
    "Please remember to switch off your phone during the show.",
    "The museum will open a new gallery next spring.",
    "Traffic on the main bridge is moving slowly this morning.",
    "Farmers are hoping for a better harvest this year.",
    "The concert was sold out within an hour.",
    "A new school will be built near the river.",
    "Prices in the shops rose again last month.",
    "The library is open every day except Sunday.",
    "Firefighters rescued a cat from the roof of a house.",
    "The airport expects more travellers this summer.",
    "Children in the village planted one hundred trees.",
    "The bakery on the corner sells fresh bread every morning.",
    "Doctors say that walking every day is good for your heart.",
    "The bridge will be closed for repairs until Friday.",
)


@dataclass(frozen=True)
class Utterance:
    text: str
    start: float
    end: float


def require_espeak() -> str:
    exe = shutil.which("espeak-ng")
    if exe is None:
        raise RuntimeError("espeak-ng is not installed (apt-get install espeak-ng; ./dev.sh install does it)")
    return exe


def speak(text: str, rate: int = 160, voice: str = "en-gb-x-rp") -> np.ndarray:
    """One sentence as 16 kHz mono float32 (espeak-ng writes 22.05 kHz; PyAV resamples)."""
    from faster_whisper.audio import decode_audio

    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "s.wav"
        subprocess.run([require_espeak(), "-v", voice, "-s", str(rate), "-w", str(wav), text], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        audio = decode_audio(str(wav), sampling_rate=SAMPLE_RATE)
    nz = np.flatnonzero(np.abs(audio) > 1e-3)  # espeak pads with silence; keep timings tight
    return audio[nz[0]:nz[-1] + 1] if len(nz) else audio


def programme(sentences: Sequence[str], gaps: Sequence[float] = (0.8, 1.6, 0.5, 2.5), lead: float = 1.0,
              noise_db: float = -40.0, seed: int = 0, rate: int = 160) -> tuple[np.ndarray, list[Utterance]]:
    """Sentences with silence between them (cycling through ``gaps``) over low noise; with their times."""
    rng = np.random.default_rng(seed)
    parts = [np.zeros(int(lead * SAMPLE_RATE), dtype=np.float32)]
    t = lead
    utts: list[Utterance] = []
    for i, s in enumerate(sentences):
        a = speak(s, rate=rate) * 0.5
        utts.append(Utterance(s, t, t + len(a) / SAMPLE_RATE))
        parts.append(a.astype(np.float32))
        gap = gaps[i % len(gaps)]
        parts.append(np.zeros(int(gap * SAMPLE_RATE), dtype=np.float32))
        t += len(a) / SAMPLE_RATE + int(gap * SAMPLE_RATE) / SAMPLE_RATE
    audio = np.concatenate(parts)
    audio += noise(len(audio) / SAMPLE_RATE, noise_db, rng)[: len(audio)]
    return audio.astype(np.float32), utts


def noise(seconds: float, level_db: float = -30.0, rng: np.random.Generator | None = None) -> np.ndarray:
    rng = rng or np.random.default_rng(1)
    n = int(seconds * SAMPLE_RATE)
    return (rng.standard_normal(n) * 10 ** (level_db / 20)).astype(np.float32)


def chords(seconds: float, level_db: float = -12.0, bpm: float = 100.0) -> np.ndarray:
    """Music-like audio: a progression of triads with harmonics and note attacks, no voice."""
    n = int(seconds * SAMPLE_RATE)
    t = np.arange(n) / SAMPLE_RATE
    beat = 60.0 / bpm
    progression = [(261.63, 329.63, 392.00), (220.00, 261.63, 329.63), (174.61, 220.00, 261.63),
                   (196.00, 246.94, 293.66)]
    out = np.zeros(n, dtype=np.float64)
    bar = 4 * beat
    for k in range(int(np.ceil(seconds / bar))):
        a, b = int(k * bar * SAMPLE_RATE), min(n, int((k + 1) * bar * SAMPLE_RATE))
        if a >= n:
            break
        tt = t[a:b]
        env = np.exp(-((tt - k * bar) % beat) * 3.0)
        for f in progression[k % len(progression)]:
            for h, amp in ((1, 1.0), (2, 0.4), (3, 0.2)):
                out[a:b] += amp * env * np.sin(2 * np.pi * f * h * tt)
    out *= 10 ** (level_db / 20) / max(np.abs(out).max(), 1e-9)
    return out.astype(np.float32)
