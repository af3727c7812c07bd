"""The submit-time check runs in processes whose address space is capped by
TEMPERING_VALIDATION_MEMORY_LIMIT: a submission that would need more is refused on its own and
the server goes on serving the next one."""

from __future__ import annotations

import dataclasses
import io
from pathlib import Path

import grpc
import numpy as np
import pytest
from svc_helpers import digits_like, fgsm_spec, linear_onnx
from tempering.v1 import hardening_pb2 as pb
from tempering.v1 import hardening_pb2_grpc as pb_grpc

from service.core.errors import ResourceExhausted
from service.core.settings import Settings
from service.jobs.validation_pool import ValidationPool
from tests.shared_support import upload_dataset, upload_model
from workers.engine.errors import InvalidModel
from workers.engine.spec import ModelFormat, ThreatModel

MiB = 1024 * 1024
LIMIT = 256 * MiB


def zeros_npz(x_bytes: int, features: int = 64) -> bytes:
    """A few hundred KiB on the wire that load as ``x_bytes`` of float32 zeros."""
    x = np.zeros((x_bytes // (4 * features), features), np.float32)
    buffer = io.BytesIO()
    np.savez_compressed(buffer, x=x, y=np.zeros(len(x), np.int64))
    return buffer.getvalue()


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return dataclasses.replace(settings, validation_memory_limit=LIMIT)


def test_a_dataset_too_big_for_the_limit_is_refused_and_the_next_submit_works(
    stub: pb_grpc.HardeningServiceStub,
) -> None:
    model_id = upload_model(stub, linear_onnx())
    huge_id = upload_dataset(stub, zeros_npz(LIMIT))
    small_id = upload_dataset(stub, digits_like())

    with pytest.raises(grpc.RpcError) as refused:
        stub.SubmitJob(pb.SubmitJobRequest(spec=fgsm_spec(model_id, huge_id)), timeout=120)
    accepted = stub.SubmitJob(pb.SubmitJobRequest(spec=fgsm_spec(model_id, small_id)), timeout=60)

    assert refused.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "TEMPERING_VALIDATION_MEMORY_LIMIT" in (refused.value.details() or "")
    assert "256 MiB" in (refused.value.details() or "")
    assert accepted.state == pb.JOB_STATE_QUEUED


def test_a_bad_model_raises_the_checks_own_error_through_the_pool(tmp_path: Path) -> None:
    model = tmp_path / "model.onnx"
    model.write_bytes(b"not a model")
    data = tmp_path / "train.npz"
    data.write_bytes(digits_like())
    pool = ValidationPool(LIMIT, processes=1)
    try:
        with pytest.raises(InvalidModel, match="onnx"):
            pool.check(ModelFormat.ONNX, model, [data], ThreatModel())
        model.write_bytes(linear_onnx())
        pool.check(ModelFormat.ONNX, model, [data], ThreatModel())
    finally:
        pool.close()


def test_a_check_over_the_limit_is_replaced_by_a_fresh_process(tmp_path: Path) -> None:
    model = tmp_path / "model.onnx"
    model.write_bytes(linear_onnx())
    huge, small = tmp_path / "huge.npz", tmp_path / "small.npz"
    huge.write_bytes(zeros_npz(LIMIT))
    small.write_bytes(digits_like())
    pool = ValidationPool(LIMIT, processes=1)
    try:
        with pytest.raises(ResourceExhausted, match="TEMPERING_VALIDATION_MEMORY_LIMIT"):
            pool.check(ModelFormat.ONNX, model, [huge], ThreatModel())
        pool.check(ModelFormat.ONNX, model, [small], ThreatModel())
    finally:
        pool.close()
