# syntax=docker/dockerfile:1
#
# A Tempering GPU worker: `temper worker`, one Celery worker process with one job at a time
# (concurrency 1, fixed by workers.celery_app.worker_command). Run one container per GPU.
#
# Build from the repository root:
#   docker build -f deploy/docker/worker.Dockerfile -t tempering-worker:0.1.0 .
#
# torch 2.13.0 from PyPI is a CUDA 13.0 build that brings its own CUDA libraries and cuDNN
# (cuda-toolkit and nvidia-cudnn-cu13 wheels), so the base only needs the CUDA runtime image's
# driver wiring and its NVIDIA_REQUIRE_CUDA check (host driver >= 580), not a second cuDNN.
# The same image runs on a machine without a GPU: the engine then uses the CPU.
# Pin the digest too for reproducible builds: --build-arg CUDA_IMAGE=nvidia/cuda:...@sha256:...
ARG CUDA_IMAGE=nvidia/cuda:13.0.1-runtime-ubuntu22.04
ARG TORCH_VERSION=2.13.0

# ---- build: the project's wheel only (its dependencies come from the index below) ----------
FROM ${CUDA_IMAGE} AS build
ARG DEBIAN_FRONTEND=noninteractive
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3.11 python3.11-venv \
    && rm -rf /var/lib/apt/lists/*
RUN python3.11 -m venv --upgrade-deps /opt/build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY proto ./proto
COPY client ./client
COPY service ./service
COPY workers ./workers
RUN /opt/build/bin/pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

# ---- runtime --------------------------------------------------------------------------------
FROM ${CUDA_IMAGE} AS runtime
ARG DEBIAN_FRONTEND=noninteractive
ARG TORCH_VERSION
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/opt/venv/bin:$PATH \
    HOME=/var/lib/tempering \
    MPLBACKEND=Agg \
    TEMPERING_STATE_DIR=/var/lib/tempering \
    TEMPERING_ARTIFACT_DIR=/artifacts
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3.11 python3.11-venv ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && python3.11 -m venv --upgrade-deps /opt/venv \
    && groupadd --system --gid 10001 tempering \
    && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/tempering \
        --shell /usr/sbin/nologin tempering \
    && mkdir -p /var/lib/tempering /artifacts \
    && chown 10001:10001 /var/lib/tempering /artifacts
# torch first and alone: the largest layer, cached across changes to the project.
RUN pip install "torch==${TORCH_VERSION}"
# Then the project with its worker and mlflow extras (MLflow logging of the jobs that ask for it,
# docs/mlflow.md); the torch range it asks for admits the build above, so
# nothing is replaced. The wheel is named by path: a PyPI package of the same name cannot win.
# psycopg is the PostgreSQL driver of the job store URL (postgresql+psycopg://); it is named here
# until the worker extra lists it (the server extra already does).
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install "$(ls /wheels/tempering-*.whl)[worker,mlflow]" "psycopg[binary]>=3.1" \
    && python -c "import torch, workers.tasks; print('torch', torch.__version__)"
USER 10001:10001
WORKDIR /var/lib/tempering
# Healthy while this worker's own Celery node answers a ping over the broker (Redis).
HEALTHCHECK --interval=60s --timeout=30s --start-period=60s --retries=3 \
    CMD celery -A workers.celery_app inspect ping --destination "worker@$(hostname)" \
        --timeout 10 > /dev/null || exit 1
ENTRYPOINT ["temper", "worker"]
CMD ["--hostname", "worker@%h"]
