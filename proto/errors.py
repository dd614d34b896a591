"""sidecast's one error tree. Every error a user can act on derives from ``SidecastError``; the CLI prints
its message as one line and exits with ``exit_code`` (a traceback means a bug in sidecast).

The tree lives in the contract layer because every part raises into it: the core (``SourceError``), the
sidecars (``ConfigError`` for bad options), the contract itself (``ContractError``), the ads module and
the HLS model (their parse errors).
"""

from __future__ import annotations


class SidecastError(Exception):
    """The root: an error with a message a user can act on."""

    exit_code = 1


class ConfigError(SidecastError):
    """Options that cannot work together or values out of range."""

    exit_code = 2


class SourceError(SidecastError):
    """The source cannot be opened, decoded or reached."""

    exit_code = 2


class ContractError(SidecastError, ValueError):
    """A peer sent something the v1 sidecar contract does not allow."""


class MissingExtra(SidecastError):
    """A command or feature needs an optional dependency group (``pip install 'sidecast[NAME]'``)."""

    exit_code = 2

    def __init__(self, extra: str, what: str) -> None:
        self.extra = extra
        super().__init__(f"{what} needs the [{extra}] extra: pip install 'sidecast[{extra}]'")


__all__ = ["SidecastError", "ConfigError", "SourceError", "ContractError", "MissingExtra"]
