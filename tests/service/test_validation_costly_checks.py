"""A costly model cannot hold the submit-time check (issue 15, finding C): its cost is estimated
from the graph and refused before anything runs, a check that slips past the estimate is killed at
TEMPERING_VALIDATION_TIME_LIMIT, and one tenant's checks never take every checker from another."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from service_support import make_settings
from svc_helpers import digits_like, fgsm_spec, linear_onnx
from tempering.v1 import hardening_pb2 as pb
from tempering.v1 import hardening_pb2_grpc as pb_grpc

from service.api.auth import hash_key, new_key
from service.api.server import RunningServer, start_server
from tests.shared_support import dataset_requests, model_requests

FEATURES, CLASSES = 64, 10
SHORT_DEADLINE = 2.0
FAIRNESS_DEADLINE = 4.0
NO_COST_LIMIT = 1e9
"""GFLOPs: lets a costly model past the estimate, so that only the deadline can stop it."""

Metadata = tuple[tuple[str, str], ...]
StartServer = Callable[..., pb_grpc.HardeningServiceStub]
"""``start(**settings)``: a real server on port 0 for the test, and a stub on it."""


def chained_matmuls(size: int = 2048, depth: int = 400) -> bytes:
    """The finding's model: a few KB that make a ``size`` x ``size`` matrix with ConstantOfShape
    and multiply it by itself ``depth`` times, beside an ordinary linear classifier."""
    rng = np.random.default_rng(0)
    weights = rng.normal(0, 0.1, (FEATURES, CLASSES)).astype(np.float32)
    one = helper.make_tensor("one", TensorProto.FLOAT, [1], [1e-3])
    nodes = [helper.make_node("ConstantOfShape", ["shape"], ["m0"], name="blow_up", value=one)]
    nodes += [
        helper.make_node("MatMul", [f"m{i}", f"m{i}"], [f"m{i + 1}"], name=f"square_{i}")
        for i in range(depth)
    ]
    nodes += [
        helper.make_node("ReduceMean", [f"m{depth}"], ["mean"], keepdims=0),
        helper.make_node("Gemm", ["x", "W", "B"], ["linear"]),
        helper.make_node("Add", ["linear", "mean"], ["logits"]),
    ]
    graph = helper.make_graph(
        nodes,
        "chained-matmuls",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", FEATURES])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", CLASSES])],
        [
            numpy_helper.from_array(np.array([size, size], np.int64), "shape"),
            numpy_helper.from_array(weights, "W"),
            numpy_helper.from_array(np.zeros(CLASSES, np.float32), "B"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()


def upload(stub: pb_grpc.HardeningServiceStub, model: bytes, md: Metadata = ()) -> pb.JobSpec:
    model_id = stub.UploadModel(model_requests(model), metadata=md, timeout=60).artifact_id
    data_id = stub.UploadDataset(dataset_requests(digits_like()), metadata=md, timeout=60)
    return fgsm_spec(model_id, data_id.artifact_id)


def timed_submit(
    stub: pb_grpc.HardeningServiceStub, spec: pb.JobSpec, md: Metadata = (), timeout: float = 30
) -> tuple[grpc.StatusCode, str, float]:
    started = time.monotonic()
    try:
        stub.SubmitJob(pb.SubmitJobRequest(spec=spec), metadata=md, timeout=timeout)
    except grpc.RpcError as error:
        return error.code(), error.details() or "", time.monotonic() - started
    return grpc.StatusCode.OK, "", time.monotonic() - started


@pytest.fixture
def start(tmp_path: Path) -> Iterator[StartServer]:
    servers: list[tuple[RunningServer, grpc.Channel]] = []

    def start_one(**overrides: object) -> pb_grpc.HardeningServiceStub:
        running = start_server(make_settings(tmp_path / f"s{len(servers)}", **overrides))
        channel = grpc.insecure_channel(f"127.0.0.1:{running.port}")
        servers.append((running, channel))
        return pb_grpc.HardeningServiceStub(channel)

    yield start_one
    for running, channel in servers:
        channel.close()
        running.stop(grace=0)


def test_the_findings_model_is_refused_at_submit_by_its_estimated_cost(start: StartServer) -> None:
    stub = start()
    spec = upload(stub, chained_matmuls())

    code, details, seconds = timed_submit(stub, spec, timeout=10)

    assert code is grpc.StatusCode.RESOURCE_EXHAUSTED, (code, details)
    assert "MatMul 'square_0'" in details
    assert "TFLOPs" in details
    assert "TEMPERING_VALIDATION_MAX_GFLOPS" in details
    assert seconds < 10.0


def test_a_check_past_its_deadline_is_killed_and_the_next_submit_is_served(
    start: StartServer,
) -> None:
    stub = start(validation_time_limit=SHORT_DEADLINE, validation_max_gflops=NO_COST_LIMIT)
    costly, ordinary = upload(stub, chained_matmuls(depth=200)), upload(stub, linear_onnx())

    before = timed_submit(stub, ordinary)
    code, details, seconds = timed_submit(stub, costly)
    after = timed_submit(stub, ordinary)

    assert code is grpc.StatusCode.RESOURCE_EXHAUSTED, (code, details)
    assert f"longer than {SHORT_DEADLINE:g} s" in details
    assert "TEMPERING_VALIDATION_TIME_LIMIT" in details
    assert SHORT_DEADLINE <= seconds < SHORT_DEADLINE + 3.0
    assert before[0] is grpc.StatusCode.OK, before
    assert after[0] is grpc.StatusCode.OK, after


@pytest.mark.slow
def test_a_tenant_looping_on_costly_checks_leaves_a_checker_for_another(
    start: StartServer,
    tmp_path: Path,
) -> None:
    keys = {tenant: new_key() for tenant in ("alice", "bob")}
    key_file = tmp_path / "api-keys"
    key_file.write_text("".join(f"{t}:{hash_key(k)}\n" for t, k in keys.items()))
    stub = start(
        api_keys_file=key_file,
        validation_time_limit=FAIRNESS_DEADLINE,
        validation_max_gflops=NO_COST_LIMIT,
    )
    alice = (("authorization", f"Bearer {keys['alice']}"),)
    bob = (("authorization", f"Bearer {keys['bob']}"),)
    costly = upload(stub, chained_matmuls(depth=200), alice)
    ordinary = upload(stub, linear_onnx(), bob)
    assert timed_submit(stub, ordinary, bob)[0] is grpc.StatusCode.OK
    stop = threading.Event()
    alices: list[grpc.StatusCode] = []

    def loop() -> None:
        while not stop.is_set():
            alices.append(timed_submit(stub, costly, alice, timeout=60)[0])

    threads = [threading.Thread(target=loop) for _ in range(3)]
    for thread in threads:
        thread.start()
    try:
        time.sleep(1.5)
        code, details, seconds = timed_submit(stub, ordinary, bob)
    finally:
        stop.set()
        for thread in threads:
            thread.join()

    print(f"bob's SubmitJob while alice loops on costly checks: {seconds:.2f} s")
    assert code is grpc.StatusCode.OK, (code, details)
    assert seconds < FAIRNESS_DEADLINE
    assert set(alices) <= {grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.UNAVAILABLE}
