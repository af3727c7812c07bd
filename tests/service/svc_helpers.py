"""Builders and raw-stub helpers shared by the service tests (no torch here; the end-to-end
tests export their torch model themselves)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from tempering.v1 import hardening_pb2 as pb
from tempering.v1 import hardening_pb2_grpc as pb_grpc

from tests.shared_support import npz_bytes


def linear_onnx(features: int = 64, classes: int = 10, seed: int = 0) -> bytes:
    """A one-layer classifier (N, features) -> (N, classes) built with onnx.helper."""
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
    onnx.checker.check_model(model)
    return model.SerializeToString()


def digits_like(samples: int = 64, features: int = 64, classes: int = 10) -> bytes:
    rng = np.random.default_rng(1)
    x = rng.uniform(0, 1, (samples, features)).astype(np.float32)
    y = rng.integers(0, classes, samples)
    return npz_bytes(x, y)


def fgsm_spec(model_id: str, train_id: str, **overrides: object) -> pb.JobSpec:
    spec = pb.JobSpec(
        model_id=model_id,
        train_dataset_id=train_id,
        training=pb.Training(epochs=1, batch_size=64, fgsm=pb.Fgsm()),
        threat_model=pb.ThreatModel(norm=pb.NORM_LINF, epsilon=0.1, lower=[0.0], upper=[1.0]),
        evaluation=pb.Evaluation(suite=pb.EVALUATION_SUITE_FAST, samples=64),
        seed=7,
    )
    for name, value in overrides.items():
        setattr(spec, name, value)
    return spec


def download(
    stub: pb_grpc.HardeningServiceStub, job_id: str, kind: pb.ArtifactKind
) -> tuple[pb.OutputArtifact, bytes]:
    stream = stub.DownloadArtifact(pb.DownloadArtifactRequest(job_id=job_id, kind=kind), timeout=60)
    header = next(stream)
    assert header.WhichOneof("payload") == "header"
    body = b"".join(message.chunk for message in stream)
    return header.header, body


def write_bytes(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path
