#!/usr/bin/env bash
# Regenerates the Python code of the gRPC API from proto/tempering/v1/hardening.proto.
# Run from anywhere with the dev extra installed (grpcio-tools); never edit the generated files.
set -euo pipefail
cd "$(dirname "$0")/.."
python -m grpc_tools.protoc -Iproto --python_out=proto --grpc_python_out=proto --pyi_out=proto \
    proto/tempering/v1/hardening.proto
