"""9:16 auto-cropping sidecar: detection (``detect``) -> decision (``decide``) -> smoothing (``smooth``).

``AutocropSidecar`` is the registered entry point (``autocrop = "sidecast.sidecars.autocrop:AutocropSidecar"``).
"""

from .sidecar import AutocropSidecar

__all__ = ["AutocropSidecar"]
