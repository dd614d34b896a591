"""The wire format of the decisioning API (pydantic models): what the OpenAPI document shows and what
requests are validated against. Strict by design: unknown fields, out-of-range numbers and non-http(s) URLs
are refused with a 422 that names the field, before any handler runs.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StringConstraints, model_validator

Id = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]
Url = Annotated[str, StringConstraints(pattern=r"^https?://[!-~]+$", max_length=2048)]  # ASCII: percent-encode the rest
Word = Annotated[str, StringConstraints(min_length=1, max_length=128)]
Text = Annotated[str, StringConstraints(max_length=256)]
EventName = Literal["impression", "start", "firstQuartile", "midpoint", "thirdQuartile", "complete", "error"]
PositionName = Literal["pre", "mid", "post"]
Tracking = Annotated[dict[EventName, Annotated[list[Url], Field(max_length=16)]], Field(max_length=8)]
Targeting = Annotated[dict[Word, Annotated[list[Word], Field(min_length=1, max_length=64)]], Field(max_length=32)]
Duration = Annotated[float, Field(gt=0, le=600, description="seconds")]


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
    start: datetime | None = Field(None, description="flight start (UTC when no offset is given)")
    end: datetime | None = Field(None, description="flight end, exclusive")
    priority: int = Field(5, ge=1, le=10, description="1 is the most important, 10 the least")
    targeting: Targeting = Field(default_factory=dict,
                                 description="key -> allowed values; every key must match one value")
    positions: Annotated[list[PositionName], Field(min_length=1, max_length=3)] = Field(
        default_factory=_all_positions)
    frequency_cap: int | None = Field(None, ge=1, le=10_000, description="most ads per session from this campaign")
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
    vast_url: Url = Field(description="VAST tag URL template; macros: [CACHEBUSTING], [TIMESTAMP], [SESSION_ID], "
                          "[BREAKMAXDURATION], [BREAKPOSITION], [BREAK_ID]")
    priority: int = Field(5, ge=1, le=10)
    targeting: Targeting = Field(default_factory=dict)
    positions: Annotated[list[PositionName], Field(min_length=1, max_length=3)] = Field(
        default_factory=_all_positions)
    frequency_cap: int | None = Field(None, ge=1, le=10_000)
    enabled: StrictBool = True  # 1 or "true" is refused, as the schema says


class Source(SourceIn):
    id: Id  # type: ignore[assignment]


KeyValues = Annotated[dict[Word, Word | Annotated[list[Word], Field(max_length=32)]], Field(max_length=32)]


class DecisionIn(_Strict):
    session_id: Id
    duration: Duration
    position: PositionName = "mid"
    break_id: Id | None = None
    key_values: KeyValues = Field(default_factory=dict)
    max_ads: int = Field(8, ge=1, le=20)


class DecidedAd(BaseModel):
    creative_id: str
    advertiser: str
    uri: str
    duration: float
    click_through: str
    rendition_uris: dict[str, str]
    beacons: dict[str, str] = Field(description="event -> URL to GET when it happens (player-side beaconing)")


class Decision(BaseModel):
    decision_id: str
    session_id: str
    break_id: str
    duration: float = Field(description="seconds the pod fills")
    ads: list[DecidedAd]
    asset_list_url: str


class Asset(BaseModel):
    URI: str
    DURATION: float


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
    ttl: int = Field(3600, ge=10, le=86400, description="seconds")


class TokenOut(BaseModel):
    token: str
    expires: int


class Problem(BaseModel):
    detail: str


class Health(BaseModel):
    status: str
    store: str
