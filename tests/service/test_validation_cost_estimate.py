"""The cost of one forward pass, estimated from the graph before the submit-time check runs it
(service/jobs/graph_cost.py): cheap, allocation-free, exact for the operators it counts,
conservative where shapes are unknown, and generous for real models."""

from __future__ import annotations

import time
import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from service.core.errors import ResourceExhausted
from service.jobs.graph_cost import (
    DEFAULT_LIMITS,
    GraphCost,
    Skeleton,
    check_cost,
    cost_skeleton,
    estimate_cost,
)
from service.jobs.validation import check_job_inputs
from tests.shared_support import ROOT, export_digits_mlp
from workers.engine.errors import UnsupportedModel
from workers.engine.spec import ModelFormat, ThreatModel

DEMO = ROOT / "client" / "demo_assets"
FEATURES, CLASSES = 64, 10


def classifier(
    nodes: list[onnx.NodeProto], weights: list[onnx.TensorProto], **kw: Any
) -> onnx.ModelProto:
    """``nodes`` computing ``extra`` beside a linear classifier x (N, 64) -> logits (N, 10)."""
    w = numpy_helper.from_array(np.zeros((FEATURES, CLASSES), np.float32), "W")
    graph = helper.make_graph(
        [
            *nodes,
            helper.make_node("ReduceMean", ["extra"], ["mean"], keepdims=0),
            helper.make_node("MatMul", ["x", "W"], ["linear"]),
            helper.make_node("Add", ["linear", "mean"], ["logits"]),
        ],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", FEATURES])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", CLASSES])],
        [w, *weights],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], **kw)
    model.ir_version = 8
    return model


def int64s(name: str, *values: int) -> onnx.TensorProto:
    return numpy_helper.from_array(np.array(values, np.int64), name)


def filled(size: int, output: str = "m0", name: str = "blow_up") -> onnx.NodeProto:
    one = helper.make_tensor("one", TensorProto.FLOAT, [1], [1e-3])
    return helper.make_node("ConstantOfShape", ["shape"], [output], name=name, value=one)


def chained_matmuls(size: int = 2048, depth: int = 400) -> onnx.ModelProto:
    nodes = [filled(size)]
    nodes += [
        helper.make_node("MatMul", [f"m{i}", f"m{i}"], [f"m{i + 1}"], name=f"square_{i}")
        for i in range(depth)
    ]
    nodes.append(helper.make_node("Identity", [f"m{depth}"], ["extra"]))
    return classifier(nodes, [int64s("shape", size, size)])


def estimate(model: onnx.ModelProto, shape: tuple[int, ...] = (1, FEATURES)) -> GraphCost:
    return estimate_cost(cost_skeleton(model), shape)


def test_the_findings_model_is_over_the_limit_and_its_costliest_node_is_named() -> None:
    started = time.perf_counter()
    cost = estimate(chained_matmuls())
    seconds = time.perf_counter() - started

    with pytest.raises(ResourceExhausted, match=r"6\.87 TFLOPs.*MatMul 'square_0' at 17\.2 GFLOPs"):
        check_cost(cost, DEFAULT_LIMITS)
    assert cost.flops >= 400 * 2 * 2048**3
    assert seconds < 0.5


def test_a_huge_tensor_is_estimated_without_being_allocated() -> None:
    model = classifier([filled(1 << 20, output="extra")], [int64s("shape", 1 << 20, 1 << 20)])

    tracemalloc.start()
    try:
        cost = estimate(model)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()

    assert peak < 32 * 2**20
    with pytest.raises(
        ResourceExhausted, match="ConstantOfShape 'blow_up' makes a tensor of 4 TiB"
    ):
        check_cost(cost, DEFAULT_LIMITS)


def test_an_expand_over_the_tensor_limit_is_refused_by_name() -> None:
    nodes = [helper.make_node("Expand", ["seed", "target"], ["extra"], name="spread")]
    seed = numpy_helper.from_array(np.ones(1, np.float32), "seed")
    cost = estimate(classifier(nodes, [seed, int64s("target", 65536, 65536)]))

    with pytest.raises(ResourceExhausted, match="Expand 'spread' makes a tensor of 16 GiB"):
        check_cost(cost, DEFAULT_LIMITS)


