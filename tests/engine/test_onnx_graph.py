"""Tests of workers.engine.models.onnx: parity with onnxruntime, training, write-back and
refusals.

Exports are made once per session (dynamo at opsets 18 and 20, legacy at 13 and 17, with and
without a dynamic batch) at batch size 2; everything is checked at batch size 5.
"""

from __future__ import annotations

import contextlib
import io
import os
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper
from torch import nn

from workers.engine.errors import (
    InvalidData,
    InvalidModel,
    UnsupportedModel,
    float_input_required,
)
from workers.engine.models.onnx import (
    OnnxClassifier,
    load_onnx_classifier,
    write_trained_onnx,
)

EXPORT_BATCH = 2
RUN_BATCH = 5
TOLERANCE = {"rtol": 1e-5, "atol": 1e-5}


# --------------------------------------------------------------------------------------------
# Models and exports
# --------------------------------------------------------------------------------------------


class MLP(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(12, 16), nn.ReLU(), nn.Linear(16, 5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class SmallCNN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, 4, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(64, 3),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class BatchNormCNN(nn.Module):
    """The input BatchNorm and the one after Linear survive export as BatchNormalization; the
    one after Conv is folded into it by both exporters."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.BatchNorm2d(1),
            nn.Conv2d(1, 4, 3, padding=1),
            nn.BatchNorm2d(4),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Dropout(0.3),
            nn.Flatten(),
            nn.Linear(64, 16),
            nn.BatchNorm1d(16),
            nn.ReLU(),
            nn.Dropout(0.2),
            nn.Linear(16, 3),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class SoftmaxMLP(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.mlp = MLP()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.mlp(x), dim=-1)


class ResidualBlock(nn.Module):
    """``view(x.size(0), -1)`` becomes Shape -> Gather -> Unsqueeze -> Concat -> Reshape in a
    dynamic legacy export and a constant [2, -1] target in a fixed one."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 2, 3, padding=1)
        self.norm = nn.BatchNorm2d(2)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(2, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.norm(self.conv(x)) + x)
        return self.head(self.pool(y).view(y.size(0), -1))


KINDS: dict[str, tuple[Callable[[], nn.Module], tuple[int, ...]]] = {
    "mlp": (MLP, (3, 4)),
    "cnn": (SmallCNN, (1, 8, 8)),
    "bn_cnn": (BatchNormCNN, (1, 8, 8)),
    "softmax": (SoftmaxMLP, (12,)),
    "residual": (ResidualBlock, (2, 6, 6)),
}
EXPORTERS = [("dynamo", 18), ("dynamo", 20), ("legacy", 13), ("legacy", 17)]


@dataclass(frozen=True)
class Case:
    kind: str
    exporter: str
    opset: int
    dynamic: bool

    def __str__(self) -> str:
        batch = "dynamic" if self.dynamic else "fixed"
        return f"{self.kind}-{self.exporter}{self.opset}-{batch}"


ALL_CASES = [
    Case(kind, exporter, opset, dynamic)
    for kind in KINDS
    for exporter, opset in EXPORTERS
    for dynamic in (False, True)
]
FIXED_CASES = [case for case in ALL_CASES if not case.dynamic]


def _trained_like(module: nn.Module) -> nn.Module:
    """Give BatchNorm layers statistics and affine terms that differ from the defaults, as in a
    trained model (exporters merge equal tensors, which a dedicated test covers)."""
    generator = torch.Generator().manual_seed(1)
    for layer in module.modules():
        if isinstance(layer, nn.BatchNorm1d | nn.BatchNorm2d):
            n = layer.num_features
            assert layer.running_mean is not None
            assert layer.running_var is not None
            layer.running_mean.copy_(torch.rand(n, generator=generator) - 0.5)
            layer.running_var.copy_(torch.rand(n, generator=generator) + 0.5)
            with torch.no_grad():
                layer.weight.copy_(torch.rand(n, generator=generator) + 0.5)
                layer.bias.copy_(torch.rand(n, generator=generator) - 0.5)
    return module.eval()


def _export(
    module: nn.Module, sample: torch.Tensor, path: Path, exporter: str, opset: int, dynamic: bool
) -> None:
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        if exporter == "dynamo":
            shapes = ({0: torch.export.Dim("batch")},) if dynamic else None
            program = torch.onnx.export(
                module,
                (sample,),
                None,
                dynamo=True,
                opset_version=opset,
                dynamic_shapes=shapes,
                verbose=False,
            )
            assert program is not None
            onnx.save(program.model_proto, path)
        else:
            axes = {"input": {0: "n"}, "logits": {0: "n"}} if dynamic else None
            torch.onnx.export(
                module,
                (sample,),
                path,
                dynamo=False,
                opset_version=opset,
                input_names=["input"],
                output_names=["logits"],
                dynamic_axes=axes,
            )


@pytest.fixture(scope="session")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Callable[[Case], Path]:
    root = tmp_path_factory.mktemp("exports")
    cache: dict[Case, Path] = {}

    def get(case: Case) -> Path:
        if case not in cache:
            factory, shape = KINDS[case.kind]
            torch.manual_seed(0)
            module = _trained_like(factory())
            path = root / f"{case}.onnx"
            _export(
                module,
                torch.randn(EXPORT_BATCH, *shape),
                path,
                case.exporter,
                case.opset,
                case.dynamic,
            )
            cache[case] = path
        return cache[case]

    return get


def _inputs(shape: Sequence[int], batch: int = RUN_BATCH, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((batch, *shape)).astype(np.float32)


def _session(model: Path | onnx.ModelProto) -> ort.InferenceSession:
    source = str(model) if isinstance(model, Path) else model.SerializeToString()
    return ort.InferenceSession(source, providers=["CPUExecutionProvider"])


def _ort_outputs(model: Path | onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    """onnxruntime's outputs for ``x``, in chunks of the model's fixed batch size if it has one."""
    session = _session(model)
    declared = session.get_inputs()[0]
    fixed = declared.shape[0] if isinstance(declared.shape[0], int) else None
    if fixed is None:
        return np.asarray(session.run(None, {declared.name: x})[0])
    starts = [*range(0, len(x) - fixed, fixed), len(x) - fixed]
    parts = [np.asarray(session.run(None, {declared.name: x[s : s + fixed]})[0]) for s in starts]
    result = np.empty((len(x), *parts[0].shape[1:]), dtype=parts[0].dtype)
    for start, part in zip(starts, parts, strict=True):
        result[start : start + fixed] = part
    return result


def _scores(model: OnnxClassifier, x: np.ndarray) -> np.ndarray:
    """The module's outputs in the graph's own terms (probabilities if the graph ends in
    Softmax)."""
    with torch.no_grad():
        logits = model.eval()(torch.from_numpy(x))
    if model.final_activation == "Softmax":
        logits = torch.softmax(logits, dim=-1)
    elif model.final_activation == "LogSoftmax":
        logits = torch.log_softmax(logits, dim=-1)
    return logits.numpy()


# --------------------------------------------------------------------------------------------
# Exported models
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", ALL_CASES, ids=str)
def test_module_matches_onnxruntime_at_another_batch_size(
    exported: Callable[[Case], Path], case: Case
) -> None:
    path = exported(case)
    model = load_onnx_classifier(path)
    x = _inputs(KINDS[case.kind][1])
    np.testing.assert_allclose(_scores(model, x), _ort_outputs(path, x), **TOLERANCE)


@pytest.mark.parametrize("case", FIXED_CASES, ids=str)
def test_gradients_reach_trainable_parameters_and_a_step_changes_the_loss(
    exported: Callable[[Case], Path], case: Case
) -> None:
    model = load_onnx_classifier(exported(case)).train()
    x = torch.from_numpy(_inputs(KINDS[case.kind][1], batch=8))
    target = torch.arange(8) % model.num_classes
    optimiser = torch.optim.SGD(model.parameters(), lr=0.05)

    loss = nn.functional.cross_entropy(model(x), target)
    loss.backward()
    optimiser.step()

    named = dict(model.named_parameters())
    assert len(named) == len(model.trainable_parameter_names) >= 4
    grads = [p.grad for p in named.values()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert sum(float(g.abs().sum()) for g in grads if g is not None) > 0
    with torch.no_grad():
        assert float(nn.functional.cross_entropy(model(x), target)) != pytest.approx(float(loss))


@pytest.mark.parametrize("case", ALL_CASES, ids=str)
def test_written_model_matches_module_after_training_with_symbolic_batch(
    exported: Callable[[Case], Path], case: Case, tmp_path: Path
) -> None:
    model = load_onnx_classifier(exported(case))
    shape = KINDS[case.kind][1]
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
        model.train()(torch.from_numpy(_inputs(shape, batch=8, seed=3)))
    out = tmp_path / "hardened.onnx"

    write_trained_onnx(model, out)

    written = onnx.load(out)
    onnx.checker.check_model(written)
    for value in (written.graph.input[0], written.graph.output[0]):
        batch_dim = value.type.tensor_type.shape.dim[0]
        assert not batch_dim.HasField("dim_value")
        assert batch_dim.dim_param
    x = _inputs(shape)
    np.testing.assert_allclose(_ort_outputs(out, x), _scores(model, x), **TOLERANCE)


@pytest.mark.parametrize("exporter", EXPORTERS, ids=lambda e: f"{e[0]}{e[1]}")
def test_softmax_model_trains_on_logits_and_keeps_softmax_output(
    exported: Callable[[Case], Path], exporter: tuple[str, int], tmp_path: Path
) -> None:
    path = exported(Case("softmax", exporter[0], exporter[1], dynamic=True))
    model = load_onnx_classifier(path)
    out = tmp_path / "hardened.onnx"
    write_trained_onnx(model, out)

    assert model.final_activation == "Softmax"
    assert model.output_is_probability
    original, written = onnx.load(path), onnx.load(out)
    assert written.graph.node[-1].op_type == "Softmax"
    assert [n.op_type for n in written.graph.node] == [n.op_type for n in original.graph.node]
    assert written.graph.output[0].name == original.graph.output[0].name
    x = _inputs((12,))
    probabilities = _ort_outputs(out, x)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)
    with torch.no_grad():
        logits = model.eval()(torch.from_numpy(x)).numpy()
    assert not np.allclose(logits.sum(axis=1), 1.0)


def test_written_model_keeps_the_users_graph_structure(
    exported: Callable[[Case], Path], tmp_path: Path
) -> None:
    path = exported(Case("cnn", "dynamo", 18, dynamic=True))
    out = tmp_path / "hardened.onnx"
    write_trained_onnx(load_onnx_classifier(path), out)

    original, written = onnx.load(path), onnx.load(out)
    assert [(n.op_type, list(n.input), list(n.output)) for n in written.graph.node] == [
        (n.op_type, list(n.input), list(n.output)) for n in original.graph.node
    ]
    assert [i.name for i in written.graph.initializer] == [
        i.name for i in original.graph.initializer
    ]
    for before, after in zip(original.graph.initializer, written.graph.initializer, strict=True):
        np.testing.assert_array_equal(numpy_helper.to_array(before), numpy_helper.to_array(after))


def test_describes_the_classifier(exported: Callable[[Case], Path]) -> None:
    model = load_onnx_classifier(exported(Case("cnn", "legacy", 17, dynamic=False)))

    assert (model.input_name, model.output_name) == ("input", "logits")
    assert model.input_shape == (1, 8, 8)
    assert model.num_classes == 3
    assert model.opset == 17
    assert model.final_activation is None
    assert not model.output_is_probability
    assert set(model.trainable_parameter_names) == {
        "body.0.weight",
        "body.0.bias",
        "body.4.weight",
        "body.4.bias",
    }


def test_only_weight_initializers_are_trainable(exported: Callable[[Case], Path]) -> None:
    model = load_onnx_classifier(exported(Case("mlp", "dynamo", 18, dynamic=False)))

    shape_constants = [n for n, b in model.named_buffers() if b.dtype == torch.int64]
    assert shape_constants
    assert not any(b.requires_grad for b in model.buffers())
    assert sorted(model.trainable_parameter_names) == [
        "body.1.bias",
        "body.1.weight",
        "body.3.bias",
        "body.3.weight",
    ]


@pytest.mark.parametrize("exporter", EXPORTERS, ids=lambda e: f"{e[0]}{e[1]}")
def test_batchnorm_layers_train_with_batch_statistics_and_are_reported(
    exported: Callable[[Case], Path], exporter: tuple[str, int]
) -> None:
    path = exported(Case("bn_cnn", exporter[0], exporter[1], False))
    model = load_onnx_classifier(path)
    stats = {name: b.clone() for name, b in model.named_buffers() if b.is_floating_point()}

    model.train()(torch.from_numpy(_inputs((1, 8, 8), batch=8)))

    changed = [
        name
        for name, b in model.named_buffers()
        if name in stats and not torch.equal(b, stats[name])
    ]
    layers = sum(n.op_type == "BatchNormalization" for n in onnx.load(path).graph.node)
    assert layers >= 1
    assert len(changed) == 2 * layers
    assert any(
        f"{layers} BatchNormalization layer(s) train with batch statistics" in n
        for n in model.notes
    )
    assert any("BatchNorm folded into" in n for n in model.notes)


def test_momentum_of_running_statistics_follows_the_node_attribute() -> None:
    scale, bias = np.ones(2, np.float32), np.zeros(2, np.float32) + 0.1
    mean, var = np.zeros(2, np.float32) + 0.2, np.ones(2, np.float32) * 2
    model = _load(
        _graph(
            [
                helper.make_node(
                    "BatchNormalization", ["x", "s", "b", "m", "v"], ["h"], momentum=0.75
                )
            ],
            (2,),
            opset=15,
            inits={"s": scale, "b": bias, "m": mean, "v": var},
        )
    )
    x = torch.randn(6, 2)

    model.train()(x)

    running_mean = model.onnx_tensor("m")
    expected = 0.75 * mean + 0.25 * x.mean(dim=0).numpy()
    np.testing.assert_allclose(running_mean.numpy(), expected, rtol=1e-6)


@pytest.mark.parametrize(
    "exporter", [("dynamo", 18), ("legacy", 13)], ids=lambda e: f"{e[0]}{e[1]}"
)
def test_merged_batchnorm_initializers_are_untied(
    exporter: tuple[str, int], tmp_path: Path
) -> None:
    torch.manual_seed(0)
    path = tmp_path / "fresh.onnx"
    _export(BatchNormCNN().eval(), torch.randn(EXPORT_BATCH, 1, 8, 8), path, *exporter, False)
    model = load_onnx_classifier(path)
    parameters = {id(p) for p in model.parameters()}

    model.train()(torch.from_numpy(_inputs((1, 8, 8), batch=8)))
    write_trained_onnx(model, tmp_path / "hardened.onnx")

    assert any("untied" in note for note in model.notes)
    assert not any(id(b) in parameters for b in model.buffers())
    x = _inputs((1, 8, 8))
    np.testing.assert_allclose(
        _ort_outputs(tmp_path / "hardened.onnx", x), _scores(model, x), **TOLERANCE
    )


def test_fixed_batch_export_is_reported(exported: Callable[[Case], Path]) -> None:
    model = load_onnx_classifier(exported(Case("mlp", "dynamo", 18, dynamic=False)))

    assert any("fixed to 2 at export" in n and "Reshape" in n for n in model.notes)


def test_forward_refuses_inputs_of_the_wrong_shape(exported: Callable[[Case], Path]) -> None:
    model = load_onnx_classifier(exported(Case("cnn", "dynamo", 18, dynamic=True)))

    with pytest.raises(InvalidData, match=r"\[batch, 1, 8, 8\]"):
        model(torch.zeros(2, 3, 8, 8))


# --------------------------------------------------------------------------------------------
# Hand-made graphs
# --------------------------------------------------------------------------------------------


def _ir_version(opset: int) -> int:
    return 8 if opset <= 17 else 9 if opset <= 19 else 10


def _graph(
    nodes: Sequence[onnx.NodeProto],
    shape: Sequence[int | str | None],
    *,
    opset: int,
    inits: dict[str, np.ndarray] | None = None,
    output: str = "h",
    flatten: bool = True,
    batch: int | str = "N",
    inputs: Sequence[onnx.ValueInfoProto] | None = None,
    outputs: Sequence[onnx.ValueInfoProto] | None = None,
    domains: dict[str, int] | None = None,
) -> onnx.ModelProto:
    """x [batch, *shape] -> nodes -> ``output`` -> Flatten -> y."""
    nodes = list(nodes)
    if flatten:
        nodes.append(helper.make_node("Flatten", [output], ["y"]))
    graph = helper.make_graph(
        nodes,
        "g",
        list(inputs or [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, *shape])]),
        list(outputs or [helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, None])]),
        [numpy_helper.from_array(v, k) for k, v in (inits or {}).items()],
    )
    opsets = [helper.make_opsetid("", opset)]
    opsets += [helper.make_opsetid(d, v) for d, v in (domains or {}).items()]
    return helper.make_model(graph, opset_imports=opsets, ir_version=_ir_version(opset))


