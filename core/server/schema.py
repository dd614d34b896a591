"""The control API's data shapes. A stream's pipeline options are *derived* from ``RunOptions`` (core/options.py),
never re-declared here: every field of that dataclass appears in ``StreamOptions`` with its help text as the
description, its choices as an enum and its parser's range as minimum/maximum, unless ``SERVER_OWNED``
names it with the reason the server sets it itself. Values are then checked by ``RunOptions`` itself
(``from_mapping`` and ``validate``), so the API refuses exactly what ``sidecast run`` refuses, with the same
one-line message. A new option in ``RunOptions`` is in the API the next time the server starts.

Every model is strict (a number is not a string, a bool not a number), refuses unknown fields, and every
number is finite and bounded: JSON cannot smuggle NaN, Infinity or 10**30 into a stream.
"""

from __future__ import annotations

import dataclasses
import functools
import re
import typing
from importlib import metadata
from typing import Annotated, Any, Literal
from urllib.parse import urlparse

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
    create_model,
    field_validator,
    model_validator,
)

from sidecast.contract.errors import ConfigError
from sidecast.contract.records import SIDECAR_ENTRY_POINTS

from ..options import RangeParser, RunOptions
from .keys import SCOPES
from .webhooks import EVENT_TYPES

SERVER_OWNED: dict[str, str] = {
    "source": "a pull stream's `source`; a push stream's media comes from its publisher",
    "outdir": "the server's storage",
    "realtime": "server streams are live sources",
    "sidecar_addrs": "the server connects every stream to its shared sidecar processes",
    "sidecar_args": "a shared sidecar's arguments are the server's (`--sidecar-arg`), not a stream's",
    "sidecar_nice": "shared sidecars run at the server's priority (docs/server.md, \"Scheduling\")",
    "captions_translation": "old alias of captions_translate",
    "stream_keys": "stream keys are generated and rotated by the API (POST /v1/streams/{id}/key)",
    "stream_keys_file": "stream keys are generated and rotated by the API",
    "breaks": "breaks are scheduled live (POST /v1/streams/{id}/breaks)",
    "progress": "the server reports progress in each stream's status",
    "describe_timeout": "a server setting",
}
"""RunOptions fields a stream cannot set through the API, and why (tests/test_server_schema.py checks
that every other field is in the API)."""

STREAM_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
RESERVED_IDS = frozenset({"healthz", "readyz", "metrics", "logs", "dashboard", "v1", "relay", "t", "e"})
"""Names the ports use for themselves (and ``files.is_public`` keeps ``logs`` private)."""
PULL_SCHEMES = ("rtsp", "rtsps", "srt", "http", "https")
Finite = Annotated[float, Field(allow_inf_nan=False)]


def _strict(title: str | None = None) -> ConfigDict:
    return ConfigDict(strict=True, extra="forbid", title=title) if title else ConfigDict(strict=True, extra="forbid")


def _field_type(f: dataclasses.Field[Any], hint: Any) -> tuple[Any, dict[str, Any]]:
    """The JSON type of one RunOptions field (its config-file form) and the schema constraints."""
    m = f.metadata
    parse = m.get("parse")
    extra: dict[str, Any] = {}
    if isinstance(parse, RangeParser):
        extra = {"ge": parse.lo, "le": parse.hi}
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    base = args[0] if typing.get_origin(hint) in (typing.Union, type(int | None)) and len(args) == 1 else hint
    if m.get("choices"):
        return Literal[tuple(m["choices"])], {}
    if typing.get_origin(base) is Literal:
        return base, {}
    if base is bool:
        return StrictBool, {}
    if base is int:
        return StrictInt, extra or {"ge": 0, "le": 2**31}
    if base is float:
        return Finite, extra or {"ge": -1e9, "le": 1e9}
    if base is str:
        return StrictStr, {"max_length": 200}
    if typing.get_origin(base) is list and typing.get_args(base) == (str,):
        return list[Annotated[StrictStr, Field(max_length=64)]], {"max_length": 32}
    if typing.get_origin(base) is tuple:  # the ladder: its text form, "720p:3000k,480p:1400k"
        return StrictStr, {"max_length": 400}
    raise TypeError(f"RunOptions.{f.name} ({hint}) has no JSON form: add it to SERVER_OWNED or teach _field_type")


def _check_options(model: BaseModel) -> BaseModel:
    values = model.model_dump(exclude_none=True)
    try:
        RunOptions.from_mapping({**values, "source": "rtsp://placeholder/"}).validate()
    except ConfigError as exc:
        raise ValueError(str(exc)) from None
    unknown = [s for s in values.get("sidecars", []) if s not in installed_sidecars()]
    if unknown:
        raise ValueError(f"no sidecar named {unknown[0]!r} is installed (installed: "
                         f"{', '.join(sorted(installed_sidecars())) or 'none'})")
    return model


@functools.cache
def installed_sidecars() -> frozenset[str]:
    return frozenset(ep.name for ep in metadata.entry_points(group=SIDECAR_ENTRY_POINTS))


