# ruff: noqa: E402
"""A test sidecar, served as a real separate process: one ``Generic("tick")`` per analysed frame, plus
switches that make it misbehave the ways real plugins do (stall, crash, lie about its version, ask for the
impossible, send malformed results). Run: python tests/plugins/ticker.py --listen unix:///tmp/x.sock [--mode M]
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from sidecast.contract import codec, pb2
from sidecast.sidecars.runtime import (
    BitrateHint,
    Crop,
    Cue,
    Description,
    Generic,
    RenditionHint,
    Result,
    SegmentBoundary,
    Sidecar,
    StreamInfo,
    VideoFeed,
    VideoFrame,
    VideoWants,
)
from sidecast.sidecars.runtime.server import SidecarServicer, build_server


class Ticker(Sidecar):
    name = "ticker"
    version = "1.0.0"
    mode = "normal"
    width = 320
    cue_delay = 0.6  # late-captions: seconds between a cue's frame and its publication

    def describe(self) -> Description:
        fps = 1000.0 if self.mode == "impossible" else 10.0
        if self.mode.startswith("feeds") or self.mode == "thumb-main":
            return self._describe_feeds()
        if self.mode in ("captions", "late-captions"):  # cues only: a caption sidecar without a model
            return Description(name=self.name, version=self.version,
                               video=VideoWants(fps=fps, width=self.width, pixel_format="gray8"),
                               max_latency_ms=500, produces=("cues",), caption_languages=("en",))
        if self.mode == "captions-and-crops":
            # A third-party plugin that is neither "stt" nor "autocrop" by name: what it declares decides
            # which outputs the core makes for it.
            return Description(name=self.name, version=self.version,
                               video=VideoWants(fps=fps, width=self.width, pixel_format="gray8"),
                               max_latency_ms=500, produces=("cues", "crops"), caption_languages=("en",))
        return Description(name=self.name, version=self.version,
                           video=VideoWants(fps=fps, width=self.width, pixel_format="gray8"), max_latency_ms=500,
                           produces=("generic", "bitrate_hints"))

    def _describe_feeds(self) -> Description:
        """Extra video feeds: "feeds" asks for every source frame as a 48x27 RGB thumbnail besides its 10 fps
        main feed; "thumb-main" asks for that thumbnail as its one (main) feed, to share the conversion;
        the other "feeds-*" modes ask for what the core must refuse at Describe time."""
        thumbs = VideoWants(fps=0, width=48, height=27, pixel_format="rgb24")
        main = VideoWants(fps=10.0, width=self.width, pixel_format="gray8")
        if self.mode == "thumb-main":
            return Description(name=self.name, version=self.version, video=thumbs, produces=("generic",))
        extra = {
            "feeds": (VideoFeed("thumbs", thumbs),),
            "feeds-absurd": (VideoFeed("huge", VideoWants(fps=0, width=8000, height=8000, pixel_format="rgb24")),),
            "feeds-unknown-format": (VideoFeed("odd", thumbs),),  # pixel format rewritten on the wire below
            "feeds-too-many": tuple(VideoFeed(f"f{i}", VideoWants(fps=i + 1, width=48, height=27, pixel_format="gray8"))
                                    for i in range(5)),
            "feeds-bad-name": (VideoFeed("Thumbs/../x", thumbs),),
            "feeds-same-twice": (VideoFeed("again", main),),
        }[self.mode]
        return Description(name=self.name, version=self.version, video=main, max_latency_ms=500,
                           produces=("generic",), extra_video=extra)

    def on_extra_video(self, frame: VideoFrame) -> list[Result]:
        self._last_extra = frame.pts
        return [Generic(start=frame.pts, end=frame.pts, kind="feed",
                        data={"feed": frame.feed, "seq": frame.seq, "w": frame.width, "h": frame.height,
                              "fmt": frame.pixel_format, "shape": list(frame.image.shape)})]

    def on_start(self, info: StreamInfo) -> list[Generic]:
        if self.mode == "feeds":
            return [Generic(start=0.0, end=0.0, kind="feeds_delivered", data={"feeds": list(info.video_feeds)})]
        if self.mode != "echo-info":
            return []
        # Echo the ladder as this sidecar decoded it, so a test can see what crossed the wire.
        return [Generic(start=0.0, end=0.0, kind="stream_info",
                        data={"renditions": [{"name": r.name, "max_bitrate": r.max_bitrate, "crf": r.crf,
                                              "rate_control": r.rate_control} for r in info.renditions],
                              "params": dict(info.params)})]

    def on_segment(self, boundary: SegmentBoundary) -> list[BitrateHint]:
        if self.mode == "resize-hints":
            # Every other segment at half the rendition's size (CRF 26), the others at its own size.
            half = boundary.segment % 2 == 0
            return [BitrateHint(segment=boundary.segment, start=boundary.start, end=boundary.end, renditions=tuple(
                RenditionHint(r.name, crf=26.0, max_bitrate=r.max_bitrate,
                              width=r.width // 2 & ~1 if half else 0, height=r.height // 2 & ~1 if half else 0)
                for r in (self.info.renditions if self.info else ())))]
        if self.mode not in ("late-hints", "greedy-hints"):
            return []
        hint = BitrateHint(segment=boundary.segment, start=boundary.start, end=boundary.end,
                           renditions=tuple(RenditionHint(r.name, crf=12.0, max_bitrate=r.max_bitrate * 20)
                                            for r in (self.info.renditions if self.info else ())))
        if self.mode == "late-hints":  # answers 3 s after the segment closed: always past the window
            threading.Timer(3.0, self.publish, args=(hint,)).start()
            return []
        return [hint]

    def on_video(self, frame: VideoFrame) -> list[Result]:
        if self.mode == "late-captions":
            # Each cue decided 0.6 s (--cue-delay) of media after its frame: it comes out with the first frame
            # that far on, while the watermark has moved on with every frame since. Like a recogniser that
            # commits a sentence late, the cue misses the low-latency caption part it belongs to and must ride
            # a later one with its own times. Media time, not a wall-clock timer: a timer left the cue 0.2 s
            # of slack before the watermark covered its end (0.8 s), so on a loaded machine the cue often rode
            # a part after its end, which hls.js shows only if its playhead is still behind the cue.
            pending: list[Cue] = getattr(self, "_pending", [])
            if frame.seq % 10 == 1:
                pending.append(Cue(start=frame.pts, end=frame.pts + 0.8, text=f"tick {frame.seq // 10}",
                                   id=str(frame.seq)))
            due = [c for c in pending if frame.pts >= c.start + self.cue_delay - 1e-6]
            self._pending = [c for c in pending if c not in due]
            return list(due)
        if self.mode in ("captions", "captions-and-crops"):
            out: list[Result] = []
            if frame.seq % 10 == 1:  # one caption a second, on screen for 0.8 s
                out.append(Cue(start=frame.pts, end=frame.pts + 0.8, text=f"tick {frame.seq // 10}", id=str(frame.seq)))
            # a crop window of the source's full height, sliding right: 9:16 of the source frame
            info = self.info
            if info is not None and self.mode == "captions-and-crops":
                h = info.source_height - info.source_height % 2
                w = (h * 9 // 16) & ~1
                x = min(info.source_width - w, int(frame.pts * 40)) & ~1
                out.append(Crop(t=frame.pts, x=max(0, x), y=0, width=w, height=h, mode="tracking"))
            return out
        if self.mode == "fragile":
            # What plugins written against one camera do: assume even sizes and the first frame's geometry.
            if frame.width % 2 or frame.height % 2:
                raise ValueError("height has to be even")
            first = getattr(self, "_first_size", None) or (frame.width, frame.height)
            self._first_size = first
            if first != (frame.width, frame.height):
                raise ValueError("cannot reshape array: the frame changed size")
        if self.mode == "sleep":
            threading.Event().wait()  # stalls forever, like a hung model
        mean = float(frame.image.mean())
        return [Generic(start=frame.pts, end=frame.pts, kind="tick",
                        data={"seq": frame.seq, "mean": round(mean, 2), "w": frame.width, "h": frame.height,
                              "pid": os.getpid(), "feed": frame.feed,
                              "last_extra": getattr(self, "_last_extra", None),
                              "feeds": list(self.info.video_feeds) if self.info else None})]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--listen", required=True)
    ap.add_argument("--mode", default="normal",
                    choices=["normal", "sleep", "impossible", "wrong-version", "malformed", "crash-after",
                             "late-hints", "greedy-hints", "resize-hints", "echo-info", "captions", "late-captions",
                             "captions-and-crops", "fragile", "feeds", "thumb-main", "feeds-absurd",
                             "feeds-unknown-format", "feeds-too-many", "feeds-bad-name", "feeds-same-twice"])
    ap.add_argument("--width", type=int, default=320)
    ap.add_argument("--cue-delay", type=float, default=0.6, help="late-captions: seconds each cue comes late")
    args = ap.parse_args()
    Ticker.mode = args.mode
    Ticker.width = args.width
    Ticker.cue_delay = args.cue_delay

    if args.mode == "wrong-version":
        orig = codec.description_to_pb

        def v2(d: Description) -> object:
            msg = orig(d)
            msg.contract_version = 2
            return msg

        codec.description_to_pb = v2  # this process pretends to be a v2 plugin
    if args.mode == "feeds-unknown-format":
        plain = codec.description_to_pb

        def odd_format(d: Description) -> object:
            msg = plain(d)
            msg.extra_video[0].pixel_format = 99  # a pixel format no contract version defines
            return msg

        codec.description_to_pb = odd_format
    if args.mode == "malformed":
        orig_to_pb = codec.result_to_pb
        count = {"n": 0}

        def sometimes_bad(r: object) -> object:
            count["n"] += 1
            if count["n"] % 3 == 1:
                return pb2.Result(start=1.0, end=0.5)  # no kind set, ends before it starts
            if count["n"] % 3 == 2:
                return pb2.Result(start=0, end=0, generic=pb2.Generic(kind="x", json="{not json"))
            return orig_to_pb(r)

        import sidecast.sidecars.runtime.server as server_mod

        server_mod.codec.result_to_pb = sometimes_bad  # type: ignore[attr-defined]
    if hasattr(pb2.Description(), "extra_note"):
        # Built from a newer v1 .proto (SIDECAST_PROTO_ROOT): fill the fields a v1 core has never seen.
        plain_desc, plain_result = codec.description_to_pb, codec.result_to_pb

        def desc_with_extra(d: Description) -> object:
            msg = plain_desc(d)
            msg.extra_note = "from a newer contract"
            return msg

        def result_with_extra(r: object) -> object:
            msg = plain_result(r)
            msg.extra_score = 0.5
            return msg

        codec.description_to_pb = desc_with_extra
        codec.result_to_pb = result_with_extra
    if args.mode == "crash-after":
        threading.Timer(1.5, lambda: os._exit(3)).start()
    server, port, _ = build_server(Ticker, args.listen)
    server.start()
    print(f"ticker listening {args.listen} {port}", flush=True)
    server.wait_for_termination()


if __name__ == "__main__":
    _ = SidecarServicer
    main()