def _save(model: onnx.ModelProto, path: Path) -> Path:
    path.write_bytes(model.SerializeToString())
    return path


def _load(model: onnx.ModelProto) -> OnnxClassifier:
    return OnnxClassifier(model)


def _f(*shape: int, seed: int = 0, positive: bool = False) -> np.ndarray:
    values = np.random.default_rng(seed).standard_normal(shape).astype(np.float32)
    return np.abs(values) + 0.5 if positive else values


def _i(*values: int) -> np.ndarray:
    return np.asarray(values, dtype=np.int64)


def _n(
    op: str, inputs: Sequence[str], outputs: Sequence[str] = ("h",), **attrs: Any
) -> onnx.NodeProto:
    return helper.make_node(op, list(inputs), list(outputs), **attrs)


@dataclass(frozen=True)
class OpCase:
    name: str
    nodes: tuple[onnx.NodeProto, ...]
    shape: tuple[int, ...]
    opset: int
    inits: tuple[tuple[str, np.ndarray], ...] = ()

    def __str__(self) -> str:
        return self.name


def _case(
    name: str,
    nodes: Sequence[onnx.NodeProto] | onnx.NodeProto,
    shape: Sequence[int],
    opset: int = 17,
    **inits: np.ndarray,
) -> OpCase:
    listed = (nodes,) if isinstance(nodes, onnx.NodeProto) else tuple(nodes)
    return OpCase(name, listed, tuple(shape), opset, tuple(inits.items()))


