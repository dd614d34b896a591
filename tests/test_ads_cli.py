"""`sidecast ads stitch` and `sidecast ads interstitials`, run as the real console script."""

from __future__ import annotations

import subprocess
from pathlib import Path

import m3u8
import pytest

from sidecast.ads.condition import Conditioner
from sidecast.hls import parse_media
from tests.ads_media import add_cue_tags, make_content, make_creative

SIDECAST = Path(__file__).resolve().parents[1] / ".venv" / "bin" / "sidecast"


def sidecast(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(SIDECAST), *args], capture_output=True, text=True, timeout=60)


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("ads-cli")
    master = make_content(root / "content", seconds=10, subs=False)
    cued = root / "cued" / "index.m3u8"
    cued.parent.mkdir()
    text = (root / "content" / "video" / "180p" / "index.m3u8").read_text()
    cued.write_text(text.replace("seg_", "../content/video/180p/seg_"))
    add_cue_tags(cued, 1, 2)
    ad = Conditioner(master, root / "cache")(make_creative(root / "creative.mp4", seconds=4))
    return {"root": root, "cued": cued, "ad": ad.master,
            "video": root / "content" / "video" / "180p" / "index.m3u8"}


def _all_uris_resolve(out: Path) -> list[str]:
    pl = parse_media(out.read_text())
    for s in pl.segments:
        assert (out.parent / s.uri).is_file(), f"{s.uri} does not resolve from {out.parent}"
    return [s.uri for s in pl.segments]


def test_stitch_at_cue_tags_rewrites_uris_relative_to_the_output(media):
    out = media["root"] / "elsewhere" / "deeper" / "stitched.m3u8"
    r = sidecast("ads", "stitch", str(media["cued"]), "--ad", str(media["ad"]), "-o", str(out))
    assert r.returncode == 0, r.stderr
    assert "stitched 1 break(s), 2 ad segment(s)" in r.stdout
    uris = _all_uris_resolve(out)
    assert sum("/cache/" in u for u in uris) == 2 and len(uris) == 5
    parsed = m3u8.loads(out.read_text())
    assert [s.discontinuity for s in parsed.segments] == [False, True, False, True, False]
    # the origin's cue tags are replaced by ours, around the stitched ad
    assert parsed.is_endlist and "#EXT-X-CUE-OUT:4\n" not in out.read_text()
    assert [s.tags for s in parse_media(out.read_text()).segments][1:4] == [
        ("#EXT-X-CUE-OUT:DURATION=4",), ("#EXT-X-CUE-OUT-CONT:ElapsedTime=2,Duration=4",), ("#EXT-X-CUE-IN",)]


def test_stitch_at_times_inserts_pre_mid_and_post_rolls(media):
    out = media["root"] / "at.m3u8"
    r = sidecast("ads", "stitch", str(media["video"]), "--ad", str(media["ad"]), "--at", "0", "--at", "4",
                 "--at", "post", "-o", str(out))
    assert r.returncode == 0, r.stderr
    uris = _all_uris_resolve(out)
    ad_idx = [i for i, u in enumerate(uris) if u.startswith("cache/")]
    assert ad_idx == [0, 1, 4, 5, 9, 10]
    assert parse_media(out.read_text()).duration == pytest.approx(10 + 3 * 4)


def test_interstitials_cli_adds_dateranges_and_keeps_segments_playable(media, tmp_path):
    out = tmp_path / "sub" / "sgai.m3u8"
    r = sidecast("ads", "interstitials", str(media["cued"]), "--asset-list",
                 "http://127.0.0.1:8000/v1/asset-list?break={break_id}", "-o", str(out))
    assert r.returncode == 0, r.stderr
    _all_uris_resolve(out)
    pl = parse_media(out.read_text())
    [dr] = pl.dateranges()
    assert dr.cls == "com.apple.hls.interstitial" and dr.attrs["DURATION"] == "4"
    assert dr.string("X-ASSET-LIST").endswith("?break=" + dr.id)


