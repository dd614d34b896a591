"""``sidecast server``: many live streams, one control plane (docs/server.md)."""
