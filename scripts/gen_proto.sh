#!/usr/bin/env bash
# Regenerates the Python code of the gRPC API from proto/tempering/v1/hardening.proto into
# proto/tempering/v1/. Never edit the generated files; change the .proto and run this.
#
#   scripts/gen_proto.sh          regenerate in place
#   scripts/gen_proto.sh --check  fail if the committed code differs from what the .proto gives
#
# Needs the dev extra (grpcio-tools, pinned so that output is reproducible).
set -euo pipefail
cd "$(dirname "$0")/.."

generate() {
  python -m grpc_tools.protoc -Iproto --python_out="$1" --grpc_python_out="$1" --pyi_out="$1" \
    proto/tempering/v1/hardening.proto
}

if [ "${1:-}" = "--check" ]; then
  out="$(mktemp -d)"
  trap 'rm -rf "$out"' EXIT
  generate "$out"
  for file in hardening_pb2.py hardening_pb2.pyi hardening_pb2_grpc.py; do
    if ! cmp -s "$out/tempering/v1/$file" "proto/tempering/v1/$file"; then
      echo "proto/tempering/v1/$file is out of date: run scripts/gen_proto.sh" >&2
      exit 1
    fi
  done
  echo "generated code matches proto/tempering/v1/hardening.proto"
else
  generate proto
fi