C4 = (2, 7, 7)
OP_CASES = [
    _case(
        "conv_same_upper_stride2",
        _n("Conv", ["x", "w", "b"], auto_pad="SAME_UPPER", strides=[2, 2]),
        C4,
        w=_f(3, 2, 4, 4),
        b=_f(3),
    ),
    _case(
        "conv_same_lower",
        _n("Conv", ["x", "w"], auto_pad="SAME_LOWER", strides=[2, 1]),
        C4,
        w=_f(3, 2, 4, 2),
    ),
    _case("conv_valid", _n("Conv", ["x", "w"], auto_pad="VALID"), C4, w=_f(3, 2, 3, 3)),
    _case(
        "conv_groups_dilations_asymmetric_pads",
        _n("Conv", ["x", "w", "b"], group=2, dilations=[2, 1], pads=[0, 1, 2, 1]),
        (4, 7, 7),
        w=_f(4, 2, 3, 3),
        b=_f(4),
    ),
    _case(
        "conv1d",
        _n("Conv", ["x", "w", "b"], pads=[1, 1], strides=[2]),
        (3, 9),
        w=_f(4, 3, 3),
        b=_f(4),
    ),
    _case(
        "conv_transpose_output_padding",
        _n(
            "ConvTranspose",
            ["x", "w", "b"],
            strides=[2, 2],
            pads=[1, 0, 1, 0],
            output_padding=[1, 1],
        ),
        C4,
        w=_f(2, 3, 3, 3),
        b=_f(3),
    ),
    _case(
        "conv_transpose_output_shape_grouped",
        _n("ConvTranspose", ["x", "w"], group=2, strides=[2, 2], output_shape=[12, 13]),
        C4,
        w=_f(2, 2, 3, 3),
    ),
    _case(
        "conv_transpose_same_upper",
        _n("ConvTranspose", ["x", "w"], strides=[2, 2], auto_pad="SAME_UPPER"),
        C4,
        w=_f(2, 3, 2, 2),
    ),
    _case(
        "gemm_alpha_beta_transB",
        _n("Gemm", ["x", "w", "c"], alpha=0.5, beta=2.0, transB=1),
        (6,),
        w=_f(4, 6),
        c=_f(4),
    ),
    _case("gemm_no_transpose", _n("Gemm", ["x", "w", "c"]), (6,), w=_f(6, 4), c=_f(1, 4)),
    _case(
        "matmul_3d_with_bias",
        [_n("MatMul", ["x", "w"], ["m"]), _n("Add", ["m", "b"])],
        (4, 6),
        w=_f(6, 5),
        b=_f(5),
    ),
    _case(
        "maxpool_ceil_mode_pads",
        _n("MaxPool", ["x"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1], ceil_mode=1),
        C4,
    ),
    _case("maxpool_dilations", _n("MaxPool", ["x"], kernel_shape=[2, 2], dilations=[2, 2]), C4),
    _case(
        "maxpool_same_upper",
        _n("MaxPool", ["x"], kernel_shape=[2, 2], strides=[2, 2], auto_pad="SAME_UPPER"),
        C4,
    ),
    _case(
        "maxpool_asymmetric_pads", _n("MaxPool", ["x"], kernel_shape=[3, 3], pads=[0, 1, 2, 0]), C4
    ),
    _case("maxpool1d", _n("MaxPool", ["x"], kernel_shape=[3], strides=[2]), (3, 9)),
    _case(
        "avgpool_exclude_pad", _n("AveragePool", ["x"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]), C4
    ),
    _case(
        "avgpool_include_pad",
        _n("AveragePool", ["x"], kernel_shape=[3, 3], pads=[1, 1, 1, 1], count_include_pad=1),
        C4,
    ),
    _case(
        "avgpool_ceil_mode",
        _n("AveragePool", ["x"], kernel_shape=[2, 2], strides=[2, 2], ceil_mode=1),
        C4,
    ),
    _case(
        "avgpool_asymmetric_exclude_pad",
        _n("AveragePool", ["x"], kernel_shape=[3, 2], pads=[0, 1, 2, 0]),
        C4,
    ),
    _case(
        "avgpool_asymmetric_include_pad",
        _n("AveragePool", ["x"], kernel_shape=[3, 2], pads=[0, 1, 2, 0], count_include_pad=1),
        C4,
    ),
    _case(
        "avgpool_same_lower",
        _n("AveragePool", ["x"], kernel_shape=[2, 2], strides=[2, 2], auto_pad="SAME_LOWER"),
        C4,
    ),
    _case("global_average_pool", _n("GlobalAveragePool", ["x"]), C4),
    _case("global_max_pool", _n("GlobalMaxPool", ["x"]), C4),
    _case(
        "batchnorm_inference",
        _n("BatchNormalization", ["x", "s", "b", "m", "v"], epsilon=1e-3),
        C4,
        s=_f(2),
        b=_f(2),
        m=_f(2),
        v=_f(2, positive=True),
    ),
    _case("instance_norm", _n("InstanceNormalization", ["x", "s", "b"]), C4, s=_f(2), b=_f(2)),
    _case(
        "layer_norm_last_axis", _n("LayerNormalization", ["x", "s", "b"]), (3, 6), s=_f(6), b=_f(6)
    ),
    _case(
        "layer_norm_broadcast_scale",
        _n("LayerNormalization", ["x", "s", "b"], axis=1),
        (3, 6),
        s=_f(1, 6),
        b=_f(6),
    ),
    _case("leaky_relu", _n("LeakyRelu", ["x"], alpha=0.2), (6,)),
    _case("prelu", _n("PRelu", ["x", "s"]), C4, s=_f(2, 1, 1)),
    _case("elu", _n("Elu", ["x"], alpha=0.7), (6,)),
    _case("selu", _n("Selu", ["x"]), (6,)),
    _case(
        "sigmoid_tanh_softplus",
        [
            _n("Sigmoid", ["x"], ["a"]),
            _n("Tanh", ["x"], ["t"]),
            _n("Softplus", ["x"], ["p"]),
            _n("Concat", ["a", "t", "p"], axis=1),
        ],
        (6,),
    ),
    _case("hard_sigmoid", _n("HardSigmoid", ["x"], alpha=0.3, beta=0.4), (6,)),
    _case("hard_swish", _n("HardSwish", ["x"]), (6,), opset=14),
    _case("gelu_opset20", _n("Gelu", ["x"]), (6,), opset=20),
    _case("gelu_tanh_opset20", _n("Gelu", ["x"], approximate="tanh"), (6,), opset=20),
    _case(
        "gelu_erf_decomposition",
        [
            _n("Div", ["x", "r2"], ["d"]),
            _n("Erf", ["d"], ["e"]),
            _n("Add", ["e", "one"], ["a"]),
            _n("Mul", ["x", "a"], ["m"]),
            _n("Mul", ["m", "half"]),
        ],
        (6,),
        r2=np.float32(1.4142135),
        one=np.float32(1.0),
        half=np.float32(0.5),
    ),
    _case(
        "clip_inputs_opset11",
        _n("Clip", ["x", "lo", "hi"]),
        (6,),
        opset=11,
        lo=np.float32(-0.5),
        hi=np.float32(0.7),
    ),
    _case("clip_max_only", _n("Clip", ["x", "", "hi"]), (6,), opset=13, hi=np.float32(0.7)),
    _case("clip_attributes_opset9", _n("Clip", ["x"], min=-0.5, max=0.7), (6,), opset=9),
    _case(
        "min_max_variadic",
        [
            _n("Min", ["x", "a", "b"], ["lo"]),
            _n("Max", ["x", "a"], ["hi"]),
            _n("Sub", ["hi", "lo"]),
        ],
        (6,),
        a=_f(6),
        b=_f(1),
    ),
    _case(
        "arithmetic",
        [
            _n("Abs", ["x"], ["a"]),
            _n("Sqrt", ["a"], ["s"]),
            _n("Log", ["s"], ["l"]),
            _n("Exp", ["l"], ["e"]),
            _n("Neg", ["e"], ["n"]),
            _n("Pow", ["a", "p"], ["w"]),
            _n("Div", ["n", "w"], ["d"]),
            _n("Sub", ["d", "x"]),
        ],
        (6,),
        p=np.float32(1.5),
    ),
    _case(
        "reshape_transpose",
        [_n("Reshape", ["x", "target"], ["r"]), _n("Transpose", ["r"], perm=[0, 2, 1])],
        (12,),
        target=_i(0, 3, -1),
    ),
    _case(
        "squeeze_unsqueeze_attributes_opset11",
        [_n("Unsqueeze", ["x"], ["u"], axes=[1, -1]), _n("Squeeze", ["u"], axes=[1])],
        (6,),
        opset=11,
    ),
    _case(
        "squeeze_unsqueeze_inputs_opset13",
        [_n("Unsqueeze", ["x", "ax"], ["u"]), _n("Squeeze", ["u", "sq"])],
        (6,),
        opset=13,
        ax=_i(1, -1),
        sq=_i(1),
    ),
    _case(
        "split_attribute_opset11",
        [
            _n("Split", ["x"], ["a", "b"], axis=1, split=[2, 4]),
            _n("Mul", ["a", "a"], ["c"]),
            _n("Concat", ["b", "c"], axis=1),
        ],
        (6,),
        opset=11,
    ),
    _case(
        "split_input_opset13",
        [_n("Split", ["x", "sp"], ["a", "b"], axis=1), _n("Concat", ["b", "a"], axis=1)],
        (6,),
        opset=13,
        sp=_i(4, 2),
    ),
    _case(
        "split_num_outputs_uneven_opset18",
        [
            _n("Split", ["x"], ["a", "b", "c"], axis=1, num_outputs=3),
            _n("Concat", ["c", "b", "a"], axis=1),
        ],
        (7,),
        opset=18,
    ),
    _case(
        "slice_negative_step",
        _n("Slice", ["x", "st", "en", "ax", "sp"]),
        C4,
        st=_i(-1, 5),
        en=_i(-100, 0),
        ax=_i(2, 3),
        sp=_i(-1, -2),
    ),
    _case(
        "slice_clamped_ends",
        _n("Slice", ["x", "st", "en", "ax"]),
        C4,
        st=_i(1),
        en=_i(2**62),
        ax=_i(-1),
    ),
    _case(
        "slice_attributes_opset9",
        _n("Slice", ["x"], starts=[1, 0], ends=[3, -1], axes=[1, 2]),
        C4,
        opset=9,
    ),
    _case("gather_constant_indices", _n("Gather", ["x", "idx"], axis=1), (6,), idx=_i(5, -1, 0, 2)),
    _case(
        "gather_scalar_index",
        _n("Gather", ["x", "idx"], axis=2),
        C4,
        idx=np.asarray(3, dtype=np.int64),
    ),
    _case(
        "shape_constant_of_shape_expand",
        [
            _n("Shape", ["x"], ["s"]),
            _n("ConstantOfShape", ["s"], ["z"], value=numpy_helper.from_array(_f(1))),
            _n("Expand", ["b", "s"], ["e"]),
            _n("Add", ["z", "e"]),
        ],
        (6,),
        b=_f(1, 6),
    ),
    _case(
        "where_equal_cast",
        [
            _n("Cast", ["x"], ["i"], to=TensorProto.INT64),
            _n("Equal", ["i", "zero"], ["eq"]),
            _n("Where", ["eq", "x", "minus"]),
        ],
        (6,),
        zero=np.asarray(0, np.int64),
        minus=np.float32(-7),
    ),
    _case(
        "pad_constant_opset11",
        _n("Pad", ["x", "p", "v"]),
        C4,
        opset=11,
        p=_i(0, 0, 1, 2, 0, 1, 0, 1),
        v=np.float32(0.5),
    ),
    _case("pad_reflect", _n("Pad", ["x", "p"], mode="reflect"), C4, p=_i(0, 0, 2, 1, 0, 0, 1, 2)),
    _case(
        "pad_edge_last_axis", _n("Pad", ["x", "p"], mode="edge"), C4, p=_i(0, 0, 0, 3, 0, 0, 0, 2)
    ),
    _case(
        "pad_axes_opset18",
        _n("Pad", ["x", "p", "", "ax"]),
        C4,
        opset=18,
        p=_i(1, 2, 3, 4),
        ax=_i(-1, 2),
    ),
    _case(
        "pad_attributes_opset9",
        _n("Pad", ["x"], pads=[0, 0, 1, 1, 0, 0, 1, 1], value=2.0),
        C4,
        opset=9,
    ),
    _case("reduce_mean_attribute_opset13", _n("ReduceMean", ["x"], axes=[2, 3]), C4, opset=13),
    _case(
        "reduce_mean_input_opset18",
        _n("ReduceMean", ["x", "ax"], keepdims=0),
        C4,
        opset=18,
        ax=_i(-1, -2),
    ),
    _case("reduce_sum_attribute_opset11", _n("ReduceSum", ["x"], axes=[1]), C4, opset=11),
    _case("reduce_sum_input_opset13", _n("ReduceSum", ["x", "ax"]), C4, opset=13, ax=_i(2)),
    _case("reduce_max_opset18", _n("ReduceMax", ["x", "ax"], keepdims=0), C4, opset=18, ax=_i(3)),
    _case(
        "reduce_max_all_axes_opset13",
        [_n("ReduceMax", ["x"], ["r"]), _n("Sub", ["x", "r"])],
        C4,
        opset=13,
    ),
    _case("softmax_coerced_opset11", _n("Softmax", ["x"], axis=2), C4, opset=11),
    _case("softmax_axis_opset13", _n("Softmax", ["x"], axis=1), C4, opset=13),
    _case("log_softmax_inner", _n("LogSoftmax", ["x"], axis=-1), C4, opset=13),
    _case(
        "dropout_inference_identity_constant",
        [
            _n("Dropout", ["x", "r"], ["d"]),
            _n("Identity", ["d"], ["i"]),
            _n("Constant", [], ["c"], value=numpy_helper.from_array(_f(6))),
            _n("Mul", ["i", "c"]),
        ],
        (6,),
        r=np.float32(0.4),
    ),
    _case(
        "shape_subgraph_reshape_opset11",
        [
            _n("Shape", ["x"], ["s"]),
            _n("Gather", ["s", "zero"], ["n"], axis=0),
            _n("Unsqueeze", ["n"], ["n1"], axes=[0]),
            _n("Concat", ["n1", "minus"], ["t"], axis=0),
            _n("Reshape", ["x", "t"]),
        ],
        C4,
        opset=11,
        zero=np.asarray(0, np.int64),
        minus=_i(-1),
    ),
    _case(
        "shape_subgraph_reshape_opset13",
        [
            _n("Shape", ["x"], ["s"]),
            _n("Gather", ["s", "zero"], ["n"], axis=0),
            _n("Unsqueeze", ["n", "ax"], ["n1"]),
            _n("Concat", ["n1", "minus"], ["t"], axis=0),
            _n("Reshape", ["x", "t"]),
        ],
        C4,
        opset=13,
        zero=np.asarray(0, np.int64),
        ax=_i(0),
        minus=_i(-1),
    ),
    _case(
        "shape_slice_opset15",
        [
            _n("Shape", ["x"], ["s"], start=0, end=1),
            _n("Concat", ["s", "minus"], ["t"], axis=0),
            _n("Reshape", ["x", "t"]),
        ],
        C4,
        opset=15,
        minus=_i(-1),
    ),
    _case(
        "comparisons_and_logic",
        [
            _n("Greater", ["x", "a"], ["g"]),
            _n("Less", ["x", "b"], ["l"]),
            _n("GreaterOrEqual", ["x", "b"], ["ge"]),
            _n("LessOrEqual", ["x", "a"], ["le"]),
            _n("Or", ["g", "l"], ["o"]),
            _n("And", ["ge", "le"], ["an"]),
            _n("Xor", ["o", "an"], ["xo"]),
            _n("Not", ["xo"], ["n"]),
            _n("Where", ["n", "x", "a"]),
        ],
        (6,),
        a=_f(6),
        b=np.float32(-0.2),
    ),
    _case(
        "elementwise_extras",
        [
            _n("Abs", ["x"], ["a"]),
            _n("Add", ["a", "one"], ["a1"]),
            _n("Reciprocal", ["a1"], ["r"]),
            _n("Floor", ["x"], ["f"]),
            _n("Ceil", ["x"], ["c"]),
            _n("Round", ["x"], ["ro"]),
            _n("Sign", ["x"], ["sg"]),
            _n("Sin", ["x"], ["si"]),
            _n("Cos", ["x"], ["co"]),
            _n("Softsign", ["x"], ["ss"]),
            _n("Mish", ["x"], ["mi"]),
            _n("Mod", ["x", "m"], ["mo"], fmod=1),
            _n("Sum", ["r", "f", "c", "ro"], ["su"]),
            _n("Mean", ["sg", "si", "co"], ["me"]),
            _n("Concat", ["su", "me", "ss", "mi", "mo"], axis=1),
        ],
        (6,),
        opset=18,
        one=np.float32(1.0),
        m=np.float32(0.3),
    ),
    _case(
        "tile_range_size_castlike",
        [
            _n("Tile", ["x", "reps"], ["t"]),
            _n("Range", ["zero", "twelve", "one"], ["r"]),
            _n("Size", ["x"], ["n"]),
            _n("CastLike", ["n", "x"], ["nf"]),
            _n("Div", ["r", "nf"], ["d"]),
            _n("Add", ["t", "d"]),
        ],
        (6,),
        opset=15,
        reps=_i(1, 2),
        zero=np.float32(0),
        twelve=np.float32(12),
        one=np.float32(1),
    ),
    _case(
        "integer_division_truncates",
        [
            _n("Shape", ["x"], ["s"]),
            _n("Gather", ["s", "last"], ["d"], axis=0),
            _n("Div", ["d", "three"], ["q"]),
            _n("Cast", ["q"], ["qf"], to=TensorProto.FLOAT),
            _n("Mul", ["x", "qf"]),
        ],
        (4, 7),
        last=np.asarray(-1, np.int64),
        three=np.asarray(-3, np.int64),
    ),
    _case("einsum", _n("Einsum", ["x", "w"], equation="bi,ij->bj"), (6,), opset=12, w=_f(6, 4)),
    _case(
        "reductions_extra_opset18",
        [
            _n("Abs", ["x"], ["a"]),
            _n("ReduceMin", ["x", "ax"], ["r1"]),
            _n("ReduceProd", ["x", "ax"], ["r2"]),
            _n("ReduceL1", ["x", "ax"], ["r3"]),
            _n("ReduceL2", ["x", "ax"], ["r4"]),
            _n("ReduceSumSquare", ["x", "ax"], ["r5"]),
            _n("ReduceLogSumExp", ["x", "ax"], ["r6"]),
            _n("ReduceLogSum", ["a", "ax"], ["r7"]),
            _n("Concat", ["r1", "r2", "r3", "r4", "r5", "r6", "r7"], axis=1),
        ],
        C4,
        opset=18,
        ax=_i(2, -1),
    ),
    _case(
        "argmax_argmin",
        [
            _n("ArgMax", ["x"], ["i"], axis=2, select_last_index=1),
            _n("ArgMin", ["x"], ["j"], axis=-1, keepdims=0),
            _n("Cast", ["i"], ["fi"], to=TensorProto.FLOAT),
            _n("Cast", ["j"], ["fj"], to=TensorProto.FLOAT),
            _n("Add", ["x", "fi"], ["s"]),
            _n("Flatten", ["s"], ["fs"]),
            _n("Flatten", ["fj"], ["ff"]),
            _n("Concat", ["fs", "ff"], axis=1),
        ],
        C4,
    ),
    _case("lrn", _n("LRN", ["x"], size=3, alpha=0.01, beta=0.7, bias=1.5), (4, 5, 5)),
    _case("trilu_upper_above_diagonal", _n("Trilu", ["x", "k"]), C4, opset=14, k=_i(1)),
    _case("trilu_lower", _n("Trilu", ["x"], upper=0), C4, opset=14),
    _case("cumsum", _n("CumSum", ["x", "axis"]), C4, axis=np.asarray(-1, np.int64)),
    _case(
        "cumsum_exclusive_reverse",
        _n("CumSum", ["x", "axis"], exclusive=1, reverse=1),
        C4,
        axis=np.asarray(1, np.int32),
    ),
    _case(
        "gather_nd",
        [
            _n("Transpose", ["x"], ["t"], perm=[1, 2, 3, 0]),
            _n("GatherND", ["t", "idx"], ["g"]),
            _n("Transpose", ["g"], perm=[2, 0, 1]),
        ],
        C4,
        idx=np.asarray([[0, 3], [1, -2], [1, 6]], np.int64),
    ),
    _case(
        "gather_nd_batch_dims",
        [
            _n("Transpose", ["x"], ["t"], perm=[1, 2, 3, 0]),
            _n("GatherND", ["t", "idx"], ["g"], batch_dims=1),
            _n("Transpose", ["g"], perm=[3, 0, 1, 2]),
        ],
        C4,
        idx=np.asarray([[[0], [4], [6]], [[2], [-1], [3]]], np.int64),
    ),
    _case(
        "isnan_in_where",
        [_n("IsNaN", ["x"], ["nan"]), _n("Where", ["nan", "zero", "x"])],
        C4,
        zero=np.asarray(0.0, np.float32),
    ),
]


