"""Hostile models that are cheap to upload and costly to check (issue 15, finding C), through a
real gRPC server: each is refused at SubmitJob by the estimate of its cost, well before the
check's deadline, with the node named; nothing of it is recorded, and the server serves on."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass

import grpc
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from . import builders as b
from .corpus import EXHAUSTED, INVALID, Submit
from .runner import HostileServer, assert_actionable, assert_still_serving, job_ids, run_submit

QUICKLY = 5.0
"""Seconds a refusal may take: far below the check's deadline (30 s by default)."""


@dataclass(frozen=True)
class CostlyCase:
    name: str
    model: Callable[[], bytes]
    code: grpc.StatusCode
    fragment: str

    def __str__(self) -> str:
        return self.name


def beside_classifier(
    nodes: list[onnx.NodeProto],
    initializers: list[onnx.TensorProto],
    functions: list[onnx.FunctionProto] | None = None,
) -> bytes:
    """``nodes`` computing a tensor ``extra`` whose mean is added to an ordinary linear
    classifier's scores, so the model is otherwise valid."""
    nodes = [
        *nodes,
        helper.make_node("ReduceMean", ["extra"], ["mean"], keepdims=0),
        helper.make_node("Gemm", ["x", "W", "B"], ["linear"]),
        helper.make_node("Add", ["linear", "mean"], ["logits"]),
    ]
    weights = [
        numpy_helper.from_array(np.zeros((b.FEATURES, b.CLASSES), np.float32), "W"),
        numpy_helper.from_array(np.zeros(b.CLASSES, np.float32), "B"),
    ]
    graph = helper.make_graph(
        nodes,
        "costly",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", b.FEATURES])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", b.CLASSES])],
        [*weights, *initializers],
    )
    opsets = [helper.make_opsetid("", 17)]
    if functions:
        opsets.append(helper.make_opsetid("local", 1))
    model = helper.make_model(graph, opset_imports=opsets, functions=functions or [])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()


def int64s(name: str, *values: int) -> onnx.TensorProto:
    return numpy_helper.from_array(np.array(values, np.int64), name)


def filled(output: str, name: str, shape_input: str = "shape") -> onnx.NodeProto:
    value = helper.make_tensor("value", TensorProto.FLOAT, [1], [1e-3])
    return helper.make_node("ConstantOfShape", [shape_input], [output], name=name, value=value)


def squarings(first: str, depth: int, last: str) -> list[onnx.NodeProto]:
    names = [first, *(f"{first}_{i}" for i in range(1, depth)), last]
    return [
        helper.make_node("MatMul", [a, a], [c], name=f"square_{i}")
        for i, (a, c) in enumerate(itertools.pairwise(names))
    ]


def chained_matmuls() -> bytes:
    """The finding's model: ConstantOfShape 2048 x 2048, then 400 chained MatMuls."""
    nodes = [filled("m", "blow_up"), *squarings("m", 400, "extra")]
    return beside_classifier(nodes, [int64s("shape", 2048, 2048)])


def expand_to_16_gib() -> bytes:
    seed = numpy_helper.from_array(np.ones(1, np.float32), "seed")
    nodes = [helper.make_node("Expand", ["seed", "target"], ["extra"], name="spread")]
    return beside_classifier(nodes, [seed, int64s("target", 65536, 65536)])


def tile_to_16_gib() -> bytes:
    seed = numpy_helper.from_array(np.ones((1, 1), np.float32), "seed")
    nodes = [helper.make_node("Tile", ["seed", "repeats"], ["extra"], name="tiles")]
    return beside_classifier(nodes, [seed, int64s("repeats", 65536, 65536)])


def resize_to_16_gib() -> bytes:
    seed = numpy_helper.from_array(np.ones((1, 1, 1, 1), np.float32), "seed")
    scales = numpy_helper.from_array(np.array([1, 1, 65536, 65536], np.float32), "scales")
    nodes = [helper.make_node("Resize", ["seed", "", "scales"], ["extra"], name="upsample")]
    return beside_classifier(nodes, [seed, scales])


def matmuls_inside_a_function() -> bytes:
    """The chain hidden in a model-local function, so the graph shows one call node."""
    body = [filled("m", "inner"), *squarings("m", 300, "y")]
    function = helper.make_function(
        "local", "Costly", ["shape"], ["y"], body, [helper.make_opsetid("", 17)]
    )
    call = helper.make_node("Costly", ["shape"], ["extra"], domain="local", name="call")
    return beside_classifier([call], [int64s("shape", 1024, 1024)], [function])


def size_from_the_data() -> bytes:
    """ConstantOfShape of a size the sample's values decide: nothing bounds it before running."""
    nodes = [
        helper.make_node("ReduceMax", ["x"], ["peak"], keepdims=0),
        helper.make_node("Mul", ["peak", "million"], ["scaled"]),
        helper.make_node("Cast", ["scaled"], ["n"], to=TensorProto.INT64),
        helper.make_node("Unsqueeze", ["n", "axes"], ["side"]),
        helper.make_node("Concat", ["side", "side"], ["dims"], axis=0),
        filled("extra", "from_data", shape_input="dims"),
    ]
    million = numpy_helper.from_array(np.array(1e6, np.float32), "million")
    return beside_classifier(nodes, [million, int64s("axes", 0)])


CASES = [
    CostlyCase("chained-matmuls-6.9-tflops", chained_matmuls, EXHAUSTED, "MatMul 'square_0'"),
    CostlyCase("expand-to-16-gib", expand_to_16_gib, EXHAUSTED, "Expand 'spread'"),
    CostlyCase("tile-to-16-gib", tile_to_16_gib, EXHAUSTED, "Tile 'tiles'"),
    CostlyCase("resize-to-16-gib", resize_to_16_gib, EXHAUSTED, "Resize 'upsample'"),
    CostlyCase("matmuls-in-a-function", matmuls_inside_a_function, EXHAUSTED, "GFLOPs"),
    CostlyCase("constant-of-shape-from-data", size_from_the_data, INVALID, "from_data"),
]


def test_case_names_are_unique() -> None:
    names = [case.name for case in CASES]
    assert len(names) == len(set(names))


@pytest.mark.parametrize("case", CASES, ids=str)
def test_a_costly_model_is_refused_by_its_estimate_before_it_runs(
    case: CostlyCase, hostile_servers: Callable[[bool], HostileServer]
) -> None:
    server = hostile_servers(False)
    jobs_before = job_ids(server)

    started = time.monotonic()
    code, details, _ = run_submit(server, Submit(model=case.model()))
    seconds = time.monotonic() - started

    assert code is case.code, f"{case.name}: got {code.name}: {details}"
    assert_actionable(details, case.fragment)
    assert seconds < QUICKLY
    assert job_ids(server) == jobs_before
    assert_still_serving(server)
