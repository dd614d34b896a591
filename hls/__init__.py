"""HLS and broadcast signalling, shared by the core and the ads module (placeholder: filled in next)."""
