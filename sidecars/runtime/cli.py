"""``sidecast sidecar NAME --listen ADDR`` and ``sidecast sidecars``, registered with the ``sidecast``
command through the ``sidecast.commands`` entry points (the core never imports the sidecars)."""

from __future__ import annotations

import argparse

from sidecast.contract.errors import SidecastError

from .sdk import UnknownSidecar, available, load


def configure_sidecar(parser: argparse.ArgumentParser) -> None:
    """serve one registered sidecar over gRPC

    Serve a sidecar (built-in or a plugin from the sidecast.sidecars entry points). `sidecast sidecars`
    lists them; `sidecast sidecar NAME --help` shows NAME's options.
    """
    parser.add_argument("sidecar_name", metavar="NAME")
    parser.add_argument("sidecar_args", nargs=argparse.REMAINDER, help="--listen ADDR and NAME's own options")
    parser.set_defaults(func=_serve_sidecar)


def configure_list(parser: argparse.ArgumentParser) -> None:
    """list installed sidecars, or check one against the contract (--check)"""
    parser.add_argument("--check", metavar="NAME_OR_ADDR", default=None,
                        help="run the conformance kit (odd, tiny, huge and changing frame sizes; odd audio chunks) "
                             "against an installed sidecar (started for the check) or one listening at ADDR")
    parser.set_defaults(func=_list_sidecars)


def sidecar_parser(name: str) -> argparse.ArgumentParser:
    """The parser of one sidecar's options; built only when that sidecar is asked for (imports are heavy)."""
    try:
        cls = load(name)
    except UnknownSidecar as exc:
        raise SidecastError(str(exc)) from exc
    p = argparse.ArgumentParser(prog=f"sidecast sidecar {name}", description=cls.__doc__)
    p.add_argument("--listen", required=True, help="unix:///path.sock, /path.sock, host:port or :port")
    p.add_argument("--max-streams", type=int, default=32, metavar="N",
                   help="media streams served at once (each Stream call holds a thread; `sidecast server` "
                        "shares one sidecar process among all its streams). Default 32")
    cls.add_arguments(p)
    p.set_defaults(_sidecar_cls=cls)
    return p


def _serve_sidecar(args: argparse.Namespace) -> int:
    from .server import serve

    parser = sidecar_parser(args.sidecar_name)
    own = parser.parse_args(args.sidecar_args)
    factory = own._sidecar_cls.from_args(own)
    if not 1 <= own.max_streams <= 4096:
        raise SidecastError(f"--max-streams must be between 1 and 4096, not {own.max_streams}")
    try:
        serve(factory, own.listen, max_streams=own.max_streams)
    except OSError as exc:
        raise SidecastError(f"cannot listen on {own.listen}: {exc}") from exc
    return 0


def _check(what: str) -> int:
    import subprocess
    import sys
    import tempfile
    from pathlib import Path

    from .conformance import check

    proc = None
    target = what
    tmp = None
    if what in available():
        tmp = tempfile.TemporaryDirectory(prefix="sidecast-check-")
        target = f"unix://{Path(tmp.name) / 'sidecar.sock'}"
        proc = subprocess.Popen([sys.executable, "-m", "sidecast.core.cli", "sidecar", what, "--listen", target],
                                stdout=subprocess.DEVNULL)
    try:
        desc, findings = check(target)
    except Exception as exc:
        raise SidecastError(f"cannot check {what}: {exc}") from exc
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=15)
        if tmp is not None:
            tmp.cleanup()
    for f in findings:
        print(f"FAIL  {f}")
    print(f"{desc.name} {desc.version}: {'conformant' if not findings else f'{len(findings)} problem(s)'}")
    return 0 if not findings else 1


def _list_sidecars(args: argparse.Namespace) -> int:
    if args.check:
        return _check(args.check)
    for name, ep in sorted(available().items()):
        try:
            d = load(name)().describe()
            wants = ", ".join(w for w, v in (("video", d.video), ("audio", d.audio)) if v is not None)
            print(f"{name:12s} {d.version:8s} wants {wants:12s} {d.description}")
        except Exception as exc:
            print(f"{name:12s} (failed to load: {exc})  [{ep.value}]")
    return 0


__all__ = ["configure_sidecar", "configure_list", "sidecar_parser"]