@functools.cache
def options_model() -> type[BaseModel]:
    """``StreamOptions``: the API form of RunOptions (see the module docstring)."""
    hints = typing.get_type_hints(RunOptions)
    fields: dict[str, Any] = {}
    for f in dataclasses.fields(RunOptions):
        if f.name in SERVER_OWNED:
            continue
        annotation, constraints = _field_type(f, hints[f.name])
        doc = f.metadata["help"]
        if f.metadata["negate"]:  # the help describes the CLI flag that switches it off (--no-audio)
            doc = f"true unless switched off; {f.metadata['flags'][0]}: {doc}"
        fields[f.name] = (annotation | None, Field(default=None, description=doc, **constraints))
    validators: dict[str, Any] = {"check": model_validator(mode="after")(_check_options)}
    model: type[BaseModel] = create_model(
        "StreamOptions", __config__=_strict(title="StreamOptions"),
        __doc__="The stream's pipeline options (RunOptions; unset = the pipeline's default).",
        __validators__=validators, **fields)
    return model


def api_options(values: dict[str, Any]) -> dict[str, Any]:
    """Stored options (config-file form), validated again (a registry written by an older server)."""
    return options_model().model_validate(values).model_dump(exclude_none=True)


# ------------------------------------------------------------------------------ streams

class StreamSettings(BaseModel):
    """The server's own fields of a stream (what RunOptions does not cover)."""

    model_config = _strict()
    dvr_seconds: Finite = Field(0.0, ge=0, le=86_400, description=(
        "keep this many seconds in the stream's playlists for rewind (0: only the live window)"))
    record: StrictBool = Field(False, description="keep every segment of each event and write its VOD recording")
    recording_retention_hours: Finite = Field(168.0, gt=0, le=87_600, description=(
        "hours a recording is kept after its event ended"))
    playback_protection: StrictBool = Field(False, description=(
        "players need a signed, expiring token (POST /v1/streams/{id}/playback-token) for every request"))
    memory_limit_mb: StrictInt = Field(3072, ge=256, le=262_144, description=(
        "address-space cap of the stream's worker process (RLIMIT_AS)"))


def check_source(ingest: str, source: str | None) -> None:
    if ingest == "pull":
        if not source:
            raise ValueError("a pull stream needs a source URL (rtsp://, srt://, http(s):// HLS)")
        u = urlparse(source)
        if u.scheme.lower() not in PULL_SCHEMES or not u.netloc:
            raise ValueError(f"source must be an {', '.join(s + '://' for s in PULL_SCHEMES)} URL")
        if u.scheme.lower() == "srt" and "mode=listener" in u.query.lower():
            raise ValueError("an srt:// pull is a caller; publishers push to the server's SRT port instead")
    elif source:
        raise ValueError("a push stream has no source: its publisher sends media with the stream key")


class StreamCreate(BaseModel):
    model_config = _strict()
    id: StrictStr | None = Field(None, description="[a-z0-9][a-z0-9_-]{0,62}; generated when omitted")
    name: StrictStr = Field("", max_length=200)
    ingest: Literal["push", "pull"] = Field(description="push: publishers send media with the stream key; "
                                                        "pull: the server pulls `source`")
    source: StrictStr | None = Field(None, max_length=2000, description="pull: rtsp://, srt:// or http(s):// HLS")
    enabled: StrictBool = True
    options: options_model() = Field(default_factory=lambda: options_model()())  # type: ignore[valid-type]
    settings: StreamSettings = Field(default_factory=lambda: StreamSettings.model_validate({}))

    @field_validator("id")
    @classmethod
    def _id(cls, v: str | None) -> str | None:
        if v is not None and not STREAM_ID.match(v):
            raise ValueError("id must be 1-63 of a-z, 0-9, '-' and '_', starting with a letter or digit")
        if v in RESERVED_IDS:
            raise ValueError(f"id {v!r} is reserved: pick another")
        return v

    @model_validator(mode="after")
    def _source(self) -> StreamCreate:
        check_source(self.ingest, self.source)
        return self


class StreamUpdate(BaseModel):
    """Fields to change (absent: unchanged). ``options`` replaces the stream's options as a whole."""

    model_config = _strict()
    name: StrictStr | None = Field(None, max_length=200)
    source: StrictStr | None = Field(None, max_length=2000)
    enabled: StrictBool | None = None
    options: options_model() | None = None  # type: ignore[valid-type]
    settings: StreamSettings | None = None


class KeyInfo(BaseModel):
    prefix: str | None
    created_at: float | None


class Stream(BaseModel):
    id: str
    name: str
    ingest: Literal["push", "pull"]
    source: str | None
    enabled: bool
    options: dict[str, Any]
    settings: StreamSettings
    key: KeyInfo
    revision: int
    created_at: float
    updated_at: float
    urls: dict[str, str] = Field(description="playback and publish URLs")


class StreamList(BaseModel):
    streams: list[Stream]
    total: int


class KeyIssued(BaseModel):
    stream_id: str
    key: str = Field(description="the stream key: shown this once, stored hashed")
    srt_passphrase: str = Field(description="SRT encryption passphrase that goes with this key")
    publish: dict[str, str]


