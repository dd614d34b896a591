"""RunOptions: one declaration that the command line and a config file both derive from."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from sidecast.core.errors import ConfigError
from sidecast.core.options import RunOptions
from tests.conftest import run_sidecast


def parse(*argv: str) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    RunOptions.add_arguments(p)
    p.add_argument("--config", type=Path, default=None)
    return p.parse_args(list(argv))


def test_every_field_with_a_flag_is_on_the_command_line_and_in_the_config_file() -> None:
    p = argparse.ArgumentParser()
    RunOptions.add_arguments(p)
    flags = {s for a in p._actions for s in a.option_strings}
    for f in RunOptions.fields():
        if f.metadata["cli"] and not f.metadata["positional"]:
            assert set(f.metadata["flags"]) <= flags, f.name
        # the config file accepts every field under its own name
        assert RunOptions.from_mapping({"source": "x.mp4", f.name: getattr(RunOptions(), f.name)
                                        if not isinstance(getattr(RunOptions(), f.name), tuple) else "360p:800k"})


def test_the_command_line_wins_over_the_config_file(tmp_path: Path) -> None:
    cfg = tmp_path / "stream.toml"
    cfg.write_text('[run]\nsource = "in.mp4"\noutdir = "out/a"\nsegment_duration = 4\nwindow = 10\n'
                   'sidecars = ["stt", "autocrop"]\nladder = "720p:3000k,360p:800k"\n'
                   'sidecar-addr = ["bitrate=gpu:50051"]\nbreak_at = ["30:20"]\nno_audio = true\n')
    base = RunOptions.from_toml(cfg)
    assert base.segment_duration == 4.0 and base.window == 10 and base.sidecars == ["stt", "autocrop"]
    assert [r.name for r in base.ladder] == ["720p", "360p"] and base.sidecar_addrs == {"bitrate": "gpu:50051"}
    assert base.breaks == [(30.0, 20.0)] and base.audio is False
    opts = RunOptions.from_namespace(parse("--segment-duration", "6", "--window", "3"), base)
    assert (opts.segment_duration, opts.window, opts.source, str(opts.outdir)) == (6.0, 3, "in.mp4", "out/a")
    assert opts.sidecars == ["stt", "autocrop"], "what the command line leaves out comes from the file"


@pytest.mark.parametrize(("doc", "needle"), [
    ({"source": "a.mp4", "segment_duraton": 4}, "unknown option 'segment_duraton'"),
    ({"source": "a.mp4", "segment_duration": "inf"}, "--segment-duration"),
    ({"source": "a.mp4", "window": 2.5}, "--window must be an integer"),
    ({"source": "a.mp4", "transport": "carrier-pigeon"}, "expected one of auto, shm, bytes"),
    ({"source": "a.mp4", "break_at": ["10:nan"]}, "--break-at"),
    ({"source": "a.mp4", "captions_translate": "en,es!"}, "bad language"),
    ({"source": "a.mp4", "part_hold_back": 2.0}, "--part-hold-back is a low-latency setting"),
    ({"source": "a.mp4", "latency": "low", "part_hold_back": 0.5}, "must be at least two parts"),
    ({"source": "a.mp4", "latency": "low", "part_hold_back": "soon"}, "--part-hold-back must be a number"),
    ({"source": "a.mp4", "latency": "low", "part_hold_back": 1e9}, "--part-hold-back must be between"),
    ({"source": "a.mp4", "caption_part_cut": "covered"}, "--caption-part-cut is a low-latency setting"),
    ({"source": "a.mp4", "latency": "low", "caption_part_cut": "sometimes"}, "expected one of decided, covered"),
    ({"source": "a.mp4", "caption_segments": "segment"}, "--caption-segments is a low-latency setting"),
    ({"source": "a.mp4", "latency": "low", "caption_segments": "short"}, "expected one of part, segment"),
    ({"source": "a.mp4", "sidecars": ["autocrop"], "sidecar_nice": ["autocrop=-5"]}, "--sidecar-nice autocrop="),
    ({"source": "a.mp4", "sidecars": ["autocrop"], "sidecar_nice": ["autocrop=20"]}, "0..19"),
    ({"source": "a.mp4", "sidecars": ["autocrop"], "sidecar_nice": ["autocrop=nan"]}, "0..19"),
    ({"source": "a.mp4", "sidecars": ["autocrop"], "sidecar_nice": {"autocrop": True}}, "0..19"),
    ({"source": "a.mp4", "sidecars": ["stt"], "sidecar_nice": ["autocrop=5"]}, "for a sidecar named in --sidecars"),
])
def test_bad_values_in_a_config_are_one_error_naming_the_option(doc: dict[str, object], needle: str) -> None:
    with pytest.raises(ConfigError, match=needle.replace("(", r"\(")):
        RunOptions.from_mapping(doc).validate()


def test_the_old_translation_flag_is_an_alias_of_translate_en() -> None:
    opts = RunOptions.from_namespace(parse("clip.mp4", "-o", "x", "--captions-language", "de",
                                           "--captions-translation"))
    assert opts.captions_translate == ["en"]


def test_a_broken_config_file_is_one_clear_error(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text("[run\nsource = ")
    r = run_sidecast("run", "--config", str(cfg))
    assert r.returncode == 2 and r.stderr.strip().splitlines() == [
        r.stderr.strip().splitlines()[-1]] and "is not valid TOML" in r.stderr, r.stderr
    r = run_sidecast("run", "--config", str(tmp_path / "missing.toml"))
    assert r.returncode == 2 and "cannot read config" in r.stderr, r.stderr


def test_sidecar_nice_from_the_command_line_and_the_config_file() -> None:
    opts = RunOptions.from_namespace(parse("clip.mp4", "-o", "x", "--sidecars", "stt,autocrop",
                                           "--sidecar-nice", "autocrop=5"))
    assert opts.validate().sidecar_nice == {"autocrop": 5}
    assert RunOptions.from_mapping({"source": "a.mp4", "sidecars": ["autocrop"],
                                    "sidecar_nice": {"autocrop": 3}}).validate().sidecar_nice == {"autocrop": 3}
