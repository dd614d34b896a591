"""Text translation engines for translated caption tracks: the installed engines (Debian Apertium, the
Bergamot EN<->PT models run by fxtranslate), their declared pairs and licences, hostile input, and the
parsing of ``captions.translate``."""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from sidecast.sidecars.stt import translation
from sidecast.sidecars.stt.sidecar import parse_targets
from tests.conftest import wait_for


@pytest.fixture(scope="module")
def engines() -> Iterator[list[translation.Translator]]:
    found = translation.load_engines()
    yield found
    for e in found:
        e.close()


def test_installed_engines_declare_their_pairs_and_licences(engines: list[translation.Translator]) -> None:
    names = {e.name: e for e in engines}
    assert {("en", "es"), ("es", "en")} <= set(names["apertium"].pairs())
    assert set(names["bergamot"].pairs()) == {("en", "pt"), ("pt", "en")}
    assert "GPL" in names["apertium"].licence and "MPL-2.0" in names["bergamot"].licence
    assert {"en>es", "es>en", "en>pt", "pt>en"} <= set(translation.declared_pairs(engines))


def test_engines_translate_real_prompt_text(engines: list[translation.Translator]) -> None:
    es = translation.route(engines, "en", "es")
    pt = translation.route(engines, "en", "pt")
    assert es is not None and pt is not None
    assert "conferencia" in es.engine.translate("The conference has been extended.", "en", "es").lower()
    assert "conferência" in pt.engine.translate("The conference has been extended.", "en", "pt").lower()
    assert translation.route(engines, "en", "ja") is None


@settings(max_examples=40, deadline=None)
@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=60))
@example("a ^")        # a trailing caret: the pipeline never answered and the caption thread hung
@example("Hello \uffff world")  # a non-character split an answer: every later one was a sentence behind
@example("Hello \u202e world")  # a bidi override ate the NUL: two answers came as one
@example("\\")
def test_apertium_survives_hostile_text_one_answer_per_sentence(text: str) -> None:
    # Apertium's stream format gives meaning to \ [ ] ^ $ @ / < > { } *: all are escaped, and the
    # persistent pipeline stays in step (each answer belongs to its own input).
    eng = _APERTIUM
    out = eng.translate(text, "en", "es")
    assert "\0" not in out
    assert eng.translate("Thank you.", "en", "es") == "Gracias."


_APERTIUM = translation.ApertiumTranslator()


def test_a_pipeline_that_never_answers_times_out_and_is_ended(monkeypatch: pytest.MonkeyPatch) -> None:
    """Whatever else makes Apertium keep a sentence, the caption thread gets a TimeoutError (the sidecar skips
    that cue and keeps the track) and the wedged pipeline's whole process group is gone."""
    monkeypatch.setattr(translation, "READ_TIMEOUT_S", 0.5)
    pipe = translation._NullFlushPipe.__new__(translation._NullFlushPipe)
    pipe.proc = subprocess.Popen(["bash", "-c", "sleep 60 | cat"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                 start_new_session=True)
    pipe.lock = threading.Lock()
    t0 = time.monotonic()
    with pytest.raises(TimeoutError, match="no answer within"):
        pipe("Hello.")
    assert time.monotonic() - t0 < 5
    assert pipe.proc.poll() is not None
    # bash's children (the pipeline's stages) went with it: SIGKILL to the group is delivered as each is next
    # scheduled, which a loaded machine delays (a full-suite run once still saw `sleep` alive at this point)
    wait_for(lambda: _live_in_group(pipe.proc.pid) == [], 30, "the pipeline's stages to be killed with bash")


def _live_in_group(pgid: int) -> list[int]:
    """Processes of a process group that are not zombies (a zombie waits for whoever reaps orphans)."""
    live = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            live.append(int(stat.parent.name))
    return live


def test_a_marian_directory_that_is_not_a_model_is_one_clear_error(tmp_path: object) -> None:
    with pytest.raises(translation.TranslatorUnavailable, match="not a CTranslate2 OPUS-MT directory"):
        translation.load_engines([f"marian:{tmp_path}"])
    with pytest.raises(translation.TranslatorUnavailable, match="unknown engine"):
        translation.load_engines(["nope"])


@given(st.text(max_size=40))
def test_captions_translate_is_parsed_or_refused_with_a_clear_error(value: str) -> None:
    try:
        tags = parse_targets(value)
    except ValueError as exc:
        assert "captions.translate" in str(exc)
        return
    assert all(2 <= len(t) <= 3 and t.isalpha() and t == t.lower() for t in tags)
    assert len(set(tags)) == len(tags)


def test_captions_translate_examples() -> None:
    assert parse_targets("es, PT,es") == ("es", "pt")
    assert parse_targets("") == ()
    with pytest.raises(ValueError):
        parse_targets("es,../x")


def test_sidecast_run_publishes_a_translated_caption_rendition_with_the_source_timing(tmp_path: Path) -> None:
    """End to end through the core: real English speech, `--captions-translate es` gives a Spanish WebVTT
    rendition beside the English one, its cues on the English cues' timing, LANGUAGE and NAME truthful."""
    import json
    import wave

    import m3u8
    import numpy as np

    from devkit import realspeech
    from tests.conftest import ffmpeg, run_sidecast

    english = [c for c in realspeech.prompts("en") if c.split == "heldout"][:4]
    prog = realspeech.programme(language="en", clips=english, seed=5, repeat_every=0)
    wav = tmp_path / "speech.wav"
    with wave.open(str(wav), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(realspeech.SAMPLE_RATE)
        w.writeframes((np.clip(prog.audio, -1, 1) * 32767).astype("<i2").tobytes())
    clip = tmp_path / "talk.mp4"
    ffmpeg("-f", "lavfi", "-i", f"testsrc2=size=320x240:rate=15:duration={prog.seconds:.2f}", "-i", str(wav),
           "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-c:a", "aac", "-shortest", str(clip))
    out = tmp_path / "out"
    r = run_sidecast("run", str(clip), "-o", str(out), "--sidecars", "stt", "--captions-translate", "es",
                     "--ladder", "240p:400k", "--snapshots-fps", "0", "--no-progress", timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    subs = {m.language: m for m in m3u8.load(str(out / "master.m3u8")).media if m.type == "SUBTITLES"}
    assert set(subs) == {"en", "es"}
    assert subs["es"].name.endswith("(machine translation)") and subs["en"].name == "English"
    en = {c["id"]: c for c in json.loads((out / "transcript.json").read_text())["cues"]}
    es = json.loads((out / "transcript.es.json").read_text())["cues"]
    assert en and es, "both tracks have cues"
    for cue in es:
        source = en[cue["id"].removeprefix("es-")]
        assert (cue["start"], cue["end"]) == (source["start"], source["end"]) and cue["text"] != source["text"]
    vtt = "".join(p.read_text() for p in sorted((out / "subs" / "es").glob("seg_*.vtt")))
    assert any(c["text"].split()[0] in vtt for c in es)
