"""PART-HOLD-BACK on a stream a sidecar captions live (``--caption-hold-back``, 0.8 s by default since the
eighteenth session): its low-latency players are asked to sit further back than on a stream without captions, so
that a caption decided ~2 s after its words reaches hls.js before its playhead passes it (docs/latency.md,
"sixteenth" and "eighteenth session"). A stream without live captions keeps three parts whatever it says;
``--caption-hold-back 0`` keeps three parts on a captioned one; ``--part-hold-back`` sets the value outright."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from sidecast.contract.errors import ConfigError
from sidecast.core.options import RunOptions
from tests.conftest import SIDECAST, wait_for
from tests.test_sidecar_contract import Proc, sock_dir  # noqa: F401


def declared_hold_back(clip: Path, out: Path, *args: str) -> float:
    """PART-HOLD-BACK of the 180p playlist while a real-time low-latency run of ``clip`` is live."""
    playlist = out / "video" / "180p" / "index.m3u8"
    proc = subprocess.Popen([SIDECAST, "run", str(clip), "-o", str(out), "--latency", "low", "--realtime",
                             "--ladder", "180p:300k", "--no-progress", "--snapshots-fps", "0", *args],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: playlist.exists() and "PART-HOLD-BACK=" in playlist.read_text(), 60, "a live LL playlist")
        m = re.search(r"PART-HOLD-BACK=([0-9.]+)", playlist.read_text())
        assert m is not None
        return float(m.group(1))
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=30)
        assert "Traceback" not in err, err[-3000:]


def test_a_live_captioned_stream_asks_its_players_to_sit_further_back(clip_small: Path, tmp_path: Path,
                                                                       sock_dir: Path) -> None:  # noqa: F811
    plain = declared_hold_back(clip_small, tmp_path / "plain")
    ticker = Proc(sock_dir / "captions.sock", "--mode", "captions")  # a caption sidecar without a model
    try:
        captioned = declared_hold_back(clip_small, tmp_path / "captioned", "--sidecar-addr", f"cc={ticker.target}")
        off = declared_hold_back(clip_small, tmp_path / "off", "--sidecar-addr", f"cc={ticker.target}",
                                 "--caption-hold-back", "0")
    finally:
        ticker.stop()
    uncaptioned = declared_hold_back(clip_small, tmp_path / "uncaptioned", "--caption-hold-back", "0.8")
    assert plain == pytest.approx(1.0, abs=0.01)  # three parts of 1/3 s, as before
    assert captioned == pytest.approx(1.8, abs=0.01)  # by default, three parts + 0.8 s
    assert off == plain and uncaptioned == plain  # turned off, and only where a sidecar captions the stream


def test_the_hold_back_a_run_declares() -> None:
    low = RunOptions(source="x", latency="low")
    assert low.hold_back(live_captions=False) is None  # the playlists' three parts
    assert low.hold_back(live_captions=True) == pytest.approx(1.8)  # three parts of 1/3 s + the default 0.8 s
    assert RunOptions(source="x", latency="low", caption_hold_back=0.8).hold_back(False) is None
    assert RunOptions(source="x", latency="low", caption_hold_back=1.5).hold_back(True) == pytest.approx(2.5)
    assert RunOptions(source="x", latency="low", caption_hold_back=0.0).hold_back(True) is None
    assert RunOptions(source="x", latency="low", part_hold_back=3.0).hold_back(True) == 3.0  # chosen: kept
    assert RunOptions(source="x", latency="low", part_hold_back=3.0).hold_back(False) == 3.0
    assert RunOptions(source="x").hold_back(True) is None  # plain HLS has no parts


@pytest.mark.parametrize(("args", "needle"), [
    ({"caption_hold_back": 1.0}, "add --latency low"),
    ({"latency": "low", "caption_hold_back": 1.0, "part_hold_back": 2.0}, "pick one"),
])
def test_caption_hold_back_is_refused_where_it_cannot_apply(args: dict[str, object], needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        RunOptions(source="x", **args).validate()  # type: ignore[arg-type]


def test_caption_hold_back_out_of_range_is_a_one_line_error(tmp_path: Path) -> None:
    r = subprocess.run([SIDECAST, "run", "x.mp4", "-o", str(tmp_path), "--latency", "low", "--caption-hold-back", "-1"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "--caption-hold-back" in r.stderr and "Traceback" not in r.stderr, r.stderr
