"""Records shared by the ad modules: pods (which ads) and beacons (what was seen).

The stitcher (SSAI), the interstitial signaler (SGAI) and the decisioning API all speak these, so that a
break found in SCTE-35 becomes the same decision whether a server stitches it or a player fetches it. The
break itself (where ads go) is ``sidecast.hls.breaks.Break``, the record the core schedules and signals.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

BeaconEvent = Literal["impression", "start", "firstQuartile", "midpoint", "thirdQuartile", "complete", "error"]


@dataclass(frozen=True)
class PodAd:
    """One ad chosen for a break: a creative, where its (conditioned) media lives, and its beacons."""

    creative_id: str
    duration: float
    uri: str                                   # HLS master/media playlist or media file of the ad
    advertiser: str = ""
    click_through: str = ""
    tracking: dict[str, list[str]] = field(default_factory=dict)  # BeaconEvent -> URLs
    rendition_uris: dict[str, str] = field(default_factory=dict)  # rendition name -> media playlist URI


@dataclass(frozen=True)
class AdPod:
    """The ads that fill one break for one session, in play order."""

    break_id: str
    session_id: str
    ads: tuple[PodAd, ...] = ()
    decision_id: str = ""

    @property
    def duration(self) -> float:
        return sum(a.duration for a in self.ads)
