"""The wire format of the decisioning API (pydantic models): what the OpenAPI document shows and what
requests are validated against. Strict by design: unknown fields, out-of-range numbers and non-http(s) URLs
are refused with a 422 that names the field, before any handler runs.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StringConstraints,
    model_validator,
)

Id = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]
Url = Annotated[str, StringConstraints(pattern=r"^https?://[!-~]+$", max_length=2048)]  # ASCII: percent-encode the rest
Word = Annotated[str, StringConstraints(min_length=1, max_length=128)]
Text = Annotated[str, StringConstraints(max_length=256)]
EventName = Literal["impression", "start", "firstQuartile", "midpoint", "thirdQuartile", "complete", "error"]
PositionName = Literal["pre", "mid", "post"]
Tracking = Annotated[dict[EventName, Annotated[list[Url], Field(max_length=16)]], Field(max_length=8)]
Targeting = Annotated[dict[Word, Annotated[list[Word], Field(min_length=1, max_length=64)]], Field(max_length=32)]
def _a_number(value: object) -> object:
    """A JSON number, not a boolean or a numeric string: pydantic's lax mode reads ``false`` as 0 and
    ``"1.5"`` as 1.5, which the OpenAPI contract (``type: number``) does not promise (schemathesis found
    ``"offset": false`` accepted as a break at 0 s, full run 2026-12-02)."""
    if isinstance(value, (bool, str)):
        raise ValueError("a JSON number, not a boolean or a string")
    return value


Number = Annotated[float, BeforeValidator(_a_number)]
Integer = Annotated[int, BeforeValidator(_a_number)]
Duration = Annotated[Number, Field(gt=0, le=600, description="seconds")]


def _date_time_text(value: object) -> object:
    """The documents say ``format: date-time`` (a string); pydantic alone also takes a number as Unix time,
    which the OpenAPI contract does not promise, so a number is refused with a 422 that says so."""
    if isinstance(value, (int, float)):
        raise ValueError("a date-time string (RFC 3339, e.g. 2026-01-01T12:00:00Z), not a number")
    return value


WallClock = Annotated[datetime, BeforeValidator(_date_time_text)]


def _all_positions() -> list[PositionName]:
    return ["pre", "mid", "post"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CreativeIn(_Strict):
    id: Id | None = Field(None, description="your id for the creative; generated when absent")
    name: Text = ""
    advertiser: Text = Field("", description="used for competitive separation when the campaign names none")
    media_url: Url = Field(description="HLS playlist or MP4 of the ad")
    duration: Duration
    click_through: Url | None = None
    tracking: Tracking = Field(default_factory=dict, description="event -> tracking URLs, fired once each")
    rendition_uris: Annotated[dict[Word, Url], Field(max_length=16)] = Field(
        default_factory=dict, description="rendition name -> conditioned media playlist (for SSAI)")


class Creative(CreativeIn):
    id: Id  # type: ignore[assignment]


class CampaignIn(_Strict):
    id: Id | None = None
    name: Text = ""
    advertiser: Text = Field("", description="no two ads of one advertiser share a pod")
    creative_ids: Annotated[list[Id], Field(min_length=1, max_length=64)]
    start: WallClock | None = Field(None, description="flight start (UTC when no offset is given)")
    end: WallClock | None = Field(None, description="flight end, exclusive")
    priority: Integer = Field(5, ge=1, le=10, description="1 is the most important, 10 the least")
    targeting: Targeting = Field(default_factory=dict,
                                 description="key -> allowed values; every key must match one value")
    positions: Annotated[list[PositionName], Field(min_length=1, max_length=3)] = Field(
        default_factory=_all_positions)
    frequency_cap: Integer | None = Field(None, ge=1, le=10_000, description="most ads per session from this campaign")
    enabled: StrictBool = True  # 1 or "true" is refused, as the schema says

    @model_validator(mode="after")
    def _flight(self) -> CampaignIn:
        if self.start and self.end:
            s = self.start if self.start.tzinfo else self.start.replace(tzinfo=self.end.tzinfo)
            e = self.end if self.end.tzinfo else self.end.replace(tzinfo=s.tzinfo)
            if e <= s:
                raise ValueError("campaign end must be after its start")
        return self


class Campaign(CampaignIn):
    id: Id  # type: ignore[assignment]


class SourceIn(_Strict):
    id: Id | None = None
    name: Text = ""
    vast_url: Url = Field(description="tag URL template; macros: [CACHEBUSTING], [TIMESTAMP], [SESSION_ID], "
                          "[BREAKMAXDURATION], [BREAKPOSITION], [BREAK_ID]")
    format: Literal["vast", "vmap"] = Field(
        "vast", description="vast: the tag answers ads for the break asked about; vmap: it answers a VOD "
        "asset's schedule (VMAP 1.0), each break with its own VAST")
    priority: Integer = Field(5, ge=1, le=10)
    targeting: Targeting = Field(default_factory=dict)
    positions: Annotated[list[PositionName], Field(min_length=1, max_length=3)] = Field(
        default_factory=_all_positions)
    frequency_cap: Integer | None = Field(None, ge=1, le=10_000)
    enabled: StrictBool = True  # 1 or "true" is refused, as the schema says


class Source(SourceIn):
    id: Id  # type: ignore[assignment]


class BreakIn(_Strict):
    id: Id | None = None
    position: PositionName = "mid"
    offset: Number | None = Field(None, ge=0, le=86400, description="VOD: seconds from the start of the asset")
    start_date: WallClock | None = Field(None, description="live: wall clock of the break's start (UTC when no "
                                        "offset is given)")
    duration: Number = Field(ge=0, le=600, description="seconds of content the break replaces; 0 inserts "
                            "(pre/post-rolls)")

    @model_validator(mode="after")
    def _placed(self) -> BreakIn:
        if (self.offset is None) == (self.start_date is None):
            raise ValueError("give exactly one of offset (VOD) and start_date (live)")
        return self


class ScheduledBreak(BreakIn):
    id: Id  # type: ignore[assignment]


KeyValues = Annotated[dict[Word, Word | Annotated[list[Word], Field(max_length=32)]], Field(max_length=32)]


class DecisionIn(_Strict):
    session_id: Id
    duration: Duration
    position: PositionName = "mid"
    break_id: Id | None = None
    key_values: KeyValues = Field(default_factory=dict)
    max_ads: Integer = Field(8, ge=1, le=20)


class CompanionResource(BaseModel):
    type: Literal["static", "iframe", "html"]
    value: str = Field(description="URL (static, iframe) or HTML markup (html)")
    creative_type: str | None = Field(None, description="MIME type of a static resource")


class CompanionAd(BaseModel):
    """A VAST companion or non-linear ad, passed through for the player to show (never rendered here)."""

    id: str | None = None
    width: int | None = None
    height: int | None = None
    resource: CompanionResource
    click_through: str | None = None
    click_tracking: list[str] | None = None
    tracking: dict[str, list[str]] | None = None
    ad_slot_id: str | None = None
    min_suggested_duration: float | None = None


class DecidedAd(BaseModel):
    creative_id: str
    advertiser: str
    uri: str
    duration: float
    click_through: str
    rendition_uris: dict[str, str]
    beacons: dict[str, str] = Field(description="event -> URL to GET when it happens (player-side beaconing)")
    companions: list[CompanionAd] = Field(default_factory=list, description="VAST companions (display ads)")
    nonlinears: list[CompanionAd] = Field(default_factory=list, description="VAST non-linear ads (overlays)")


class Decision(BaseModel):
    decision_id: str
    session_id: str
    break_id: str
    duration: float = Field(description="seconds the pod fills")
    ads: list[DecidedAd]
    asset_list_url: str


class Asset(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    URI: str
    DURATION: float
    companions: list[CompanionAd] | None = Field(None, alias="X-COM-SIDECAST-COMPANIONS")
    nonlinears: list[CompanionAd] | None = Field(None, alias="X-COM-SIDECAST-NONLINEAR")


class AssetList(BaseModel):
    ASSETS: list[Asset]


class BeaconResult(BaseModel):
    decision_id: str
    ad_index: int
    event: str
    first: bool = Field(description="true when this call recorded the event; false for a repeat")


class RecordedBeacon(BaseModel):
    ad_index: int
    event: str
    at: float


class DecisionRecord(BaseModel):
    decision: dict[str, object]
    beacons: list[RecordedBeacon]


class TokenIn(_Strict):
    session_id: Id | None = Field(None, description="the viewer the token is for; absent: any viewer "
                                  "(for asset-list URLs written into a shared playlist)")
    ttl: Integer = Field(3600, ge=10, le=86400, description="seconds")


class TokenOut(BaseModel):
    token: str
    expires: int


class Problem(BaseModel):
    detail: str


class Health(BaseModel):
    status: str
    store: str
