# syntax=docker/dockerfile:1
#
# The Tempering gRPC server: `temper serve --no-worker`, with the `server` extra only (the
# server validates uploads with onnx/onnxruntime and never imports torch).
#
# Build from the repository root:
#   docker build -f deploy/docker/service.Dockerfile -t tempering-service:0.1.0 .
#
# The base image is pinned to an exact tag. For reproducible production builds pin its digest
# too, e.g. --build-arg PYTHON_IMAGE=python:3.11.14-slim-bookworm@sha256:<digest>
# (`docker buildx imagetools inspect python:3.11.14-slim-bookworm` prints it).
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

# ---- build: a wheelhouse with the project's wheel and every dependency of its server extra --
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY proto ./proto
COPY client ./client
COPY service ./service
COPY workers ./workers
RUN pip wheel --wheel-dir /wheels ".[server]"

# ---- runtime: the wheels installed offline, no compiler, no source tree ---------------------
FROM ${PYTHON_IMAGE} AS runtime
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HOME=/var/lib/tempering \
    TEMPERING_STATE_DIR=/var/lib/tempering \
    TEMPERING_ARTIFACT_DIR=/artifacts \
    TEMPERING_GRPC_ADDRESS=0.0.0.0:50051
RUN groupadd --system --gid 10001 tempering \
    && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/tempering \
        --shell /usr/sbin/nologin tempering \
    && mkdir -p /var/lib/tempering /artifacts \
    && chown 10001:10001 /var/lib/tempering /artifacts
# --no-index: the project and its dependencies come only from the wheelhouse built above, so a
# package of the same name on a public index can never be picked up instead.
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-index --find-links /wheels "tempering[server]"
COPY deploy/docker/healthcheck.py /opt/tempering/healthcheck.py
USER 10001:10001
WORKDIR /var/lib/tempering
EXPOSE 50051
HEALTHCHECK --interval=30s --timeout=10s --start-period=30s --retries=3 \
    CMD ["python", "/opt/tempering/healthcheck.py", "--quiet"]
ENTRYPOINT ["temper", "serve"]
CMD ["--no-worker"]