@pytest.mark.parametrize("case", OP_CASES, ids=str)
def test_operator_matches_onnxruntime(case: OpCase) -> None:
    model_proto = _graph(case.nodes, case.shape, opset=case.opset, inits=dict(case.inits))
    model = OnnxClassifier(model_proto)
    x = _inputs(case.shape)
    np.testing.assert_allclose(_scores(model, x), _ort_outputs(model_proto, x), **TOLERANCE)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    kernel=st.tuples(st.integers(1, 3), st.integers(1, 3)),
    stride=st.tuples(st.integers(1, 3), st.integers(1, 3)),
    pads=st.tuples(st.integers(0, 1), st.integers(0, 1), st.integers(0, 1), st.integers(0, 1)),
    ceil_mode=st.booleans(),
    include_pad=st.booleans(),
    op=st.sampled_from(["AveragePool", "MaxPool"]),
)
def test_pooling_matches_onnxruntime_for_any_window(
    kernel: tuple[int, int],
    stride: tuple[int, int],
    pads: tuple[int, int, int, int],
    ceil_mode: bool,
    include_pad: bool,
    op: str,
) -> None:
    attrs: dict[str, Any] = {
        "kernel_shape": list(kernel),
        "strides": list(stride),
        "pads": [min(p, k - 1) for p, k in zip(pads, kernel * 2, strict=True)],
        "ceil_mode": int(ceil_mode),
    }
    if op == "AveragePool":
        attrs["count_include_pad"] = int(include_pad)
    model_proto = _graph([_n(op, ["x"], **attrs)], (2, 7, 6), opset=19)
    x = _inputs((2, 7, 6), batch=2)
    np.testing.assert_allclose(
        _scores(OnnxClassifier(model_proto), x), _ort_outputs(model_proto, x), **TOLERANCE
    )


