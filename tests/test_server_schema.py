"""The API's stream options are RunOptions, derived, not re-declared: every field is in the API or named in
SERVER_OWNED with a reason; the schema states the parser's own bounds and choices; and the API accepts a
value exactly when ``sidecast run``'s options would."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from sidecast.contract.errors import ConfigError
from sidecast.core.options import RangeParser, RunOptions
from sidecast.core.server import schema as S

MODEL = S.options_model()
PROPS = MODEL.model_json_schema()["properties"]


def _plain(prop: dict[str, Any]) -> dict[str, Any]:
    return next(p for p in prop.get("anyOf", [prop]) if p.get("type") != "null")


def test_every_run_option_is_in_the_api_or_owned_by_the_server_with_a_reason() -> None:
    names = {f.name for f in dataclasses.fields(RunOptions)}
    assert set(S.SERVER_OWNED) <= names, "SERVER_OWNED names a field RunOptions does not have"
    assert set(PROPS) == names - set(S.SERVER_OWNED)
    assert all(len(why) > 15 for why in S.SERVER_OWNED.values())
    for f in dataclasses.fields(RunOptions):
        if f.name in PROPS:
            assert PROPS[f.name]["description"].endswith(f.metadata["help"])


def test_the_schema_states_the_parsers_bounds_and_choices() -> None:
    for f in dataclasses.fields(RunOptions):
        if f.name not in PROPS:
            continue
        plain = _plain(PROPS[f.name])
        parse = f.metadata["parse"]
        if isinstance(parse, RangeParser):
            assert (plain["minimum"], plain["maximum"]) == (parse.lo, parse.hi), f.name
        if f.metadata["choices"]:
            assert plain["enum"] == list(f.metadata["choices"]), f.name


RANGED = [(f.name, f.metadata["parse"]) for f in dataclasses.fields(RunOptions)
          if f.name in PROPS and isinstance(f.metadata["parse"], RangeParser)]


def _run_options_accept(doc: dict[str, Any]) -> bool:
    try:
        RunOptions.from_mapping({**doc, "source": "rtsp://h/x"}).validate()
        return True
    except ConfigError:
        return False


@settings(max_examples=300, deadline=None)
@given(field=st.sampled_from(RANGED),
       value=st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-10**30, 10**30)))
def test_the_api_accepts_a_number_exactly_when_run_options_do(field: tuple[str, RangeParser], value: float) -> None:
    name, parse = field
    if parse.kind is int and isinstance(value, float):
        return  # JSON integers only for integer options (a float is a type error in both)
    try:
        MODEL.model_validate({name: value})
        api = True
    except ValidationError:
        api = False
    assert api == (_run_options_accept({name: value}) and math.isfinite(value)), (name, value)


@pytest.mark.parametrize("doc, why", [
    ({"segment_duration": "2"}, "a valid number"),
    ({"segment_duration": True}, "a valid number"),
    ({"window": 2.5}, "a valid integer"),
    ({"ladder": ["360p:500k"]}, "a valid string"),
    ({"ladder": "360p"}, "bad ladder"),
    ({"sidecars": ["telepathy"]}, "no sidecar named 'telepathy'"),
    ({"vertical": "sideways"}, "'auto', 'on' or 'off'"),
    ({"captions_language": "en", "captions_translate": ["en"]}, "that is the source language"),
    ({"outdir": "/etc"}, "Extra inputs are not permitted"),
    ({"stream_keys": ["k"]}, "Extra inputs are not permitted"),
])
def test_bad_options_are_refused_with_the_pipelines_own_message(doc: dict[str, Any], why: str) -> None:
    with pytest.raises(ValidationError, match=why):
        MODEL.model_validate(doc)


def test_stream_sources_are_checked_by_ingest() -> None:
    ok = S.StreamCreate.model_validate({"ingest": "pull", "source": "rtsp://cam.local/live"})
    assert ok.source == "rtsp://cam.local/live"
    for doc, why in [({"ingest": "pull"}, "needs a source"),
                     ({"ingest": "pull", "source": "file:///etc/passwd"}, "must be an"),
                     ({"ingest": "pull", "source": "/etc/passwd"}, "must be an"),
                     ({"ingest": "pull", "source": "srt://h:1?mode=listener"}, "caller"),
                     ({"ingest": "push", "source": "rtsp://x/y"}, "has no source"),
                     ({"ingest": "push", "id": "Bad Id"}, "id must be"),
                     ({"ingest": "push", "id": "metrics"}, "reserved")]:
        with pytest.raises(ValidationError, match=why):
            S.StreamCreate.model_validate(doc)


def test_settings_are_finite_and_bounded() -> None:
    for doc in ({"dvr_seconds": float("inf")}, {"dvr_seconds": -1}, {"memory_limit_mb": 10**12},
                {"recording_retention_hours": 0}, {"record": "yes"}):
        with pytest.raises(ValidationError):
            S.StreamSettings.model_validate(doc)
    assert S.StreamSettings.model_validate({}).memory_limit_mb == 3072
