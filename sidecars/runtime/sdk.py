"""The plugin SDK: subclass ``Sidecar``, describe what you want, return results from handlers.

A sidecar is a small class::

    class SceneCut(Sidecar):
        name = "scenecut"
        version = "1.0.0"

        def describe(self) -> Description:
            return Description(name=self.name, version=self.version,
                               video=VideoWants(fps=10, width=160, pixel_format="gray8"))

        def on_video(self, frame: VideoFrame) -> list[Result]:
            ...
            return [Generic(start=frame.pts, end=frame.pts, kind="scene_cut", data={"score": s})]

The runtime (``server.py``) creates one instance per media stream, calls the handlers in order on one
thread, sends what they return to the core, and keeps the core informed of how far it has got (the
watermark), so the core's decision window closes as soon as every sidecar is done with a segment.
Handlers may also hand results over later, from any thread, with ``self.publish(result)``.

Third-party sidecars register through the ``sidecast.sidecars`` entry-point group::

    [project.entry-points."sidecast.sidecars"]
    mysidecar = "my_package.module:MySidecar"

and are then served with ``sidecast sidecar mysidecar --listen ADDR`` and started by
``sidecast run SOURCE --sidecars mysidecar``.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterable
from importlib import metadata
from typing import Any, ClassVar

from sidecast.contract.records import (
    SIDECAR_ENTRY_POINTS,
    AudioChunk,
    Description,
    Outgoing,
    SegmentBoundary,
    StreamInfo,
    VideoFrame,
)

ENTRY_POINT_GROUP = SIDECAR_ENTRY_POINTS

Handled = Iterable[Outgoing] | None


class Sidecar:
    """Base class of every sidecar. Override ``describe`` and the handlers you need."""

    name: ClassVar[str] = "sidecar"
    version: ClassVar[str] = "0.0.0"

    def __init__(self, **options: Any) -> None:
        self.options = options
        self.info: StreamInfo | None = None
        self._publish: Callable[[Outgoing], None] | None = None

    # ------------------------------------------------------------ what to override

    def describe(self) -> Description:
        raise NotImplementedError(f"{type(self).__name__} must implement describe()")

    def on_start(self, info: StreamInfo) -> Handled:
        """A stream starts; ``self.info`` is already set."""
        return None

    def on_source_change(self, info: StreamInfo) -> Handled:
        """The source changed mid-stream (picture size, frame rate); ``self.info`` is already the new one.

        Frames after this call have the new size. The default re-initialises a sidecar that analyses video
        by calling ``on_start`` again; one that only listens keeps its state."""
        return self.on_start(info) if self.describe().video is not None else None

    def on_video(self, frame: VideoFrame) -> Handled:
        """A frame of the main feed (``Description.video``)."""
        return None

    def on_extra_video(self, frame: VideoFrame) -> Handled:
        """A frame of an extra feed (``Description.extra_video``); ``frame.feed`` names it. For one source
        frame the extra feeds' frames come before the main feed's, so when ``on_video`` gets a frame, every
        extra-feed frame up to its time has been handled (a slow sidecar may have had some dropped).
        ``self.info.video_feeds`` lists the feeds the core delivers: empty from a core older than extra
        feeds, which sends the main feed only (the runtime logs that once)."""
        return None

    def on_audio(self, chunk: AudioChunk) -> Handled:
        return None

    def on_segment(self, boundary: SegmentBoundary) -> Handled:
        """The core closed a segment: everything up to ``boundary.end`` has been sent."""
        return None

    def on_discontinuity(self, pts: float) -> Handled:
        """The source dropped and came back at media time ``pts``: reset any state that assumes continuity."""
        return None

    def on_end(self) -> Handled:
        """The stream ended: flush whatever is pending."""
        return None

    def watermark(self) -> float | None:
        """Media time up to which this sidecar has published everything it will publish.

        None lets the runtime use the end of the last media handled, which is right for sidecars that
        answer synchronously. A sidecar that answers later (speech recognition commits text seconds after
        the audio) returns how far its committed output reaches.
        """
        return None

    # ------------------------------------------------------------ CLI hooks

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        """Add this sidecar's own options to ``sidecast sidecar NAME``."""

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Callable[[], Sidecar]:
        """Return a factory of instances configured from parsed CLI options (one instance per stream)."""
        return cls

    # ------------------------------------------------------------ runtime side

    def publish(self, result: Outgoing) -> None:
        """Send a result now, from any thread (e.g. a background decoder)."""
        if self._publish is None:
            raise RuntimeError("publish() is only available while a stream is running")
        self._publish(result)


class UnknownSidecar(LookupError):
    pass


def available() -> dict[str, metadata.EntryPoint]:
    """Every sidecar registered in the entry-point group, by name."""
    return {ep.name: ep for ep in metadata.entry_points(group=ENTRY_POINT_GROUP)}


def load(name: str) -> type[Sidecar]:
    """Import a registered sidecar class, with an error that lists what is installed."""
    eps = available()
    if name not in eps:
        known = ", ".join(sorted(eps)) or "none"
        raise UnknownSidecar(f"no sidecar named {name!r} is installed (installed: {known})")
    try:
        cls = eps[name].load()
    except Exception as exc:  # an installed plugin that fails to import must name itself
        raise UnknownSidecar(f"sidecar {name!r} ({eps[name].value}) failed to import: {exc}") from exc
    if not (isinstance(cls, type) and issubclass(cls, Sidecar)):
        raise UnknownSidecar(f"entry point {name!r} is {cls!r}, not a Sidecar subclass")
    return cls
