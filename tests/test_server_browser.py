"""The server's dashboard in a real browser (Debian's headless Chromium): it lists the streams and their state,
plays a protected stream through a playback token with captions from the shared stt sidecar (real LibriVox
speech from pocketsphinx-testdata), switches to the vertical rendition, and shows keys and recent webhooks."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.browser.harness import open_page
from tests.conftest import ffmpeg, wait_for
from tests.server_helpers import FfmpegSession, WebhookReceiver, running_server

LIBRIVOX = Path("/usr/share/pocketsphinx/test/data/librivox")
CLIPS = ("0870", "0880", "0890")
SAID = ("and mister john dashwood had then leisure to consider how much there might be prudently in his power "
        "to do for them he was not an ill disposed young man unless to be rather cold hearted and rather selfish "
        "is to be ill disposed")


@pytest.fixture(scope="module")
def speech_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """~15.5 s of a LibriVox reading (three utterances of pocketsphinx-testdata) over a 426x240 pattern."""
    wavs = [LIBRIVOX / f"sense_and_sensibility_01_austen_64kb-{n}.wav" for n in CLIPS]
    assert all(w.exists() for w in wavs), "Debian's pocketsphinx-testdata is missing (./dev.sh install)"
    tmp = tmp_path_factory.mktemp("speech")
    listing = tmp / "wavs.txt"
    listing.write_text("".join(f"file '{w}'\n" for w in wavs))
    out = tmp / "speech.mp4"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=426x240:rate=25", "-f", "concat", "-safe", "0", "-i", str(listing),
           "-shortest", "-c:v", "libx264", "-preset", "ultrafast", "-g", "25", "-pix_fmt", "yuv420p",
           "-c:a", "aac", "-ar", "48000", "-b:a", "96k", str(out))
    return out


@pytest.mark.browser
def test_the_dashboard_plays_a_protected_stream_with_captions_and_its_vertical_rendition(
        tmp_path: Path, speech_clip: Path) -> None:
    with WebhookReceiver() as hooks, running_server(tmp_path / "data") as srv:
        srv.api.post("/v1/webhooks", json={"url": hooks.url}).raise_for_status()
        r = srv.api.post("/v1/streams", json={
            "id": "reading", "ingest": "push", "name": "Austen",
            "options": {"ladder": "240p:400k", "sidecars": ["stt"], "vertical": "on", "window": 8},
            "settings": {"playback_protection": True}})
        assert r.status_code == 201, r.text
        key = r.json()["key"]["key"]
        srv.api.post("/v1/streams", json={"id": "lobby", "ingest": "push", "enabled": False}).raise_for_status()
        grant = srv.server.authority.authorize("rtmp", key, "127.0.0.1:40000")
        session = FfmpegSession(grant.stream_id, speech_clip, loop=True)  # type: ignore[union-attr]
        assert srv.server.push_handler.accept(session) is None
        srv.wait_state("reading", "live", 120)
        wait_for(lambda: "stt" in [s["name"] for s in srv.status("reading")["sidecars"] if s["live"]], 60,
                 "the shared stt sidecar serving the stream")
        wait_for(lambda: hooks.of_type("stream.started"), 20, "the stream.started webhook")
        assert srv.media("reading/master.m3u8").status_code == 403, "the stream is protected"
        # The page also records the stream table's row count after every change to it and shows the list
        # when done: the table must never be seen part-built (it once was emptied and refilled one awaited
        # status request at a time, so a reader under load saw no streams at all).
        until = ("(() => { const tb = document.querySelector('#streams tbody');"
                 " if (!window.__rows) { window.__rows = [];"
                 "  new MutationObserver(() => window.__rows.push(tb.rows.length)).observe(tb, {childList: true}); }"
                 " const v = document.querySelector('video'); if (!v || v.currentTime <= 0) return false;"
                 " window.__t0 = window.__t0 ?? v.currentTime; const done = v.currentTime - window.__t0 >= 4 &&"
                 " window.__rows.length >= 2 &&"
                 " document.getElementById('captions').textContent.trim().split(/\\s+/).length >= 4;"
                 " if (done) { const p = document.createElement('pre');"
                 "  p.textContent = 'stream rows seen: ' + window.__rows.join(','); document.body.prepend(p); }"
                 " return done; })()")
        url = f"{srv.server.api.url}#key={srv.server.admin_key}&play=reading&rendition=vertical"  # type: ignore[union-attr]
        report = open_page(url, seconds=1, timeout=150, until=until)
        session.close()
    assert report["stopReason"] == "played", report
    video = report["video"]
    assert video["errors"] == [] and not video["paused"]
    assert video["height"] > video["width"], f"not the vertical rendition: {video}"
    text = report["pageText"]
    rows_seen = [int(n) for n in text.split("stream rows seen: ", 1)[1].split()[0].split(",")]
    assert rows_seen and set(rows_seen) == {2}, f"the stream table was seen part-built: {rows_seen}"
    assert "reading (Austen)" in text and "lobby" in text
    assert "live" in text and "stopped" in text                         # each stream's state
    assert "stream.started" in text and "delivered" in text             # recent webhooks
    assert srv.server.admin_key[:10] in text                             # the API key list shows prefixes
    assert srv.server.admin_key not in text and key not in text         # and never a key itself
    captions = text.split("captions seen:", 1)[1].split("API keys", 1)[0].lower()
    words = [w.strip(".,;!?") for w in captions.split()]
    assert sum(w in SAID.split() for w in words) >= 4, f"captions do not match the reading: {captions!r}"
    assert not report["pageErrors"], report["pageErrors"]
