# syntax=docker/dockerfile:1.7
# sidecast core: `sidecast server` (many streams: RTMP/SRT listeners, pull sources, one worker per stream, HLS
# out, control API); Debian's libsrt and ffmpeg for SRT.
#
# Build from the repository root (the build context must hold pyproject.toml):
#     docker build -f helm/images/core.Dockerfile -t sidecast-core:0.1.0 .
# The base image is pinned by tag; pin it by digest too when you publish
# (docker buildx imagetools inspect python:3.11.13-slim-bookworm) and pass --build-arg PYTHON_IMAGE=...@sha256:...
ARG PYTHON_IMAGE=python:3.11.13-slim-bookworm

# Stage 1: build sidecast's own wheel (no dependencies) from the checkout.
FROM ${PYTHON_IMAGE} AS wheel
WORKDIR /src
COPY pyproject.toml README.md ./
COPY core/ core/
COPY sidecars/ sidecars/
COPY proto/ proto/
COPY ads/ ads/
COPY hls/ hls/
COPY models/ models/
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

# Stage 2: the runtime image. No compilers, no pip cache, a fixed non-root user (uid/gid 10001).
FROM ${PYTHON_IMAGE}

# Debian's ffmpeg brings libsrt (the core's SRT listener loads it) and bridges SRT caller mode (PyAV's own
# FFmpeg has no SRT protocol).
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ffmpeg \
    && rm -rf /var/lib/apt/lists/*
RUN groupadd --system --gid 10001 sidecast \
    && useradd --system --uid 10001 --gid 10001 --home-dir /tmp --no-create-home \
        --shell /usr/sbin/nologin sidecast
COPY --from=wheel /wheels /wheels
RUN pip install --no-cache-dir --find-links /wheels "sidecast==0.1.0" && rm -rf /wheels
COPY --chmod=0755 helm/images/healthcheck.py /usr/local/bin/sidecast-healthcheck
# HOME=/tmp: libraries that cache things under $HOME write to the one writable place of a read-only root.
ENV PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 HOME=/tmp
RUN mkdir -p /data && chown 10001:10001 /data
USER 10001:10001
WORKDIR /data
EXPOSE 1935/tcp 4200/udp 8080/tcp 8800/tcp
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
    CMD ["sidecast-healthcheck", "http://127.0.0.1:8800/healthz"]
# SIGTERM: every worker finishes the segment in progress, publishes it, and the server exits (in a fleet
# its leases are released, so other replicas take its streams at once).
STOPSIGNAL SIGTERM
ENTRYPOINT ["sidecast"]
# `sidecast server`: any number of streams (created through the control API on 8800), players on 8080,
# RTMP 1935/TCP and SRT 4200/UDP publishers. The chart adds the registry, storage and sidecar addresses.
CMD ["server", "--data-dir=/data", "--api-host=0.0.0.0", "--api-port=8800", "--media-host=0.0.0.0", \
     "--media-port=8080", "--push-host=0.0.0.0", "--rtmp-port=1935", "--srt-port=4200"]