def test_interstitials_cli_adds_program_date_time_when_missing(tmp_path):
    src = tmp_path / "plain.m3u8"
    src.write_text("#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2.0,\na.ts\n#EXTINF:2.0,\nb.ts\n#EXT-X-ENDLIST\n")
    out = tmp_path / "o.m3u8"
    r = sidecast("ads", "interstitials", str(src), "--asset-list", "http://x/l.json", "--at", "pre", "-o", str(out),
                 "--pdt-start", "2031-02-03T04:05:06Z")
    assert r.returncode == 0, r.stderr
    text = out.read_text()
    assert "#EXT-X-PROGRAM-DATE-TIME:2031-02-03T04:05:06.000Z" in text
    assert 'CUE="PRE"' in text


@pytest.mark.parametrize("args,message", [
    (["stitch", "/nonexistent.m3u8", "--ad", "/x.m3u8", "-o", "/tmp/o.m3u8"], "does not exist"),
    (["stitch", "{master}", "--ad", "{ad}", "-o", "{tmp}/o.m3u8"], "is a master playlist"),
    (["stitch", "{video}", "--ad", "{ad}", "-o", "{tmp}/o.m3u8"], "no cue tags"),
    (["stitch", "{video}", "--ad", "{ad}", "--at", "soon", "-o", "{tmp}/o.m3u8"], "give seconds"),
    (["stitch", "{video}", "--ad", "{ad}", "--at", "99", "-o", "{tmp}/o.m3u8"], "outside the playlist"),
    (["stitch", "{live}", "--ad", "{ad}", "--at", "2", "-o", "{tmp}/o.m3u8"], "live playlist"),
    (["stitch", "{garbage}", "--ad", "{ad}", "-o", "{tmp}/o.m3u8"], "not a valid HLS media playlist"),
    (["interstitials", "{video}", "--asset-list", "relative.json", "--at", "2", "-o", "{tmp}/o.m3u8"],
     "absolute http"),
])
def test_bad_input_is_one_clear_line_and_exit_status_2(media, tmp_path, args, message):
    live = tmp_path / "live.m3u8"
    live.write_text(media["video"].read_text().replace("#EXT-X-ENDLIST\n", ""))
    garbage = tmp_path / "garbage.m3u8"
    garbage.write_text("hello\n")
    subst = {"master": media["root"] / "content" / "master.m3u8", "ad": media["ad"], "video": media["video"],
             "tmp": tmp_path, "live": live, "garbage": garbage}
    r = sidecast("ads", *[a.format(**{k: str(v) for k, v in subst.items()}) for a in args])
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], r.stderr
    assert "Traceback" not in r.stderr
    assert not (tmp_path / "o.m3u8").exists()


def test_stitch_on_the_core_output_picks_the_matching_ad_rendition(tmp_path):
    clip = tmp_path / "clip.mp4"
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", "-f", "lavfi", "-i",
                    "testsrc2=size=320x180:rate=25:duration=6", "-f", "lavfi", "-i", "sine=duration=6",
                    "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac", "-shortest", str(clip)],
                   check=True, timeout=60)
    out = tmp_path / "out"
    r = sidecast("run", str(clip), "-o", str(out), "--ladder", "180p:300k,144p:200k", "--no-progress")
    assert r.returncode == 0, r.stderr
    ad = Conditioner(out / "master.m3u8", tmp_path / "cache")(make_creative(tmp_path / "c.mp4", seconds=2))
    for name in ("180p", "144p"):
        target = tmp_path / "stitched" / f"{name}.m3u8"
        r = sidecast("ads", "stitch", str(out / "video" / name / "index.m3u8"), "--ad", str(ad.master),
                     "--at", "2", "-o", str(target))
        assert r.returncode == 0, r.stderr
        uris = _all_uris_resolve(target)
        assert [u for u in uris if "cache/" in u] == [f"../cache/{ad.directory.name}/video/{name}/seg_000000.ts"]
