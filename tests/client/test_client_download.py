"""Downloads are checked against the SHA-256 the server announces before they are kept."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import pytest
from tempering.v1 import hardening_pb2 as pb
from tempering.v1 import hardening_pb2_grpc as pb_grpc

from client import HardeningClient, IntegrityError

PAYLOAD = bytes(range(256)) * 5000


class OneArtifact(pb_grpc.HardeningServiceServicer):
    """Serves PAYLOAD for every download, announcing ``sha256``."""

    def __init__(self, sha256: str) -> None:
        self.sha256 = sha256

    def DownloadArtifact(
        self, request: pb.DownloadArtifactRequest, context: grpc.ServicerContext
    ) -> Iterator[pb.DownloadArtifactResponse]:
        header = pb.OutputArtifact(
            kind=request.kind, filename="hardened.onnx", size_bytes=len(PAYLOAD), sha256=self.sha256
        )
        yield pb.DownloadArtifactResponse(header=header)
        for start in range(0, len(PAYLOAD), 100_000):
            yield pb.DownloadArtifactResponse(chunk=PAYLOAD[start : start + 100_000])


def serve(servicer: pb_grpc.HardeningServiceServicer) -> tuple[grpc.Server, str]:
    server = grpc.server(ThreadPoolExecutor(max_workers=2))
    pb_grpc.add_HardeningServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    return server, f"127.0.0.1:{port}"


def test_download_keeps_a_file_whose_sha256_matches(tmp_path: Path) -> None:
    server, address = serve(OneArtifact(hashlib.sha256(PAYLOAD).hexdigest()))
    try:
        with HardeningClient(address, timeout=10) as api:
            path = api.download("job", "model", tmp_path / "h.onnx")
    finally:
        server.stop(0)

    assert path.read_bytes() == PAYLOAD


def test_download_with_a_wrong_sha256_raises_and_leaves_no_file(tmp_path: Path) -> None:
    server, address = serve(OneArtifact("0" * 64))
    try:
        with HardeningClient(address, timeout=10) as api, pytest.raises(IntegrityError):
            api.download("job", "model", tmp_path / "h.onnx")
    finally:
        server.stop(0)

    assert list(tmp_path.iterdir()) == []


class OneBundle(pb_grpc.HardeningServiceServicer):
    """Serves a hardened model as the bundle a server returns for weights over its limit."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def DownloadArtifact(
        self, request: pb.DownloadArtifactRequest, context: grpc.ServicerContext
    ) -> Iterator[pb.DownloadArtifactResponse]:
        header = pb.OutputArtifact(
            kind=request.kind,
            filename="hardened.onnx.tar",
            size_bytes=len(self.data),
            sha256=hashlib.sha256(self.data).hexdigest(),
            media_type="application/x-tar",
            bundle=True,
        )
        yield pb.DownloadArtifactResponse(header=header)
        for start in range(0, len(self.data), 100_000):
            yield pb.DownloadArtifactResponse(chunk=self.data[start : start + 100_000])


def test_a_bundled_model_is_unpacked_and_its_onnx_path_returned(tmp_path: Path) -> None:
    from tests.bundle_support import file_member, tar_bytes

    bundle = tar_bytes(
        [file_member("hardened.onnx", b"graph"), file_member("hardened.onnx.data", PAYLOAD)]
    )
    server, address = serve(OneBundle(bundle))
    try:
        with HardeningClient(address, timeout=10) as api:
            path = api.download("job", "model", tmp_path / "h.onnx")
    finally:
        server.stop(0)

    assert path == tmp_path / "h" / "hardened.onnx"
    assert path.with_name("hardened.onnx.data").read_bytes() == PAYLOAD
