"""Helpers that more than one test folder needs: the environment of a spawned server or worker,
the PostgreSQL the store tests run against, scikit-learn's digits with a small MLP exported to
ONNX, and uploads through the raw generated stubs. Test folders import it as
``tests.shared_support``: the repository root is on pytest's ``pythonpath``, while each folder's
own helpers are importable only from that folder."""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

import numpy as np
import sqlalchemy as sa
from tempering.v1 import hardening_pb2 as pb
from tempering.v1 import hardening_pb2_grpc as pb_grpc

ROOT = Path(__file__).resolve().parents[1]
POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
CHUNK = 1024 * 1024


def base_env(extra: Mapping[str, str]) -> dict[str, str]:
    """This process's environment without any TEMPERING_ setting, able to import the project."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TEMPERING_")}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(ROOT / "proto")])
    env.update(extra)
    return env


def postgres_available() -> bool:
    try:
        engine = sa.create_engine(POSTGRES_URL, connect_args={"connect_timeout": 3})
        with engine.connect():
            pass
        engine.dispose()
        return True
    except Exception:
        return False


# --- the model and the data -------------------------------------------------------------------


def digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    digits = load_digits()
    return (digits.data / 16.0).astype(np.float32), digits.target.astype(np.int64)


def export_digits_mlp(
    path: Path,
    *,
    dynamo: bool = True,
    external_data: bool = False,
    hidden: int = 32,
    train_steps: int = 60,
) -> bytes:
    """An MLP 64-``hidden``-10 for scikit-learn's digits, trained for ``train_steps`` full-batch
    steps, exported with torch.onnx: by the dynamo exporter, or with ``dynamo=False`` by the
    TorchScript-based one at opset 17. With ``external_data`` the dynamo exporter's default is
    kept: weights in ``<name>.data``."""
    import torch

    x, y = digits_arrays()
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Linear(64, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, 10)
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    inputs, labels = torch.from_numpy(x), torch.from_numpy(y)
    for _ in range(train_steps):
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(inputs), labels).backward()
        optimizer.step()
    model.eval()
    if dynamo:
        torch.onnx.export(
            model,
            (inputs[:2],),
            str(path),
            input_names=["x"],
            output_names=["logits"],
            dynamic_shapes=({0: torch.export.Dim("batch")},),
            dynamo=True,
            external_data=external_data,
            verbose=False,
        )
    else:
        torch.onnx.export(
            model,
            (inputs[:2],),
            str(path),
            dynamo=False,
            opset_version=17,
            input_names=["x"],
            output_names=["logits"],
            dynamic_axes={"x": {0: "batch"}, "logits": {0: "batch"}},
        )
    return path.read_bytes()


def npz_bytes(x: np.ndarray, y: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, x=x, y=y)
    return buffer.getvalue()


# --- uploads ----------------------------------------------------------------------------------


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def chunked(data: bytes, size: int = CHUNK) -> Iterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


def model_requests(
    data: bytes,
    *,
    fmt: pb.ModelFormat = pb.MODEL_FORMAT_ONNX,
    size: int | None = None,
    digest: str | None = None,
    chunks: Iterable[bytes] | None = None,
) -> Iterator[pb.UploadModelRequest]:
    yield pb.UploadModelRequest(
        header=pb.ModelUploadHeader(
            name="model.onnx",
            format=fmt,
            size_bytes=len(data) if size is None else size,
            sha256=digest or sha256(data),
        )
    )
    for chunk in chunked(data) if chunks is None else chunks:
        yield pb.UploadModelRequest(chunk=chunk)


def dataset_requests(data: bytes) -> Iterator[pb.UploadDatasetRequest]:
    yield pb.UploadDatasetRequest(
        header=pb.DatasetUploadHeader(
            name="data.npz", format=pb.DATASET_FORMAT_NPZ, size_bytes=len(data), sha256=sha256(data)
        )
    )
    for chunk in chunked(data):
        yield pb.UploadDatasetRequest(chunk=chunk)


def upload_model(stub: pb_grpc.HardeningServiceStub, data: bytes) -> str:
    return stub.UploadModel(model_requests(data), timeout=60).artifact_id


def upload_dataset(stub: pb_grpc.HardeningServiceStub, data: bytes) -> str:
    return stub.UploadDataset(dataset_requests(data), timeout=60).artifact_id
