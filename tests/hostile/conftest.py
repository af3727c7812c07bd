"""Real gRPC servers for the hostile corpus: in-process, on port 0, one with trusted formats off
and one with them on, each in its own folder laid out so that anything written outside the
store shows:

    <root>/state/            the server's state dir: job store, broker, artifacts/
    <root>/outside/markers/  where a trap's code would create its marker file
    <root>/outside/bait/     a file that hostile external-data references point at

No worker runs: accepted jobs stay QUEUED on a broker file nobody consumes.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2_grpc
from tempering.v1 import hardening_pb2 as pb
from tempering.v1 import hardening_pb2_grpc as pb_grpc

from service.api.server import RunningServer, start_server
from service.core.settings import Settings

from . import builders as b
from .corpus import UPLOAD_LIMIT, Context


@dataclass
class HostileServer:
    running: RunningServer
    channel: grpc.Channel
    stub: pb_grpc.HardeningServiceStub
    health: health_pb2_grpc.HealthStub
    root: Path
    settings: Settings
    context: Context
    baseline_job_id: str
    """A valid job submitted first; every case must leave it readable."""

    @property
    def state_dir(self) -> Path:
        return self.settings.state_dir

    @property
    def artifact_dir(self) -> Path:
        return self.settings.artifact_dir


def hostile_settings(root: Path, *, trusted: bool) -> Settings:
    state = root / "state"
    return Settings(
        state_dir=state,
        artifact_dir=state / "artifacts",
        database_url=f"sqlite:///{state / 'jobs.sqlite'}",
        broker_url=f"sqla+sqlite:///{state / 'broker.sqlite'}",
        grpc_address="127.0.0.1:0",
        grpc_threads=8,
        max_upload_bytes=UPLOAD_LIMIT,
        allow_trusted_formats=trusted,
        queue=f"tempering.hostile-{uuid.uuid4().hex[:8]}",
    )


def base_request(model_id: str, train_id: str, eval_id: str = "") -> pb.SubmitJobRequest:
    """A valid, small FGSM job; cases change one thing in it."""
    return pb.SubmitJobRequest(
        spec=pb.JobSpec(
            model_id=model_id,
            train_dataset_id=train_id,
            eval_dataset_id=eval_id,
            training=pb.Training(epochs=1, batch_size=64, fgsm=pb.Fgsm()),
            threat_model=pb.ThreatModel(norm=pb.NORM_LINF, epsilon=0.1, lower=[0.0], upper=[1.0]),
            evaluation=pb.Evaluation(suite=pb.EVALUATION_SUITE_FAST, samples=64),
            seed=7,
        )
    )


def upload_requests(data: bytes, *, dataset: bool, fmt: int) -> Iterator[object]:
    header_type = pb.DatasetUploadHeader if dataset else pb.ModelUploadHeader
    request_type = pb.UploadDatasetRequest if dataset else pb.UploadModelRequest
    yield request_type(
        header=header_type(name="input", format=fmt, size_bytes=len(data), sha256=b.sha256(data))
    )
    for start in range(0, len(data), 1024 * 1024):
        yield request_type(chunk=data[start : start + 1024 * 1024])


def upload(stub: pb_grpc.HardeningServiceStub, data: bytes, *, dataset: bool, fmt: int) -> str:
    rpc = stub.UploadDataset if dataset else stub.UploadModel
    return rpc(upload_requests(data, dataset=dataset, fmt=fmt), timeout=60).artifact_id


def _start(root: Path, trusted: bool) -> HostileServer:
    settings = hostile_settings(root, trusted=trusted)
    markers, bait = root / "outside" / "markers", root / "outside" / "bait" / "secret.bin"
    markers.mkdir(parents=True)
    bait.parent.mkdir(parents=True)
    bait.write_bytes(np.ones((b.FEATURES, b.CLASSES), np.float32).tobytes())
    running = start_server(settings)
    channel = grpc.insecure_channel(f"127.0.0.1:{running.port}")
    stub = pb_grpc.HardeningServiceStub(channel)
    model_id = upload(stub, b.linear_onnx(seed=0), dataset=False, fmt=pb.MODEL_FORMAT_ONNX)
    data_id = upload(stub, b.good_npz(), dataset=True, fmt=pb.DATASET_FORMAT_NPZ)
    baseline = stub.SubmitJob(base_request(model_id, data_id), timeout=60)
    return HostileServer(
        running=running,
        channel=channel,
        stub=stub,
        health=health_pb2_grpc.HealthStub(channel),
        root=root,
        settings=settings,
        context=Context(marker_dir=markers, bait=bait),
        baseline_job_id=baseline.id,
    )


@pytest.fixture(scope="module")
def hostile_servers(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Callable[[bool], HostileServer]]:
    """``hostile_servers(trusted)``: the module's server with trusted formats on or off,
    started on first use."""
    started: dict[bool, HostileServer] = {}

    def get(trusted: bool) -> HostileServer:
        if trusted not in started:
            root = tmp_path_factory.mktemp("trusted" if trusted else "untrusted")
            started[trusted] = _start(root, trusted)
        return started[trusted]

    yield get
    for server in started.values():
        server.channel.close()
        server.running.stop(grace=0)
