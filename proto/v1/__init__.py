"""Generated from ``proto/sidecast/sidecar/v1/sidecar.proto`` by ``scripts/generate_proto.py``: do not edit.

Import the modules through ``sidecast.contract`` (``pb2``, ``pb2_grpc``), not from here."""
