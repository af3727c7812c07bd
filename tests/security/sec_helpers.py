"""Builders and raw-stub calls of the security tests, each call made as one tenant."""

from __future__ import annotations

import hashlib
import io
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import numpy as np
from onnx import TensorProto, helper, numpy_helper
from tempering.v1 import hardening_pb2 as pb
from tempering.v1 import hardening_pb2_grpc as pb_grpc

from service.api.server import RunningServer

Metadata = tuple[tuple[str, str], ...]
Stub = pb_grpc.HardeningServiceStub
StartServer = Callable[..., RunningServer]
"""The ``start`` fixture: ``start(**settings)`` runs a server for the test."""


@dataclass(frozen=True)
class Keys:
    """One API key per tenant, and the key file the server reads (hashes only)."""

    by_tenant: dict[str, str]
    file: Path

    def metadata(self, tenant: str) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {self.by_tenant[tenant]}"),)


@dataclass(frozen=True)
class Pki:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_ca: Path
    """A CA that signed nothing the server trusts."""
    rogue_client_cert: Path
    rogue_client_key: Path
    """A client certificate signed by ``other_ca``."""


def linear_onnx(features: int = 16, classes: int = 4, seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    weight = numpy_helper.from_array(
        rng.normal(0, 0.1, (features, classes)).astype(np.float32), "W"
    )
    bias = numpy_helper.from_array(np.zeros(classes, np.float32), "B")
    graph = helper.make_graph(
        [helper.make_node("Gemm", ["x", "W", "B"], ["logits"])],
        "linear",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", features])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", classes])],
        [weight, bias],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model.SerializeToString()


def dataset(samples: int = 32, features: int = 16, classes: int = 4, seed: int = 1) -> bytes:
    rng = np.random.default_rng(seed)
    buffer = io.BytesIO()
    np.savez(
        buffer,
        x=rng.uniform(0, 1, (samples, features)).astype(np.float32),
        y=rng.integers(0, classes, samples),
    )
    return buffer.getvalue()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def model_requests(data: bytes) -> Iterator[pb.UploadModelRequest]:
    yield pb.UploadModelRequest(
        header=pb.ModelUploadHeader(
            name="model.onnx",
            format=pb.MODEL_FORMAT_ONNX,
            size_bytes=len(data),
            sha256=sha256(data),
        )
    )
    yield pb.UploadModelRequest(chunk=data)


def dataset_requests(data: bytes) -> Iterator[pb.UploadDatasetRequest]:
    yield pb.UploadDatasetRequest(
        header=pb.DatasetUploadHeader(
            name="data.npz", format=pb.DATASET_FORMAT_NPZ, size_bytes=len(data), sha256=sha256(data)
        )
    )
    yield pb.UploadDatasetRequest(chunk=data)


def upload_model(stub: Stub, metadata: Metadata, data: bytes) -> pb.UploadResponse:
    return stub.UploadModel(model_requests(data), metadata=metadata, timeout=60)


def upload_dataset(stub: Stub, metadata: Metadata, data: bytes) -> pb.UploadResponse:
    return stub.UploadDataset(dataset_requests(data), metadata=metadata, timeout=60)


def spec(model_id: str, train_id: str, epochs: int = 1) -> pb.JobSpec:
    return pb.JobSpec(
        model_id=model_id,
        train_dataset_id=train_id,
        training=pb.Training(epochs=epochs, batch_size=16, fgsm=pb.Fgsm()),
        threat_model=pb.ThreatModel(norm=pb.NORM_LINF, epsilon=0.1, lower=[0.0], upper=[1.0]),
        evaluation=pb.Evaluation(suite=pb.EVALUATION_SUITE_FAST, samples=16),
        seed=7,
    )


def submit(stub: Stub, metadata: Metadata, job_spec: pb.JobSpec, **fields: Any) -> pb.Job:
    request = pb.SubmitJobRequest(spec=job_spec, **fields)
    return stub.SubmitJob(request, metadata=metadata, timeout=60)


def error_of(call: Any) -> grpc.RpcError:
    """Run ``call()`` (consuming it if it returns a stream) and return the error it raised."""
    try:
        result = call()
        if hasattr(result, "__next__"):
            for _ in result:
                pass
    except grpc.RpcError as error:
        return error
    raise AssertionError("the call succeeded")


def shape(error: grpc.RpcError, *ids: str) -> tuple[grpc.StatusCode, str]:
    """The code and the message with the ids replaced, to compare errors about different ids."""
    message = error.details() or ""
    for value in ids:
        message = message.replace(value, "<id>")
    return error.code(), message


def unknown_job_id() -> str:
    return uuid.uuid4().hex


def unknown_model_id() -> str:
    return f"model-{sha256(uuid.uuid4().bytes)}"
