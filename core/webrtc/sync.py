"""A/V sync for WebRTC ingest: RTP timestamps to one sender clock, through RTCP sender reports.

Each RTP stream counts in its own clock (90 kHz video, 48 kHz Opus) from a random start, so the
timestamps of audio and video cannot be compared directly. A sender report (RFC 3550 6.4.1) pairs one RTP
timestamp of a stream with the sender's wall clock (NTP); with one report per stream both map onto the
sender's clock, where a frame's time is when it was captured. That is lip sync as the publisher meant it,
whatever the network or the encoders delayed.

aiortc hands frames out with ``pts`` = RTP ticks since the stream's first frame (its ``origin``, a raw
32-bit RTP timestamp, unwrapped afterwards), so a stream maps as

    sender_time(pts) = pts / rate + offset,  offset = ntp(report) - signed32(report.rtp - origin) / rate

Until every stream has a report, a session holds its frames (``SYNC_WAIT_S`` at most). A publisher that
sends no report in time is mapped by arrival instead: each stream's earliest ``arrival - pts / rate``,
which is right to within the network and encoder delays.
"""

from __future__ import annotations

from dataclasses import dataclass, field

SYNC_WAIT_S = 3.0
"""How long a new session holds its media waiting for sender reports. Chrome sends its first report
within about a second; the frames held are then published at once, so this adds nothing to latency
after the first segment."""


def ntp_seconds(ntp: int) -> float:
    """A 64-bit NTP timestamp (32.32 fixed point) as seconds."""
    return (ntp >> 32) + (ntp & 0xFFFFFFFF) / 2**32


def signed32(x: int) -> int:
    """A difference of 32-bit RTP timestamps, taken the short way round the wrap."""
    return ((x + 2**31) % 2**32) - 2**31


@dataclass
class StreamSync:
    """One RTP stream: its clock rate, the raw timestamp of its first frame, its first sender report."""

    rate: int
    origin: int | None = None
    report: tuple[float, int] | None = None   # (NTP seconds, raw RTP timestamp)
    earliest: float | None = None             # min over frames of arrival - pts / rate

    def on_report(self, ntp: int, rtp: int) -> None:
        if self.report is None:
            self.report = (ntp_seconds(ntp), rtp & 0xFFFFFFFF)

    def on_frame(self, pts: int, arrival: float) -> None:
        base = arrival - pts / self.rate
        self.earliest = base if self.earliest is None else min(self.earliest, base)

    @property
    def report_offset(self) -> float | None:
        """Seconds to add to ``pts / rate`` to get the sender's clock, once a report and the origin are known."""
        if self.report is None or self.origin is None:
            return None
        ntp, rtp = self.report
        return ntp - signed32(rtp - self.origin) / self.rate


@dataclass
class SessionSync:
    """The streams of one publisher session, and the mapping chosen once for all of them."""

    streams: dict[str, StreamSync] = field(default_factory=dict)
    mode: str | None = None               # "rtcp" | "arrival", once decided
    offsets: dict[str, float] = field(default_factory=dict)
    epoch: float = 0.0                    # subtracted so that times stay small floats

    def ready(self) -> bool:
        """Every stream has a report and an origin: the RTCP mapping can be fixed now."""
        return bool(self.streams) and all(s.report_offset is not None for s in self.streams.values())

    def decide(self) -> str:
        """Fix the mapping: RTCP when every stream has a report, else arrival for every stream (never a mix:
        the two are different clocks)."""
        if self.mode is not None:
            return self.mode
        if self.ready():
            self.mode = "rtcp"
            self.offsets = {k: s.report_offset for k, s in self.streams.items()}  # type: ignore[misc]
        else:
            self.mode = "arrival"
            self.offsets = {k: (s.earliest if s.earliest is not None else 0.0) for k, s in self.streams.items()}
        self.epoch = min(self.offsets.values(), default=0.0)
        return self.mode

    def time(self, kind: str, pts: int) -> float:
        """A frame's time on the sender's clock (minus ``epoch``), in seconds; ``decide`` first."""
        s = self.streams[kind]
        return pts / s.rate + (self.offsets[kind] - self.epoch)


__all__ = ["SYNC_WAIT_S", "SessionSync", "StreamSync", "ntp_seconds", "signed32"]