def test_a_costly_model_local_function_is_counted_where_it_is_called() -> None:
    body = [filled(1024, output="m0", name="inner")]
    body += [helper.make_node("MatMul", [f"m{i}", f"m{i}"], [f"m{i + 1}"]) for i in range(300)]
    body.append(helper.make_node("Identity", ["m300"], ["y"]))
    function = helper.make_function(
        "local", "Costly", ["shape"], ["y"], body, [helper.make_opsetid("", 17)]
    )
    call = helper.make_node("Costly", ["shape"], ["extra"], domain="local")
    model = classifier(
        [call],
        [int64s("shape", 1024, 1024)],
        functions=[function],
    )
    model.opset_import.append(helper.make_opsetid("local", 1))

    with pytest.raises(ResourceExhausted, match=r"644 GFLOPs, over the 200 GFLOPs.*MatMul"):
        check_cost(estimate(model), DEFAULT_LIMITS)


def test_a_size_computed_from_the_data_cannot_be_bounded_and_is_refused() -> None:
    nodes = [
        helper.make_node("ReduceMax", ["x"], ["peak"], keepdims=0),
        helper.make_node("Cast", ["peak"], ["n"], to=TensorProto.INT64),
        helper.make_node("Unsqueeze", ["n", "axes"], ["side"]),
        helper.make_node("Concat", ["side", "side"], ["shape"], axis=0),
        filled(0, output="extra", name="from_data"),
    ]
    model = classifier(nodes, [int64s("axes", 0)])

    with pytest.raises(UnsupportedModel, match=r"ConstantOfShape 'from_data'.*static shapes"):
        estimate(model)


def test_an_operator_the_server_does_not_know_is_refused_without_trusting_declared_shapes() -> None:
    node = helper.make_node("Mystery", ["x"], ["extra"], name="custom", domain="com.example")
    model = classifier([node], [])
    model.opset_import.append(helper.make_opsetid("com.example", 1))
    model.graph.value_info.append(helper.make_tensor_value_info("extra", TensorProto.FLOAT, [1]))

    with pytest.raises(UnsupportedModel, match="Mystery 'custom'"):
        estimate(model)


def test_an_unknown_size_from_a_shape_preserving_node_is_bounded_by_its_input() -> None:
    nodes = [
        helper.make_node("ReduceMax", ["x"], ["peak"], keepdims=0),
        helper.make_node("Cast", ["peak"], ["n"], to=TensorProto.INT64),
        helper.make_node("Unsqueeze", ["n", "axes"], ["flat"]),
        helper.make_node("Reshape", ["x", "flat"], ["extra"], name="reshaped"),
    ]
    cost = estimate(classifier(nodes, [int64s("axes", 0)]))

    check_cost(cost, DEFAULT_LIMITS)
    assert cost.flops < 10_000


def test_a_convolution_costs_two_flops_per_multiply_accumulate() -> None:
    weight = helper.make_tensor_value_info("k", TensorProto.FLOAT, [64, 3, 7, 7])
    conv = helper.make_node("Conv", ["x", "k"], ["y"], strides=[2, 2], pads=[3, 3, 3, 3])
    graph = helper.make_graph(
        [conv],
        "conv",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 224, 224]), weight],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])

    cost = estimate_cost(Skeleton(model, ("x",)), (1, 3, 224, 224))

    assert cost.flops == 2 * (64 * 112 * 112) * (3 * 7 * 7)


def test_resnet50_on_one_sample_is_about_4_gmacs_and_passes() -> None:
    cost = estimate_cost(Skeleton(resnet50(), ("x",)), (1, 3, 224, 224))

    assert 7.5e9 < cost.flops < 8.5e9
    check_cost(cost, DEFAULT_LIMITS)


def test_the_demo_model_and_its_data_pass_the_whole_check() -> None:
    check_job_inputs(
        ModelFormat.ONNX,
        DEMO / "digits_cnn.onnx",
        [DEMO / "digits_train.npz"],
        ThreatModel(),
    )


