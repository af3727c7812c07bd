"""ONNX bundles through a real gRPC server on port 0: a model with external data uploaded as one
bundle (MODEL_FORMAT_ONNX_BUNDLE) is queued; every bad bundle is refused at SubmitJob with
INVALID_ARGUMENT and a message that names the problem and no path of the server's, and the
server goes on serving."""

from __future__ import annotations

import gzip
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
from service_support import make_settings
from tempering.v1 import hardening_pb2 as pb
from tempering.v1 import hardening_pb2_grpc as pb_grpc

from service.api.server import RunningServer, start_server
from tests.bundle_support import (
    CLASSES,
    FEATURES,
    bundle_of,
    file_member,
    linear_with_external_data,
    link_member,
    tar_bytes,
)
from tests.shared_support import dataset_requests, model_requests, npz_bytes

pytestmark = pytest.mark.slow

BUNDLE = pb.MODEL_FORMAT_ONNX_BUNDLE


@pytest.fixture(scope="module")
def state_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("server")


@pytest.fixture(scope="module")
def server(state_dir: Path) -> Iterator[RunningServer]:
    # room for a bundle of 10,000 tiny files (about 10 MB of headers and blocks)
    running = start_server(make_settings(state_dir, max_upload_bytes=32 << 20))
    try:
        yield running
    finally:
        running.stop(grace=0)


@pytest.fixture(scope="module")
def stub(server: RunningServer) -> Iterator[pb_grpc.HardeningServiceStub]:
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        yield pb_grpc.HardeningServiceStub(channel)


@pytest.fixture(scope="module")
def export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("export")
    linear_with_external_data(folder)
    return folder


@pytest.fixture(scope="module")
def train_id(stub: pb_grpc.HardeningServiceStub) -> str:
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, (60, FEATURES)).astype(np.float32)
    y = rng.integers(0, CLASSES, 60)
    return stub.UploadDataset(dataset_requests(npz_bytes(x, y)), timeout=60).artifact_id


def submit(
    stub: pb_grpc.HardeningServiceStub, data: bytes, train_id: str, fmt: int = BUNDLE
) -> pb.Job:
    model_id = stub.UploadModel(model_requests(data, fmt=fmt), timeout=60).artifact_id
    spec = pb.JobSpec(
        model_id=model_id,
        train_dataset_id=train_id,
        threat_model=pb.ThreatModel(norm=pb.NORM_LINF, epsilon=0.1),
        training=pb.Training(fgsm=pb.Fgsm(), epochs=1),
    )
    return stub.SubmitJob(pb.SubmitJobRequest(spec=spec), timeout=60)


def refused(
    stub: pb_grpc.HardeningServiceStub,
    state_dir: Path,
    data: bytes,
    train_id: str,
    fmt: int = BUNDLE,
) -> str:
    with pytest.raises(grpc.RpcError) as caught:
        submit(stub, data, train_id, fmt)
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT, caught.value.details()
    message = caught.value.details()
    assert "tempering-bundle-" not in message
    assert str(state_dir) not in message
    assert "/tmp/" not in message
    info = stub.GetServerInfo(pb.GetServerInfoRequest(), timeout=10)
    assert info.api == "tempering.v1"
    return message


def test_a_bundle_of_a_model_and_its_external_data_is_queued(
    stub: pb_grpc.HardeningServiceStub, export: Path, train_id: str
) -> None:
    job = submit(stub, bundle_of(export, ["m.onnx", "m.onnx.data"]), train_id)

    assert job.state == pb.JOB_STATE_QUEUED


def test_a_single_onnx_file_with_external_data_is_told_to_come_as_a_bundle(
    stub: pb_grpc.HardeningServiceStub, state_dir: Path, export: Path, train_id: str
) -> None:
    message = refused(
        stub, state_dir, (export / "m.onnx").read_bytes(), train_id, pb.MODEL_FORMAT_ONNX
    )

    assert "external-data files" in message
    assert "upload the model as an ONNX bundle" in message


def hostile(export: Path) -> dict[str, tuple[bytes, str]]:
    model = file_member("m.onnx", (export / "m.onnx").read_bytes())
    weights = (export / "m.onnx.data").read_bytes()
    whole = bundle_of(export, ["m.onnx", "m.onnx.data"])
    tiny = [file_member(f"f{i}", b"x") for i in range(10_000)]
    return {
        "parent path": (
            tar_bytes([model, file_member("../m.onnx.data", weights)]),
            "bundle member '../m.onnx.data' points outside the bundle",
        ),
        "absolute path": (
            tar_bytes([model, file_member("/etc/passwd", b"root")]),
            # the server's error guard hides anything shaped like an absolute path
            "bundle member '<server path>' has an absolute path",
        ),
        "symlink": (
            tar_bytes([model, link_member("m.onnx.data", "/etc/passwd")]),
            "bundle member 'm.onnx.data' is a symbolic link",
        ),
        "truncated": (whole[: len(whole) - 2000], "truncated or corrupt"),
        "size that lies": (
            tar_bytes([model, file_member("m.onnx.data", weights + b"\1" * 600, size=4)]),
            "declared size does not match its bytes",
        ),
        "10,000 tiny files": (tar_bytes([model, *tiny]), "more than 64 entries"),
        "no onnx": (tar_bytes([file_member("m.onnx.data", weights)]), "holds none"),
        "two onnx": (
            tar_bytes(
                [model, file_member("n.onnx", b"\x08\x07"), file_member("m.onnx.data", weights)]
            ),
            "exactly one .onnx file at its top level",
        ),
        "missing data file": (
            tar_bytes([model]),
            "external data file 'm.onnx.data' of tensor 'w' is missing",
        ),
        "not an archive": (b"just some text, not a tar\n" * 40, "declared as onnx_bundle"),
        "compressed tar": (gzip.compress(whole), "declared as onnx_bundle"),
    }


@pytest.mark.parametrize(
    "case",
    [
        "parent path",
        "absolute path",
        "symlink",
        "truncated",
        "size that lies",
        "10,000 tiny files",
        "no onnx",
        "two onnx",
        "missing data file",
        "not an archive",
        "compressed tar",
    ],
)
def test_a_bad_bundle_is_refused_naming_its_problem(
    stub: pb_grpc.HardeningServiceStub,
    state_dir: Path,
    export: Path,
    train_id: str,
    case: str,
) -> None:
    data, expected = hostile(export)[case]

    assert expected in refused(stub, state_dir, data, train_id)
