"""sidecast core: ingest, decode, sidecar fan-out, encode, package, serve."""

__version__ = "0.1.0"