@settings(max_examples=40, deadline=None)
@given(
    start=st.integers(-9, 9),
    end=st.integers(-9, 9),
    step=st.integers(-3, 3).filter(bool),
    axis=st.sampled_from([1, 2, -1]),
)
def test_slice_matches_onnxruntime_for_any_bounds(
    start: int, end: int, step: int, axis: int
) -> None:
    model_proto = _graph(
        [
            _n("Slice", ["x", "st", "en", "ax", "sp"], ["s"]),
            _n("Pad", ["s", "p"]),
        ],  # keeps the output non-empty
        (3, 7),
        opset=13,
        inits={
            "st": _i(start),
            "en": _i(end),
            "ax": _i(axis),
            "sp": _i(step),
            "p": _i(0, 1, 1, 0, 1, 1),
        },
    )
    x = _inputs((3, 7), batch=2)
    np.testing.assert_allclose(
        _scores(OnnxClassifier(model_proto), x), _ort_outputs(model_proto, x), **TOLERANCE
    )


def _dropout_model(opset: int) -> onnx.ModelProto:
    if opset >= 12:
        node = _n("Dropout", ["x", "r"])
        return _graph([node], (64,), opset=opset, inits={"r": np.float32(0.5)})
    return _graph([_n("Dropout", ["x"], ratio=0.5)], (64,), opset=opset)


