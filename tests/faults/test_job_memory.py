"""A job's memory is capped (TEMPERING_JOB_MEMORY_LIMIT): a model whose memory grows with the
batch passes the one-sample check at SubmitJob, then fails its job with a reason that names the
limit and the batch, instead of reaching the host's OOM killer (issue 15, finding G)."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from faults_support import TERMINAL, FaultStack, spec, submit, wait_state
from onnx import TensorProto, helper, numpy_helper
from tempering.v1 import hardening_pb2 as pb

from tests.shared_support import upload_model

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

FEATURES = 64
CLASSES = 10


def grows_with_the_batch_model() -> bytes:
    """Digits logits plus the sum of a zero tensor of N^5 floats, N being the batch: one float at
    the one-sample check, 4 GiB at a training batch of 64."""
    weights = np.linspace(-0.05, 0.05, FEATURES * CLASSES, dtype=np.float32)
    nodes = [
        helper.make_node("MatMul", ["x", "w"], ["scores"]),
        helper.make_node("Shape", ["x"], ["shape"]),
        helper.make_node("Gather", ["shape", "first"], ["n"], axis=0),
        helper.make_node("Mul", ["n", "n"], ["n2"]),
        helper.make_node("Mul", ["n2", "n2"], ["n4"]),
        helper.make_node("Mul", ["n4", "n"], ["n5"]),
        helper.make_node("ConstantOfShape", ["n5"], ["blowup"]),
        helper.make_node("ReduceSum", ["blowup"], ["zero"], keepdims=0),
        helper.make_node("Add", ["scores", "zero"], ["logits"]),
    ]
    graph = helper.make_graph(
        nodes,
        "grows_with_the_batch",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", FEATURES])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", CLASSES])],
        [
            numpy_helper.from_array(weights.reshape(FEATURES, CLASSES), "w"),
            numpy_helper.from_array(np.array([0], dtype=np.int64), "first"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()


def test_a_model_whose_memory_grows_with_the_batch_fails_its_job_naming_the_limit_and_batch(
    healthy: FaultStack, digits_inputs: tuple[str, str]
) -> None:
    for worker in healthy.live_workers():
        worker.stop()
    capped = healthy.start_worker({"TEMPERING_JOB_MEMORY_LIMIT": "1G"})
    try:
        model_id = upload_model(healthy.stub, grows_with_the_batch_model())
        job_id = submit(healthy, spec(model_id, digits_inputs[1], batch_size=64))

        final = wait_state(healthy, job_id, TERMINAL, timeout=180)

        assert final.state == pb.JOB_STATE_FAILED, healthy.logs()
        assert "more memory than the 1 GiB this worker allows" in final.reason, final.reason
        assert "while training at batch size 64" in final.reason, final.reason
        assert final.attempts == 1, "running out of memory is not retried"
        assert capped.alive(), "the worker survives its job running out of memory"
    finally:
        capped.stop()
