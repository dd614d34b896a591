"""``sidecast demo``: build a sample clip locally (no download) and run the whole pipeline on it.

The sample: a person (scikit-image's astronaut photo) sliding across a moving FFmpeg test pattern, with
speech synthesised by espeak-ng from known sentences — so captions, the vertical crop and the bitrate
hints all have something real to work on.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import tempfile
from pathlib import Path

from .errors import ConfigError
from .ladder import parse_ladder
from .options import RunOptions
from .pipeline import Pipeline
from .run import print_summary

SENTENCES = [
    "Welcome to the sidecast demo.",
    "This clip was made on your machine, with no download.",
    "Captions come from a speech model running next to the encoder.",
    "The vertical rendition follows the person in the picture.",
]


def _run(cmd: list[str]) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise ConfigError(f"{cmd[0]} failed while building the sample: {proc.stderr.strip().splitlines()[-1:]}")


def make_sample(path: Path, seconds: float = 20.0) -> Path:
    """Write the sample clip to ``path`` (H.264 + AAC, 1280x720, 30 fps) and return it."""
    for tool in ("ffmpeg", "espeak-ng"):
        if shutil.which(tool) is None:
            raise ConfigError(f"the demo needs {tool}; run ./dev.sh install")
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)
        speech = tmp / "speech.wav"
        _run(["espeak-ng", "-s", "150", "-g", "12", "-w", str(speech), "  ".join(SENTENCES)])
        inputs = ["-f", "lavfi", "-i", f"testsrc2=size=1280x720:rate=30:duration={seconds}"]
        filters = "[0:v]format=yuv420p[bg]"
        overlay = "[bg]copy[v]"
        try:
            from skimage import data
            from skimage.io import imsave

            person = tmp / "person.png"
            imsave(str(person), data.astronaut(), check_contrast=False)
            inputs += ["-loop", "1", "-i", str(person)]
            # The person crosses the frame left to right in the first half, then holds still.
            filters += ";[1:v]scale=360:360[p]"
            overlay = f"[bg][p]overlay=x='min(W-w, (W-w)*t/({seconds}/2))':y=(H-h)/2:shortest=1[v]"
        except ImportError:
            pass
        inputs += ["-i", str(speech)]
        audio_index = 2 if len(inputs) > 6 else 1
        _run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", "-y", *inputs,
              "-filter_complex", f"{filters};{overlay};[{audio_index}:a]apad,atrim=0:{seconds}[a]",
              "-map", "[v]", "-map", "[a]", "-t", str(seconds), "-c:v", "libx264", "-preset", "veryfast",
              "-pix_fmt", "yuv420p", "-c:a", "aac", "-ar", "44100", str(path)])
    return path


def run_demo(args: argparse.Namespace) -> int:
    outdir: Path = args.outdir
    sample = outdir.parent / "demo-sample.mp4"
    print(f"sidecast demo: building a {args.seconds:g} s sample clip at {sample} ...", flush=True)
    make_sample(sample, args.seconds)
    sidecars = [s.strip() for s in args.sidecars.split(",") if s.strip()]
    if outdir.exists():
        shutil.rmtree(outdir)
    cfg = RunOptions(source=str(sample), outdir=outdir, sidecars=sidecars,
                     ladder=parse_ladder("720p:3000k,480p:1400k,360p:800k"))
    print(f"sidecast demo: running the pipeline with sidecars: {', '.join(sidecars) or 'none'}", flush=True)
    summary = Pipeline(cfg).run()
    print_summary(summary)
    print("\nWhere to look:")
    for name, what in [("master.m3u8", "the ABR ladder (H.264 + AAC, HLS)"),
                       ("vertical.m3u8", "the 9:16 rendition that follows the person"),
                       ("subs/en/index.m3u8", "live captions as a WebVTT rendition"),
                       ("transcript.vtt", "the whole transcript"),
                       ("crops.jsonl", "the crop path"),
                       ("segments.jsonl", "each segment's encode; with the bitrate sidecar its measured size decision"),
                       ("snapshots/", "one JPEG per second")]:
        if (outdir / name).exists():
            print(f"  {str(outdir / name):<50}  {what}")
    print(f"\nPlay it:  .venv/bin/sidecast demo --serve 8080   or   python -m sidecast.core.serve {outdir} --port 8080")
    if args.serve is not None:
        from .serve import serve_forever

        print(f"serving {outdir} at http://127.0.0.1:{args.serve}/ (Ctrl-C to stop)", flush=True)
        serve_forever(outdir, args.serve, "0.0.0.0")
    return 0