class SidecarHealth(BaseModel):
    name: str
    live: bool
    failed: str | None = None
    lag: float | None = Field(None, description="seconds the sidecar's results trail the stream")
    results: int = 0
    dropped: int = 0
    errors: int = 0
    last_error: str | None = None


class StreamStatus(BaseModel):
    id: str
    state: str
    since: float
    enabled: bool
    event: str | None
    attempt: int
    pid: int | None
    publisher: str | None = Field(None, description="push: the publisher's address")
    input_bitrate: float | None = Field(None, description="bits/s received (push streams)")
    input_fps: float | None
    speed: float | None = Field(None, description="media seconds processed per second (1.0 = real time)")
    media_time: float | None
    segments: int
    restarts: int
    failures: int
    storage_bytes: int
    rss_bytes: int | None
    decision_wait_avg: float | None
    late_segments: int = Field(0, description="main-ladder segments published before all their sidecar results "
                                              "arrived (the decision window ran out); the pipeline records the "
                                              "main ladder's waits only")
    sidecars: list[SidecarHealth]
    last_error: str | None
    retry_in: float | None = None
    reconnect_window_left: float | None = None
    replica: str | None = Field(None, description="fleet: the replica that runs the stream (state 'remote' when "
                                                  "it is another one, 'unassigned' while none has claimed it)")


class BreakRequest(BaseModel):
    model_config = _strict()
    at: Finite | None = Field(None, ge=0, le=10_000_000, description="media time of the break (seconds)")
    in_: Finite | None = Field(None, alias="in", ge=0, le=3600,
                               description="or: seconds after the live edge (default 4)")
    duration: Finite = Field(30.0, gt=0, le=600)

    @model_validator(mode="after")
    def _one(self) -> BreakRequest:
        if self.at is not None and self.in_ is not None:
            raise ValueError("give `at` or `in`, not both")
        return self


class BreakScheduled(BaseModel):
    id: str
    start: float
    duration: float
    live_edge: float


class KeepCentered(BaseModel):
    model_config = _strict()
    on: StrictBool = True


class TokenRequest(BaseModel):
    model_config = _strict()
    ttl: Finite = Field(3600.0, gt=0, le=7 * 86400, description="seconds the token stays valid")


class TokenIssued(BaseModel):
    token: str
    expires_at: float
    urls: dict[str, str]


class EventInfo(BaseModel):
    id: str
    started_at: float
    live_at: float | None
    ended_at: float | None
    segments: int
    recording: bool
    recording_ready_at: float | None
    purge_after: float | None
    purged_at: float | None
    urls: dict[str, str]


# ------------------------------------------------------------------------------ keys and webhooks

Scope = Literal[tuple(SCOPES)]  # type: ignore[valid-type]


class ApiKeyCreate(BaseModel):
    model_config = _strict()
    name: StrictStr = Field("", max_length=200)
    scopes: list[Scope] = Field(min_length=1, max_length=len(SCOPES))  # type: ignore[valid-type]


class ApiKeyInfo(BaseModel):
    id: str
    name: str
    prefix: str
    scopes: list[str]
    created_at: float
    last_used_at: float | None


class ApiKeyIssued(ApiKeyInfo):
    key: str = Field(description="the API key: shown this once, stored hashed")


EventType = Literal[(*EVENT_TYPES, "*")]  # type: ignore[valid-type]


class WebhookCreate(BaseModel):
    model_config = _strict()
    url: StrictStr = Field(max_length=2000, description="http(s) URL that receives POSTs")
    events: list[EventType] = Field(default_factory=lambda: ["*"], min_length=1, max_length=8)

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        u = urlparse(v)
        if u.scheme not in ("http", "https") or not u.netloc:
            raise ValueError("url must be an http:// or https:// URL")
        return v


class Webhook(BaseModel):
    id: str
    url: str
    events: list[str]
    enabled: bool
    created_at: float


class WebhookIssued(Webhook):
    secret: str = Field(description="HMAC secret of the Sidecast-Signature header: shown this once")


class Delivery(BaseModel):
    id: int
    webhook_id: str
    event_id: str
    type: str
    stream_id: str | None
    status: Literal["pending", "delivered", "failed"]
    attempts: int
    next_at: float | None
    last_status: int | None
    last_error: str | None
    created_at: float
    updated_at: float


class Problem(BaseModel):
    detail: str


__all__ = ["check_source", "ApiKeyCreate", "ApiKeyInfo", "ApiKeyIssued", "BreakRequest", "BreakScheduled", "Delivery", "EventInfo",
           "KeepCentered", "KeyInfo", "KeyIssued", "PULL_SCHEMES", "Problem", "SERVER_OWNED", "STREAM_ID", "SidecarHealth",
           "Stream", "StreamCreate", "StreamList", "StreamSettings", "StreamStatus", "StreamUpdate", "TokenIssued",
           "TokenRequest", "Webhook", "WebhookCreate", "WebhookIssued", "api_options", "installed_sidecars",
           "options_model"]
