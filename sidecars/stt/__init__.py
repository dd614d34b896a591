"""The stt sidecar: live captions with faster-whisper. ``SttSidecar`` is the registered entry point
(``sidecast sidecar stt``); ``docs/captions.md`` explains models, languages, guards and carriage."""

from .sidecar import SttSidecar

__all__ = ["SttSidecar"]
