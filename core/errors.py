"""Errors a user can act on. The CLI prints their message as one line and exits with ``exit_code``."""

from __future__ import annotations


class SidecastError(Exception):
    exit_code = 1


class SourceError(SidecastError):
    """The source cannot be opened, decoded or reached."""

    exit_code = 2


class ConfigError(SidecastError):
    """Options that cannot work together or values out of range."""

    exit_code = 2