@pytest.mark.parametrize("opset", [11, 13])
def test_dropout_is_active_only_in_train_mode(opset: int) -> None:
    model = OnnxClassifier(_dropout_model(opset))
    x = torch.ones(4, 64)

    trained = model.train()(x)
    evaluated = model.eval()(x)

    assert set(trained.unique().tolist()) == {0.0, 2.0}
    assert torch.equal(evaluated, x)
    assert any("Dropout" in note for note in model.notes)


def test_log_softmax_ending_is_stripped_but_not_a_probability() -> None:
    model = OnnxClassifier(
        _graph(
            [_n("Gemm", ["x", "w"], ["g"], transB=1), _n("LogSoftmax", ["g"], ["y"], axis=1)],
            (6,),
            opset=13,
            inits={"w": _f(4, 6)},
            flatten=False,
        )
    )

    assert model.final_activation == "LogSoftmax"
    assert not model.output_is_probability


def test_model_local_functions_are_inlined() -> None:
    function = helper.make_function(
        "local",
        "ScaledRelu",
        ["a", "k"],
        ["o"],
        [_n("Relu", ["a"], ["r"]), _n("Mul", ["r", "k"], ["o"])],
        [helper.make_opsetid("", 17)],
    )
    model_proto = _graph(
        [_n("ScaledRelu", ["x", "k"], domain="local")],
        (6,),
        opset=17,
        inits={"k": np.float32(3.0)},
        domains={"local": 1},
    )
    model_proto.functions.append(function)
    model = OnnxClassifier(model_proto)

    x = _inputs((6,))
    np.testing.assert_allclose(_scores(model, x), _ort_outputs(model_proto, x), **TOLERANCE)
    assert any("inlined" in note for note in model.notes)


