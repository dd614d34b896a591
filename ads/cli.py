"""``sidecast ads``: SSAI and SGAI on playlists from the command line (VOD work and scripting).

    sidecast ads stitch video/720p/index.m3u8 --ad ad/video/720p/index.m3u8 --at 30 -o stitched.m3u8
    sidecast ads stitch video/720p/index.m3u8 --ad a/master.m3u8 --ad b/master.m3u8 --at pre -o pod.m3u8
    sidecast ads interstitials video/720p/index.m3u8 --asset-list 'https://ads.example/list?b={break_id}' \
        --at pre --at 30 -o sgai.m3u8
    sidecast ads interstitials video/720p/index.m3u8 --vmap schedule.xml --asset-list URL -o sgai.m3u8
    sidecast ads serve ...        (the decisioning API, from ads/api/cli.py)

Without ``--at`` the playlist's own cue tags (EXT-X-CUE-OUT/IN, SCTE35 DATERANGEs) place the breaks.
Segment URIs in the output are rewritten so they resolve from the output file's folder.
"""

from __future__ import annotations

import argparse
import functools
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path

from sidecast.hls import MasterPlaylist, MediaPlaylist, PlaylistError, Variant, parse, timebase
from sidecast.hls.breaks import Break, breaks_from_playlist
from sidecast.hls.live import atomic_write

from .sgai import add_interstitials
from .ssai import AdMedia, Placement, nearest_variant, pin_byteranges, pin_ivs, stitch

log = logging.getLogger("sidecast.ads.cli")

__all__ = ["configure"]


class CliError(Exception):
    """A problem the user can fix; printed as one line, exit status 2."""


def configure(parser: argparse.ArgumentParser) -> None:
    """SSAI stitching, SGAI interstitials, the ad decisioning API

    Registered as ``sidecast ads`` through the ``sidecast.commands`` entry points.
    """
    sub = parser.add_subparsers(dest="ads_command", metavar="ADS_COMMAND")

    def no_command(args: argparse.Namespace) -> int:
        parser.print_help(sys.stderr)
        return 2

    parser.set_defaults(func=no_command)

    p = sub.add_parser("stitch", help="SSAI: stitch an ad (or a pod of ads) into a VOD media playlist",
                       description="Replace or insert ad segments in a VOD media playlist. With --at, the ads are "
                       "inserted before the first segment that starts at or after each time; without --at, they "
                       "fill the playlist's own cue-tag breaks (trimmed to the break, content resumes after). "
                       "Several --ad make a pod, played in the order given.")
    p.add_argument("media_playlist", metavar="MEDIA_PLAYLIST")
    p.add_argument("--ad", required=True, action="append", metavar="AD_PLAYLIST",
                   help="an ad's HLS media (or master) playlist; repeat for a pod")
    p.add_argument("--at", action="append", default=[], metavar="SECONDS",
                   help="insert the ad at this content time (repeatable; 0 = pre-roll, 'post' = post-roll)")
    p.add_argument("--slate", default=None, metavar="SLATE_PLAYLIST",
                   help="fill what the ad leaves of a cue-tag break with this slate instead of content")
    p.add_argument("-o", "--output", required=True, type=Path, metavar="OUT.m3u8")
    p.set_defaults(func=_guard(_stitch))

    q = sub.add_parser("interstitials", help="SGAI: add HLS Interstitial DATERANGEs to a media playlist",
                       description="Add EXT-X-DATERANGE CLASS=\"com.apple.hls.interstitial\" tags pointing at an "
                       "asset list, one per break (adds EXT-X-PROGRAM-DATE-TIME when the playlist has none).")
    q.add_argument("media_playlist", metavar="MEDIA_PLAYLIST")
    q.add_argument("--asset-list", required=True, metavar="URL",
                   help="X-ASSET-LIST URL; {break_id}, {duration} and {position} are filled in per break")
    q.add_argument("--at", action="append", default=[], metavar="SECONDS",
                   help="a break at this content time (repeatable; 'pre' or 'post' for pre/post-rolls)")
    q.add_argument("--vmap", default=None, metavar="FILE",
                   help="take the breaks from a VMAP 1.0 document (its break ids go into {break_id})")
    q.add_argument("--duration", type=float, default=0.0,
                   help="seconds of content each --at break replaces (default 0: the ad is inserted)")
    q.add_argument("--pdt-start", default="2000-01-01T00:00:00Z",
                   help="EXT-X-PROGRAM-DATE-TIME of the first segment when the playlist has none")
    q.add_argument("-o", "--output", required=True, type=Path, metavar="OUT.m3u8")
    q.set_defaults(func=_guard(_interstitials))

    try:
        from sidecast.ads.api.cli import register
    except ImportError:
        pass
    else:
        register(sub)


