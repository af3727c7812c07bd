"""Uploads through a real gRPC server on port 0 with a real channel."""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import pytest
from svc_helpers import digits_like, linear_onnx
from tempering.v1 import hardening_pb2 as pb
from tempering.v1 import hardening_pb2_grpc as pb_grpc

from tests.shared_support import CHUNK, dataset_requests, model_requests, sha256

STREAM_CHUNKS = 256
EARLY = STREAM_CHUNKS // 4
"""Stopping early means the client was asked for well under the whole stream; how far it got
depends on the transport's buffers, not on the server."""


class CountingChunks:
    """A 256 MiB stream of chunks that counts how many the client was asked for."""

    def __init__(self) -> None:
        self.sent = 0

    def __iter__(self) -> Iterator[bytes]:
        for _ in range(STREAM_CHUNKS):
            self.sent += 1
            yield b"\0" * CHUNK


def code_of(call: object) -> grpc.StatusCode:
    assert isinstance(call, grpc.RpcError)
    return call.code()


def test_same_bytes_uploaded_twice_get_the_same_id(stub: pb_grpc.HardeningServiceStub) -> None:
    data = linear_onnx()

    first = stub.UploadModel(model_requests(data))
    second = stub.UploadModel(model_requests(data))

    assert first.artifact_id == second.artifact_id
    assert first.sha256 == sha256(data)
    assert first.size_bytes == len(data)
    assert (first.already_present, second.already_present) == (False, True)


def test_dataset_upload_in_many_chunks_returns_its_id(stub: pb_grpc.HardeningServiceStub) -> None:
    data = digits_like(samples=10_000)

    response = stub.UploadDataset(dataset_requests(data))

    assert response.artifact_id == f"dataset-{sha256(data)}"
    assert len(data) > 2 * CHUNK


def test_checksum_mismatch_is_invalid_argument(stub: pb_grpc.HardeningServiceStub) -> None:
    data = linear_onnx()

    with pytest.raises(grpc.RpcError) as error:
        stub.UploadModel(model_requests(data, digest=sha256(b"something else")))

    assert code_of(error.value) is grpc.StatusCode.INVALID_ARGUMENT
    assert "SHA-256" in error.value.details()


def test_upload_over_the_limit_is_refused_before_reading_it(
    stub: pb_grpc.HardeningServiceStub,
) -> None:
    chunks = CountingChunks()

    with pytest.raises(grpc.RpcError) as error:
        stub.UploadModel(
            model_requests(b"", size=STREAM_CHUNKS * CHUNK, digest="a" * 64, chunks=chunks)
        )

    assert code_of(error.value) is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "TEMPERING_MAX_UPLOAD_BYTES" in error.value.details()
    assert chunks.sent < EARLY


def test_stream_longer_than_declared_stops_early(stub: pb_grpc.HardeningServiceStub) -> None:
    chunks = CountingChunks()

    with pytest.raises(grpc.RpcError) as error:
        stub.UploadModel(model_requests(b"", size=2 * CHUNK, digest="a" * 64, chunks=chunks))

    assert code_of(error.value) is grpc.StatusCode.INVALID_ARGUMENT
    assert "more than" in error.value.details()
    assert chunks.sent < EARLY


def test_stream_that_ends_early_is_invalid_argument(stub: pb_grpc.HardeningServiceStub) -> None:
    data = linear_onnx()

    with pytest.raises(grpc.RpcError) as error:
        stub.UploadModel(model_requests(data, size=len(data) + 100))

    assert code_of(error.value) is grpc.StatusCode.INVALID_ARGUMENT
    assert "ended after" in error.value.details()


def test_stream_without_header_is_invalid_argument(stub: pb_grpc.HardeningServiceStub) -> None:
    with pytest.raises(grpc.RpcError) as error:
        stub.UploadModel(iter([pb.UploadModelRequest(chunk=b"abc")]))

    assert code_of(error.value) is grpc.StatusCode.INVALID_ARGUMENT


def test_program_formats_need_trusted_formats(stub: pb_grpc.HardeningServiceStub) -> None:
    with pytest.raises(grpc.RpcError) as error:
        stub.UploadModel(model_requests(b"torchscript", fmt=pb.MODEL_FORMAT_TORCHSCRIPT))

    assert code_of(error.value) is grpc.StatusCode.FAILED_PRECONDITION
    assert "TEMPERING_ALLOW_TRUSTED_FORMATS" in error.value.details()
