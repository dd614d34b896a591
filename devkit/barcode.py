"""Frame-number barcodes: the picture stamp every glass-to-glass figure is read from.

A stamped frame shows its number as a barcode across the top quarter of the picture: 22 bars (a white
guard, 16 bits of the number, 4 bits of its popcount as a check, a black guard), each ~58 px wide at
1280 px (~29 px at 640), so the code survives scaling to 360p and a low-bitrate encode. The sender logs the
wall-clock time at which it handed each number over; a player that reads the number off the picture it
presents knows how old that picture is. Numbers wrap at 2^16 (36 minutes at 30 fps).

The browser reads the same layout in ``tests/browser/barcode.mjs``; both sides must change together.
"""

from __future__ import annotations

import numpy as np

BARS = 22
BITS = 16
CHECK_BITS = 4
WHITE, BLACK = 235, 16  # video-range luma


def _bars(n: int) -> list[int]:
    bits = [(n >> (BITS - 1 - i)) & 1 for i in range(BITS)]
    check = bin(n & 0xFFFF).count("1") & 0xF
    bits += [(check >> (CHECK_BITS - 1 - i)) & 1 for i in range(CHECK_BITS)]
    return [1] + bits + [0]


def barcode_band(n: int, w: int, h: int) -> np.ndarray:
    """A ``h`` x ``w`` luma band (uint8) carrying frame ``n``'s bars: the top quarter of a stamped picture."""
    band = np.full((h, w), BLACK, np.uint8)
    edges = np.linspace(0, w, BARS + 1).astype(int)
    for i, bit in enumerate(_bars(n & 0xFFFF)):
        if bit:
            band[:, edges[i]:edges[i + 1]] = WHITE
    return band


def barcode_image(n: int, w: int, h: int, flash: bool = False) -> np.ndarray:
    """An RGB picture: frame ``n``'s barcode across the top quarter, the rest white on a marker frame."""
    img = np.full((h, w, 3), WHITE if flash else BLACK, np.uint8)
    img[:h // 4] = barcode_band(n, w, h // 4)[:, :, None]
    return img


def read_barcode(gray: np.ndarray) -> int | None:
    """The frame number in a luma picture (any size), or None when the bars do not check out."""
    h, w = gray.shape[:2]
    rows = gray[max(0, h // 16): max(1, h * 3 // 16)].astype(np.float32)
    edges = np.linspace(0, w, BARS + 1)
    bits = []
    for i in range(BARS):
        a, b = int(edges[i] + (edges[i + 1] - edges[i]) * 0.3), int(edges[i] + (edges[i + 1] - edges[i]) * 0.7)
        bits.append(1 if rows[:, a:max(a + 1, b)].mean() > 128 else 0)
    if bits[0] != 1 or bits[-1] != 0:
        return None
    n = int("".join(map(str, bits[1:1 + BITS])), 2)
    check = int("".join(map(str, bits[1 + BITS:1 + BITS + CHECK_BITS])), 2)
    return n if bin(n).count("1") & 0xF == check else None


__all__ = ["BARS", "BITS", "CHECK_BITS", "barcode_band", "barcode_image", "read_barcode"]
