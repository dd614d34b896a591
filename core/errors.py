"""Errors a user can act on, as the core raises them: the project's error tree (``sidecast.contract.errors``)."""

from __future__ import annotations

from sidecast.contract.errors import ConfigError, SidecastError, SourceError

__all__ = ["SidecastError", "SourceError", "ConfigError"]
