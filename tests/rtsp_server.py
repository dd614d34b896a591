"""A real RTSP server for tests: GStreamer's gst-rtsp-server serving one MP4 (H.264 + optional AAC) at
``rtsp://127.0.0.1:PORT/clip``, paced in real time, without re-encoding.

Run it with Debian's ``/usr/bin/python3`` (PyGObject and the GStreamer typelibs are Debian packages, not
in the project's virtualenv). It prints ``ready`` once it listens, ``play`` when it prepares a client's stream
and ``eos`` when the clip has been sent; then it stops serving and exits, so a client sees the stream end
instead of the clip starting again on its next connection.

    /usr/bin/python3 tests/rtsp_server.py --port 8554 --file clip.mp4 [--no-audio]
"""

from __future__ import annotations

import argparse
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402


def launch_line(path: str, audio: bool) -> str:
    # config-interval=-1: SPS/PPS ride with every IDR, so a decoder can start at any keyframe.
    video = "d.video_0 ! queue ! h264parse ! rtph264pay name=pay0 pt=96 config-interval=-1"
    line = f"( filesrc location={path} ! qtdemux name=d {video}"
    if audio:
        line += " d.audio_0 ! queue ! aacparse ! rtpmp4gpay name=pay1 pt=97"
    return line + " )"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--file", required=True)
    p.add_argument("--mount", default="/clip")
    p.add_argument("--no-audio", action="store_true")
    args = p.parse_args()

    Gst.init(None)
    loop = GLib.MainLoop()
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(args.port))
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(launch_line(args.file, not args.no_audio))
    pending = {"pay0"} | (set() if args.no_audio else {"pay1"})

    def on_eos(pad: Gst.Pad, info: Gst.PadProbeInfo, name: str) -> Gst.PadProbeReturn:
        event = info.get_event()
        if event is not None and event.type == Gst.EventType.EOS:
            pending.discard(name)
            if not pending:
                print("eos", flush=True)
                # Serve the clip once: a client that reconnects now gets 404, then (once the sockets have
                # drained the last packets) nothing listens at all.
                server.get_mount_points().remove_factory(args.mount)
                GLib.timeout_add(500, loop.quit)
        return Gst.PadProbeReturn.OK

    def on_configure(_factory: GstRtspServer.RTSPMediaFactory, media: GstRtspServer.RTSPMedia) -> None:
        bin_ = media.get_element()
        for name in sorted(pending):
            pay = bin_.get_by_name(name)
            pay.get_static_pad("src").add_probe(Gst.PadProbeType.EVENT_DOWNSTREAM, on_eos, name)
        print("play", flush=True)

    factory.connect("media-configure", on_configure)
    server.get_mount_points().add_factory(args.mount, factory)
    if server.attach(None) == 0:
        print(f"cannot listen on 127.0.0.1:{args.port}", file=sys.stderr, flush=True)
        return 1
    print("ready", flush=True)
    loop.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