def _guard(fn: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        try:
            return fn(args)
        except CliError as exc:
            print(f"sidecast ads: error: {exc}", file=sys.stderr)
            return 2

    return run


def _read_media(path: str, what: str) -> MediaPlaylist:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CliError(f"{what} {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise CliError(f"cannot read {what} {path}: {exc}") from None
    try:
        pl = parse(text)
    except PlaylistError as exc:
        raise CliError(f"{what} {path} is not a valid HLS media playlist: {exc}") from None
    if isinstance(pl, MasterPlaylist):
        raise CliError(f"{what} {path} is a master playlist; give one rendition's media playlist "
                       "(e.g. video/720p/index.m3u8)")
    return pl


def _content_variant(content_path: str) -> Variant | None:
    """The content rendition's own EXT-X-STREAM-INF, from a master.m3u8 up to three folders above it
    (the core's layout puts it two above: master.m3u8, video/<name>/index.m3u8)."""
    target = Path(content_path).resolve()
    for folder in list(target.parents)[:3]:
        m = folder / "master.m3u8"
        if not m.is_file():
            continue
        try:
            master = parse(m.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, PlaylistError):
            continue
        if isinstance(master, MasterPlaylist):
            for v in master.variants:
                if "://" not in v.uri and (folder / v.uri).resolve() == target:
                    return v
    return None


def _ad_media_playlist(ad: str, content_path: str) -> str:
    """The ad's media playlist to use: itself, or from a master the rendition at the content's own path
    in the core's layout (video/<name>/index.m3u8), else the variant nearest the content's rendition by
    resolution and bandwidth (read from the content's master when there is one), else the first."""
    try:
        text = Path(ad).read_text(encoding="utf-8")
    except OSError as exc:
        raise CliError(f"cannot read ad playlist {ad}: {exc}") from None
    try:
        master = parse(text)
    except PlaylistError as exc:
        raise CliError(f"ad playlist {ad} is not valid HLS: {exc}") from None
    if not isinstance(master, MasterPlaylist):
        return ad
    parts = Path(content_path).resolve().parts
    base = Path(ad).resolve().parent
    for n in (3, 2):
        if len(parts) >= n:
            cand = base.joinpath(*parts[-n:])
            if cand.is_file():
                return str(cand)
    vids = master.variants
    if not vids:
        raise CliError(f"ad master {ad} lists no variant")
    return str(base / nearest_variant(vids, _content_variant(content_path)).uri)


def _rebase(uri: str, src_dir: Path, out_dir: Path) -> str:
    """A URI relative to ``src_dir`` → one that resolves the same from ``out_dir``."""
    if "://" in uri or uri.startswith("/"):
        return uri
    return os.path.relpath((src_dir / uri).resolve(), out_dir.resolve())


def _parse_at(values: list[str], total: float, duration: float) -> list[Break]:
    out = []
    for v in values:
        if v.lower() == "pre":
            t = 0.0
        elif v.lower() == "post":
            t = total
        else:
            try:
                t = float(v)
            except ValueError:
                raise CliError(f"--at {v!r}: give seconds, 'pre' or 'post'") from None
        if t < 0 or t > total + 1e-6:
            raise CliError(f"--at {v}: outside the playlist (0 to {total:.3f} s)")
        pos = "pre" if t <= 1e-6 else "post" if t >= total - 1e-6 else "mid"
        out.append(Break(f"at-{t:g}", t, 0.0 if pos != "mid" else duration, pos, None, "cli"))  # type: ignore[arg-type]
    return out


def _stitch(args: argparse.Namespace) -> int:
    content = _read_media(args.media_playlist, "media playlist")
    if not content.endlist:
        raise CliError(f"{args.media_playlist} is a live playlist (no EXT-X-ENDLIST); `ads stitch` works on "
                       "VOD — live streams are stitched per session by the manifest service")
    out_dir = args.output.resolve().parent
    src_dir = Path(args.media_playlist).resolve().parent
    content_container = _container(content)
    pod: list[AdMedia] = []
    ad_uris: set[str] = set()
    for n, ad_arg in enumerate(args.ad):
        ad_path = _ad_media_playlist(ad_arg, args.media_playlist)
        ad = _read_media(ad_path, "ad playlist")
        if not ad.segments:
            raise CliError(f"ad playlist {ad_path} has no segments")
        if _container(ad) != content_container:
            raise CliError(f"ad {ad_path} is {_container(ad)} but {args.media_playlist} is {content_container}: "
                           "a player cannot switch containers at a splice; condition the ad to the content's")
        ad_dir = Path(ad_path).resolve().parent
        # its own IVs and byte ranges written out: they must not depend on where its segments land
        ad = pin_byteranges(pin_ivs(ad)).with_uris(functools.partial(_rebase, src_dir=ad_dir, out_dir=out_dir))
        pod.append(AdMedia(f"ad{n}", tuple(ad.segments)))
        ad_uris.update(s.uri for s in ad.segments)
    content = content.with_uris(lambda u: _rebase(u, src_dir, out_dir))
    slate = None
    if args.slate:
        sl = _read_media(args.slate, "slate playlist")
        if not sl.segments:
            raise CliError(f"slate playlist {args.slate} has no segments")
        slate = sl.with_uris(lambda u: _rebase(u, Path(args.slate).resolve().parent, out_dir)).segments[0]
    if args.at:
        breaks = _parse_at(args.at, content.duration, 0.0)
    else:
        breaks = breaks_from_playlist(content)
        if not breaks:
            raise CliError(f"no --at given and {args.media_playlist} has no cue tags (EXT-X-CUE-OUT or SCTE35 "
                           "DATERANGE) to place breaks")
    result = stitch(content, [Placement(b, tuple(pod), slate) for b in breaks])
    atomic_write(args.output, result.playlist.dumps())
    n_ad = sum(1 for s in result.playlist.segments if s.uri in ad_uris)
    print(f"stitched {len(breaks)} break(s), {n_ad} ad segment(s) from a pod of {len(pod)} ad(s) → {args.output}")
    return 0


def _container(pl: MediaPlaylist) -> str:
    return "fMP4" if any(s.init_section is not None for s in pl.segments[:1]) else "MPEG-TS"


def _vmap_breaks(path: str, total: float) -> list[Break]:
    # imported here: the VMAP reader needs defusedxml, part of the [ads] extra, which stitching does not
    from .vmap import VmapError, parse_vmap
    from .vmap import schedule as vmap_schedule

    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise CliError(f"cannot read VMAP {path}: {exc}") from None
    try:
        doc = parse_vmap(data)
    except VmapError as exc:
        raise CliError(f"{path} is not a usable VMAP document: {exc}") from None
    breaks = [b for b, _ in vmap_schedule(doc, total)]
    if not breaks:
        raise CliError(f"VMAP {path} has no linear break with an ad source"
                       + (f" ({len(doc.ignored)} ignored: {doc.ignored[0]})" if doc.ignored else ""))
    return breaks


def _interstitials(args: argparse.Namespace) -> int:
    content = _read_media(args.media_playlist, "media playlist")
    out_dir = args.output.resolve().parent
    src_dir = Path(args.media_playlist).resolve().parent
    content = content.with_uris(lambda u: _rebase(u, src_dir, out_dir))
    try:
        pdt_start = timebase.parse_pdt(args.pdt_start)
    except ValueError:
        raise CliError(f"--pdt-start {args.pdt_start!r} is not an ISO 8601 date-time") from None
    if args.duration < 0:
        raise CliError("--duration must not be negative")
    if "://" not in args.asset_list:
        raise CliError(f"--asset-list {args.asset_list!r} must be an absolute http(s) URL")
    if args.vmap and args.at:
        raise CliError("give --at or --vmap, not both")
    if args.vmap:
        breaks = _vmap_breaks(args.vmap, content.duration)
    elif args.at:
        breaks = _parse_at(args.at, content.duration, args.duration)
    else:
        breaks = breaks_from_playlist(content)
        if not breaks:
            raise CliError(f"no --at given and {args.media_playlist} has no cue tags to place breaks")
    try:
        out = add_interstitials(content, breaks, args.asset_list, pdt_start)
    except (PlaylistError, ValueError) as exc:
        raise CliError(str(exc)) from None
    atomic_write(args.output, out.dumps())
    print(f"added {len(breaks)} interstitial(s) → {args.output}")
    return 0