@pytest.mark.slow
def test_torch_exported_mlps_pass_the_estimate(tmp_path: Path) -> None:
    for dynamo in (False, True):
        path = tmp_path / f"mlp-{dynamo}.onnx"
        export_digits_mlp(path, dynamo=dynamo)

        cost = estimate(onnx.load(str(path)))

        check_cost(cost, DEFAULT_LIMITS)
        assert cost.flops > 2 * (64 * 32 + 32 * 10)


def resnet50() -> onnx.ModelProto:
    """ResNet-50's convolutions, batch norms folded, weights declared but not held."""
    nodes: list[onnx.NodeProto] = []
    weights: list[onnx.ValueInfoProto] = []

    def conv(x: str, out_channels: int, in_channels: int, k: int, stride: int = 1) -> str:
        name = f"c{len(nodes)}"
        weights.append(
            helper.make_tensor_value_info(
                f"{name}_w", TensorProto.FLOAT, [out_channels, in_channels, k, k]
            )
        )
        nodes.append(
            helper.make_node(
                "Conv", [x, f"{name}_w"], [name], strides=[stride] * 2, pads=[k // 2] * 4
            )
        )
        nodes.append(helper.make_node("Relu", [name], [f"{name}_r"]))
        return f"{name}_r"

    x = conv("x", 64, 3, 7, 2)
    nodes.append(
        helper.make_node(
            "MaxPool", [x], ["pool"], kernel_shape=[3, 3], strides=[2, 2], pads=[1] * 4
        )
    )
    x, channels = "pool", 64
    for width, blocks, stride in ((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)):
        for block in range(blocks):
            step = stride if block == 0 else 1
            y = conv(x, width, channels, 1)
            y = conv(y, width, width, 3, step)
            y = conv(y, 4 * width, width, 1)
            shortcut = conv(x, 4 * width, channels, 1, step) if block == 0 else x
            nodes.append(helper.make_node("Add", [y, shortcut], [f"sum{len(nodes)}"]))
            x, channels = nodes[-1].output[0], 4 * width
    nodes.append(helper.make_node("GlobalAveragePool", [x], ["gap"]))
    nodes.append(helper.make_node("Flatten", ["gap"], ["flat"]))
    weights.append(helper.make_tensor_value_info("fc_w", TensorProto.FLOAT, [2048, 1000]))
    nodes.append(helper.make_node("MatMul", ["flat", "fc_w"], ["logits"]))
    graph = helper.make_graph(
        nodes,
        "resnet50",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 224, 224]), *weights],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, None)],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.slow
@pytest.mark.parametrize("dynamo", [False, True], ids=["legacy", "dynamo"])
def test_a_torch_exported_mnist_cnn_passes_the_whole_check(tmp_path: Path, dynamo: bool) -> None:
    import torch
    from torch import nn

    torch.manual_seed(0)
    cnn = nn.Sequential(
        nn.Conv2d(1, 32, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(32, 64, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(64 * 14 * 14, 128),
        nn.ReLU(),
        nn.Linear(128, 10),
    ).eval()
    model, data = tmp_path / "cnn.onnx", tmp_path / "mnist-like.npz"
    torch.onnx.export(
        cnn,
        (torch.zeros(2, 1, 28, 28),),
        str(model),
        input_names=["x"],
        output_names=["logits"],
        dynamic_axes={"x": {0: "N"}, "logits": {0: "N"}},
        dynamo=dynamo,
        external_data=False,
    )
    rng = np.random.default_rng(0)
    np.savez(
        data,
        x=rng.uniform(0, 1, (8, 1, 28, 28)).astype(np.float32),
        y=rng.integers(0, 10, 8),
    )

    cost = estimate(onnx.load(str(model)), (1, 1, 28, 28))
    check_job_inputs(ModelFormat.ONNX, model, [data], ThreatModel())

    macs = 28 * 28 * (32 * 9 + 64 * 32 * 9) + 64 * 14 * 14 * 128 + 128 * 10
    assert 2 * macs <= cost.flops < 2.2 * macs