# --------------------------------------------------------------------------------------------
# Refusals
# --------------------------------------------------------------------------------------------


def _linear(opset: int = 17) -> onnx.ModelProto:
    return _graph(
        [_n("Gemm", ["x", "w"], ["y"], transB=1)],
        (6,),
        opset=opset,
        inits={"w": _f(3, 6)},
        flatten=False,
    )


def test_refuses_custom_operator_domain(tmp_path: Path) -> None:
    model = _graph(
        [_n("FusedThing", ["x"], domain="com.example")], (6,), opset=17, domains={"com.example": 1}
    )

    with pytest.raises(UnsupportedModel, match=r"FusedThing \(domain 'com\.example'\)"):
        load_onnx_classifier(_save(model, tmp_path / "m.onnx"))


def test_refuses_unsupported_operators_listing_each(tmp_path: Path) -> None:
    model = _graph(
        [
            _n("TopK", ["x", "k"], ["v", "i"], axis=1),
            _n("NonMaxSuppression", ["boxes", "v"], ["sel"]),
            _n("Relu", ["v"]),
        ],
        (6,),
        opset=17,
        inits={"k": _i(3), "boxes": _f(1, 6, 4)},
    )

    with pytest.raises(UnsupportedModel, match="NonMaxSuppression, TopK"):
        load_onnx_classifier(_save(model, tmp_path / "m.onnx"))


def test_refuses_control_flow(tmp_path: Path) -> None:
    branch = helper.make_graph(
        [_n("Identity", ["x"], ["o"])],
        "b",
        [],
        [helper.make_tensor_value_info("o", TensorProto.FLOAT, ["N", 6])],
    )
    model = _graph(
        [_n("If", ["c"], then_branch=branch, else_branch=branch)],
        (6,),
        opset=17,
        inits={"c": np.asarray(True)},
    )

    with pytest.raises(UnsupportedModel, match="If"):
        load_onnx_classifier(_save(model, tmp_path / "m.onnx"))


def test_refuses_batchnorm_exported_in_training_mode(tmp_path: Path) -> None:
    node = _n("BatchNormalization", ["x", "s", "b", "m", "v"], ["h", "rm", "rv"], training_mode=1)
    inits = {"s": _f(2), "b": _f(2), "m": _f(2), "v": _f(2, positive=True)}
    model = _graph([node], (2, 3, 3), opset=15, inits=inits)

    with pytest.raises(UnsupportedModel, match=r"training mode.*model\.eval\(\)"):
        load_onnx_classifier(_save(model, tmp_path / "m.onnx"))


def test_refuses_dropout_exported_in_training_mode(tmp_path: Path) -> None:
    inits = {"r": np.float32(0.5), "t": np.asarray(True)}
    model = _graph([_n("Dropout", ["x", "r", "t"])], (6,), opset=13, inits=inits)

    with pytest.raises(UnsupportedModel, match=r"Dropout.*training mode"):
        load_onnx_classifier(_save(model, tmp_path / "m.onnx"))


def test_refuses_two_inputs(tmp_path: Path) -> None:
    inputs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["N", 6]) for n in "xz"]
    model = _graph([_n("Add", ["x", "z"])], (6,), opset=17, inputs=inputs)

    with pytest.raises(UnsupportedModel, match=r"2 inputs \('x', 'z'\)"):
        load_onnx_classifier(_save(model, tmp_path / "m.onnx"))


