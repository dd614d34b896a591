#!/usr/bin/env python3
"""Container health check for the sidecast images: exit 0 when the component answers, 1 when it does not.

Docker's HEALTHCHECK runs a command inside the container, and the slim base images have no curl or
grpc_health_probe, so this one small script covers both kinds of component:

    sidecast-healthcheck http://127.0.0.1:8080/healthz       core and ads API (HTTP 200 = healthy)
    sidecast-healthcheck grpc://127.0.0.1:50051              a sidecar (grpc.health.v1, service "")
    sidecast-healthcheck grpc://127.0.0.1:50051/SERVICE      a sidecar, one named service

Kubernetes does not use it (the chart declares native httpGet and grpc probes); it is for `docker run`.
"""

from __future__ import annotations

import sys
import urllib.request
from urllib.parse import urlsplit

TIMEOUT_S = 3.0


def check_http(url: str) -> str | None:
    """None when the URL answers 200, else why not (one line)."""
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_S) as resp:  # noqa: S310 - the URL is ours
            return None if resp.status == 200 else f"HTTP {resp.status}"
    except Exception as exc:  # any failure means unhealthy; say which
        return f"{type(exc).__name__}: {exc}"


def check_grpc(target: str, service: str) -> str | None:
    """None when the gRPC health service reports SERVING for ``service``, else why not."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    try:
        with grpc.insecure_channel(target) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            resp = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=TIMEOUT_S)
    except grpc.RpcError as exc:
        return f"gRPC {exc.code().name}: {exc.details()}"
    if resp.status != health_pb2.HealthCheckResponse.SERVING:
        return f"status {health_pb2.HealthCheckResponse.ServingStatus.Name(resp.status)}"
    return None


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: sidecast-healthcheck http://HOST:PORT/PATH | grpc://HOST:PORT[/SERVICE]", file=sys.stderr)
        return 2
    url = argv[0]
    parts = urlsplit(url)
    if parts.scheme in ("http", "https"):
        problem = check_http(url)
    elif parts.scheme == "grpc" and parts.netloc:
        problem = check_grpc(parts.netloc, parts.path.lstrip("/"))
    else:
        print(f"sidecast-healthcheck: error: unsupported address {url!r}", file=sys.stderr)
        return 2
    if problem:
        print(f"unhealthy: {url}: {problem}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
