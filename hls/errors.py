"""The errors of the HLS layer, in the project's one error tree (``sidecast.contract.errors``).

Both are ``ValueError``s as well, so code that guards a parse with ``except ValueError`` keeps working; each
message says what was wrong and where, in one line a user can act on.
"""

from __future__ import annotations

from sidecast.contract.errors import SidecastError


class PlaylistError(SidecastError, ValueError):
    """The text is not an HLS playlist this package can work with (or a value cannot be written to one)."""


class CueError(SidecastError, ValueError):
    """A SCTE-35 cue that cannot be used (malformed, wrong table, bad CRC, unsupported command)."""


__all__ = ["CueError", "PlaylistError"]