def test_initializers_listed_as_inputs_are_not_inputs(tmp_path: Path) -> None:
    model = _linear(opset=11)
    model.graph.input.append(helper.make_tensor_value_info("w", TensorProto.FLOAT, [3, 6]))

    assert load_onnx_classifier(_save(model, tmp_path / "m.onnx")).input_name == "x"


def test_refuses_integer_input(tmp_path: Path) -> None:
    inputs = [helper.make_tensor_value_info("x", TensorProto.INT64, ["N", 6])]
    model = _graph([_n("Cast", ["x"], to=TensorProto.FLOAT)], (6,), opset=17, inputs=inputs)

    with pytest.raises(UnsupportedModel, match="INT64; a float tensor input"):
        load_onnx_classifier(_save(model, tmp_path / "m.onnx"))


def test_a_uint8_input_is_refused_with_the_fix_in_the_shared_message(tmp_path: Path) -> None:
    inputs = [helper.make_tensor_value_info("x", TensorProto.UINT8, ["N", 6])]
    model = _graph([_n("Cast", ["x"], to=TensorProto.FLOAT)], (6,), opset=17, inputs=inputs)

    with pytest.raises(UnsupportedModel) as refused:
        load_onnx_classifier(_save(model, tmp_path / "m.onnx"))

    assert str(refused.value) == float_input_required("x", "UINT8")
    assert "multiply by 255" in str(refused.value)


def test_refuses_integer_output(tmp_path: Path) -> None:
    outputs = [helper.make_tensor_value_info("y", TensorProto.INT64, ["N"])]
    model = _graph(
        [_n("ArgMax", ["x"], ["y"], axis=1, keepdims=0)],
        (6,),
        opset=17,
        flatten=False,
        outputs=outputs,
    )

    with pytest.raises(UnsupportedModel, match="INT64; a classifier must output float"):
        load_onnx_classifier(_save(model, tmp_path / "m.onnx"))


def test_refuses_two_outputs(tmp_path: Path) -> None:
    outputs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["N", 6]) for n in "yh"]
    model = _graph(
        [_n("Relu", ["x"]), _n("Neg", ["x"], ["y"])], (6,), opset=17, flatten=False, outputs=outputs
    )

    with pytest.raises(UnsupportedModel, match="2 outputs"):
        load_onnx_classifier(_save(model, tmp_path / "m.onnx"))


def test_refuses_a_graph_that_hard_codes_its_batch_size(tmp_path: Path) -> None:
    model = _graph(
        [_n("Expand", ["b", "shape"], ["e"]), _n("Add", ["x", "e"])],
        (6,),
        opset=17,
        batch=2,
        inits={"b": _f(1, 6), "shape": _i(2, 6)},
    )

    with pytest.raises(UnsupportedModel, match=r"exported with \(2\).*dynamic batch"):
        load_onnx_classifier(_save(model, tmp_path / "m.onnx"))


def test_refuses_truncated_file(tmp_path: Path, exported: Callable[[Case], Path]) -> None:
    data = exported(Case("cnn", "legacy", 17, dynamic=True)).read_bytes()
    path = tmp_path / "m.onnx"
    path.write_bytes(data[: len(data) // 2])

    with pytest.raises(InvalidModel, match=r"not an ONNX model|invalid"):
        load_onnx_classifier(path)


def test_refuses_random_bytes(tmp_path: Path) -> None:
    path = tmp_path / "m.onnx"
    path.write_bytes(np.random.default_rng(7).bytes(4096))

    with pytest.raises(InvalidModel, match="not an ONNX model"):
        load_onnx_classifier(path)


def test_refuses_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InvalidModel, match="missing or not a regular file"):
        load_onnx_classifier(tmp_path / "absent.onnx")


def test_refuses_file_over_the_size_limit(tmp_path: Path) -> None:
    path = _save(_linear(), tmp_path / "m.onnx")

    with pytest.raises(InvalidModel, match="limit is 100 bytes"):
        load_onnx_classifier(path, max_bytes=100)


def test_refuses_opset_older_than_supported(tmp_path: Path) -> None:
    with pytest.raises(UnsupportedModel, match="opset 8"):
        load_onnx_classifier(_save(_linear(opset=8), tmp_path / "m.onnx"))


def _with_external_weight(tmp_path: Path, location: str) -> Path:
    """A model whose weight lives at ``location`` (relative to tmp_path/model/), with a real
    file there where the location is meant to exist."""
    folder = tmp_path / "model"
    folder.mkdir(exist_ok=True)
    model = _linear()
    weight = model.graph.initializer[0]
    data = weight.raw_data
    weight.ClearField("raw_data")
    weight.data_location = TensorProto.EXTERNAL
    for key, value in (("location", location), ("offset", "0"), ("length", str(len(data)))):
        entry = weight.external_data.add()
        entry.key, entry.value = key, value
    target = Path(location) if os.path.isabs(location) else folder / location
    with contextlib.suppress(OSError):
        target.write_bytes(data)
    return _save(model, folder / "m.onnx")


def test_refuses_external_data_by_default(tmp_path: Path) -> None:
    path = _with_external_weight(tmp_path, "weights.bin")

    with pytest.raises(UnsupportedModel, match="external data"):
        load_onnx_classifier(path)


def test_loads_external_data_inside_the_folder_when_allowed(tmp_path: Path) -> None:
    path = _with_external_weight(tmp_path, "weights.bin")

    model = load_onnx_classifier(path, allow_external_data=True)

    np.testing.assert_array_equal(model.onnx_tensor("w").detach().numpy(), _f(3, 6))


def test_model_proto_with_external_references_is_refused_without_reading_them(
    tmp_path: Path,
) -> None:
    model = onnx.load(_with_external_weight(tmp_path, "weights.bin"), load_external_data=False)

    with pytest.raises(UnsupportedModel, match="allow_external_data"):
        OnnxClassifier(model)


def test_refuses_external_data_with_absolute_path(tmp_path: Path) -> None:
    path = _with_external_weight(tmp_path, str(tmp_path / "abs.bin"))

    with pytest.raises(InvalidModel, match="absolute location"):
        load_onnx_classifier(path, allow_external_data=True)


def test_refuses_external_data_leaving_the_folder(tmp_path: Path) -> None:
    path = _with_external_weight(tmp_path, "../outside.bin")

    with pytest.raises(InvalidModel, match="outside the model's folder"):
        load_onnx_classifier(path, allow_external_data=True)


def test_refuses_external_data_through_a_symlink_out_of_the_folder(tmp_path: Path) -> None:
    (tmp_path / "secret.bin").write_bytes(_f(3, 6).tobytes())
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "link.bin").symlink_to(tmp_path / "secret.bin")
    path = _with_external_weight(tmp_path, "link.bin")

    with pytest.raises(InvalidModel, match="symbolic link"):
        load_onnx_classifier(path, allow_external_data=True)


@pytest.fixture(autouse=True)
def _quiet_torch_export_warnings() -> Iterator[None]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=UserWarning)
        yield
