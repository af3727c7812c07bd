"""The validation pool's processes end with it: closing the pool while a check runs kills that
checker too, its caller gets an answer, and no checker process outlives the pool (a server
stopped mid-check used to leave its checker computing, orphaned)."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from svc_helpers import digits_like

from service.core.errors import ResourceExhausted
from service.jobs.validation_pool import ValidationPool
from workers.engine.spec import ModelFormat, ThreatModel

GiB = 2**30


def slow_model(path: Path) -> Path:
    """Passes any cost limit set high enough and runs for minutes: 200 products of 2048 x 2048."""
    one = helper.make_tensor("one", TensorProto.FLOAT, [1], [1e-3])
    nodes = [helper.make_node("ConstantOfShape", ["shape"], ["m0"], value=one)]
    nodes += [helper.make_node("MatMul", [f"m{i}", f"m{i}"], [f"m{i + 1}"]) for i in range(200)]
    nodes += [
        helper.make_node("ReduceMean", ["m200"], ["mean"], keepdims=0),
        helper.make_node("MatMul", ["x", "W"], ["linear"]),
        helper.make_node("Add", ["linear", "mean"], ["logits"]),
    ]
    graph = helper.make_graph(
        nodes,
        "slow",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 64])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 10])],
        [
            numpy_helper.from_array(np.array([2048, 2048], np.int64), "shape"),
            numpy_helper.from_array(np.zeros((64, 10), np.float32), "W"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


@pytest.mark.slow
def test_closing_the_pool_kills_a_running_check_and_answers_its_caller(tmp_path: Path) -> None:
    model, data = slow_model(tmp_path / "slow.onnx"), tmp_path / "train.npz"
    data.write_bytes(digits_like())
    pool = ValidationPool(4 * GiB, processes=1, time_limit=60, max_gflops=1e9)
    errors: list[BaseException] = []

    def check() -> None:
        try:
            pool.check(ModelFormat.ONNX, model, [data], ThreatModel(), tenant="alice")
        except BaseException as error:
            errors.append(error)

    caller = threading.Thread(target=check)
    caller.start()
    time.sleep(2.0)
    checkers = pool.pids()
    started = time.monotonic()
    pool.close()
    caller.join(timeout=10)

    assert not caller.is_alive()
    assert time.monotonic() - started < 5
    assert isinstance(errors[0], ResourceExhausted)
    assert len(checkers) == 1
    for pid in checkers:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
