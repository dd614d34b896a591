"""Has the voice changed? A cheap speaker/channel-change test between two stretches of speech.

The recogniser keeps the last committed sentences in its buffer as audio context (and their text as the
decoder's forced prefix): the decoder hears the voice before the new words, as an offline pass does.
When another person speaks after a pause that context is someone else's voice, and tiny.en sometimes
reads the new speaker's first words in the old one's terms ("How do you marry the more" for "Had he
married a more", docs/captions.md). Dropping the context after every long pause costs as many words as it
wins (the same speaker going on after a pause is helped by their own previous sentence); dropping it on a
change of *voice* is the rule this module makes possible.

The test: MFCCs (20 ms frames, 10 ms hop, 24 mel bands up to 7.6 kHz, cepstra 1-12: c0, the loudness,
left out) of the speech frames of each stretch, and the distance between their means in units of the
context's own per-coefficient spread, averaged over the coefficients. A change of speaker or of recording
channel (microphone, room, line) moves the mean spectral envelope; the same voice saying other words moves it
much less, once each stretch has half a second of speech or more. It costs about a millisecond per
second of audio with numpy (an FFT of each 10 ms hop), run once per new speech onset after a pause, not
per pass. No model, nothing downloaded.
"""

from __future__ import annotations

from functools import cache

import numpy as np

SAMPLE_RATE = 16_000
FRAME = 320          # 20 ms
HOP = 160            # 10 ms
N_FFT = 512
N_MELS = 24
N_CEPS = 12          # c1..c12


@cache
def _mel_dct() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    def mel(f: np.ndarray) -> np.ndarray:
        return 2595.0 * np.log10(1.0 + f / 700.0)

    def hz(m: np.ndarray) -> np.ndarray:
        return 700.0 * (10 ** (m / 2595.0) - 1.0)

    edges = hz(np.linspace(mel(np.array(100.0)), mel(np.array(7600.0)), N_MELS + 2))
    bins = np.fft.rfftfreq(N_FFT, 1 / SAMPLE_RATE)
    fb = np.zeros((N_MELS, len(bins)), dtype=np.float32)
    for i in range(N_MELS):
        lo, mid, hi = edges[i], edges[i + 1], edges[i + 2]
        fb[i] = np.clip(np.minimum((bins - lo) / (mid - lo), (hi - bins) / (hi - mid)), 0.0, None)
    k = np.arange(N_MELS)
    dct = np.cos(np.pi / N_MELS * (k[None, :] + 0.5) * np.arange(1, N_CEPS + 1)[:, None]).astype(np.float32)
    window = np.hamming(FRAME).astype(np.float32)
    return fb, dct, window


def mfcc(audio: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Cepstra 1-12 per 10 ms frame, and each frame's log energy (dB), of 16 kHz mono audio."""
    x = np.asarray(audio, dtype=np.float32).reshape(-1)
    n = 1 + (len(x) - FRAME) // HOP if len(x) >= FRAME else 0
    if n <= 0:
        return np.zeros((0, N_CEPS), dtype=np.float32), np.zeros(0, dtype=np.float32)
    fb, dct, window = _mel_dct()
    idx = np.arange(FRAME)[None, :] + HOP * np.arange(n)[:, None]
    frames = x[idx] * window
    power = np.abs(np.fft.rfft(frames, N_FFT, axis=1)) ** 2
    logmel = np.log(power @ fb.T + 1e-10)
    energy = 10 * np.log10(np.mean(frames ** 2, axis=1) + 1e-12)
    return (logmel @ dct.T).astype(np.float32), energy.astype(np.float32)


def speech_frames(audio: np.ndarray, regions: list[tuple[float, float]] | None = None,
                  floor_db: float = 30.0, silence_db: float = -60.0) -> np.ndarray:
    """MFCC frames of the speech in ``audio``: inside ``regions`` (seconds, e.g. the VAD's) when given,
    within ``floor_db`` of the loudest frame and above ``silence_db`` (pauses between words and digital
    silence are not the voice)."""
    ceps, energy = mfcc(audio)
    if not len(ceps):
        return ceps
    keep = (energy > energy.max() - floor_db) & (energy > silence_db)
    if regions is not None:
        t = (np.arange(len(ceps)) * HOP + FRAME / 2) / SAMPLE_RATE
        inside = np.zeros(len(ceps), dtype=bool)
        for a, b in regions:
            inside |= (t >= a) & (t < b)
        keep &= inside
    return ceps[keep]


def distance(before: np.ndarray, after: np.ndarray) -> float:
    """How far the voice of ``after`` (MFCC frames) is from that of ``before``: the squared difference of
    their mean cepstra over ``before``'s per-coefficient variance, averaged over the coefficients. About
    the same voice: well under 1; another speaker or channel: over 1 (docs/captions.md has the figures).
    NaN when either side has fewer than 20 frames (0.2 s) of speech."""
    if len(before) < 20 or len(after) < 20:
        return float("nan")
    var = before.var(axis=0) + 1e-3
    return float(np.mean((before.mean(axis=0) - after.mean(axis=0)) ** 2 / var))
