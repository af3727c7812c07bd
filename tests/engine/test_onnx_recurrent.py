"""The LSTM and GRU kernels against onnxruntime on hand-made graphs: directions, biases,
peepholes, initial states, sequence lengths, linear_before_reset and both layouts.

x [N, T, 4] is a float input. Its feature 0 marks the valid steps (> 0) when the case uses
``sequence_lens``, and its first step gives the initial states, so that everything the operator
reads follows the batch. Every output of the operator is flattened into the logits.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from workers.engine.errors import UnsupportedModel
from workers.engine.models.onnx import OnnxClassifier

STEPS, SIZE = 5, 4
TOLERANCE = 1e-5
GATES = {"LSTM": 4, "GRU": 3}


@dataclass(frozen=True)
class Cell:
    op: str
    direction: str = "forward"
    bias: bool = True
    peepholes: bool = False
    initial: bool = False
    lengths: bool = False
    layout: int = 0
    linear_before_reset: int = 0

    def __str__(self) -> str:
        flags = [name for name in ("peepholes", "initial", "lengths") if getattr(self, name)]
        flags += [] if self.bias else ["no-bias"]
        flags += [f"layout{self.layout}"] if self.layout else []
        flags += ["linear-before-reset"] if self.linear_before_reset else []
        return "-".join([self.op, self.direction, *flags])

    @property
    def directions(self) -> int:
        return 2 if self.direction == "bidirectional" else 1


CELLS = [
    Cell("LSTM"),
    Cell("LSTM", "reverse", initial=True),
    Cell("LSTM", "bidirectional", peepholes=True, initial=True),
    Cell("LSTM", "bidirectional", lengths=True, initial=True),
    Cell("LSTM", "forward", bias=False, initial=True),
    Cell("GRU"),
    Cell("GRU", "reverse", linear_before_reset=1, initial=True),
    Cell("GRU", "bidirectional", linear_before_reset=1, lengths=True),
    Cell("GRU", "bidirectional", initial=True, lengths=True),
]


def _n(op: str, inputs: list[str], outputs: list[str], **attrs: Any) -> onnx.NodeProto:
    return helper.make_node(op, inputs, outputs, **attrs)


def _model(cell: Cell, **extra_attrs: object) -> onnx.ModelProto:
    rng = np.random.default_rng(0)
    d, gates = cell.directions, GATES[cell.op]
    inits = {
        "W": 0.5 * rng.standard_normal((d, gates * SIZE, SIZE)),
        "R": 0.5 * rng.standard_normal((d, gates * SIZE, SIZE)),
        "B": 0.5 * rng.standard_normal((d, 2 * gates * SIZE)),
        "P": 0.5 * rng.standard_normal((d, 3 * SIZE)),
        "zero": np.zeros(1),
        "first": np.zeros((), dtype=np.int64),
        "ax1": np.asarray([1], dtype=np.int64),
        "ax0": np.asarray([0], dtype=np.int64),
    }
    nodes = []
    x = "x"
    if not cell.layout:
        nodes.append(_n("Transpose", ["x"], ["xt"], perm=[1, 0, 2]))
        x = "xt"
    lengths = ""
    if cell.lengths:
        nodes += [
            _n("Gather", ["x", "first"], ["marks"], axis=2),
            _n("Greater", ["marks", "zero"], ["valid"]),
            _n("Cast", ["valid"], ["valid_i"], to=TensorProto.INT32),
            _n("ReduceSum", ["valid_i", "ax1"], ["lengths"], keepdims=0),
        ]
        lengths = "lengths"
    states = ["", ""]
    if cell.initial:
        state_axis = "ax1" if cell.layout else "ax0"
        nodes += [
            _n("Gather", ["x", "first"], ["step0"], axis=1),
            _n("Unsqueeze", ["step0", state_axis], ["one_dir"]),
            _n("Neg", ["one_dir"], ["other_dir"]),
        ]
        parts = ["one_dir", "other_dir"][:d]
        nodes += [
            _n("Concat", parts, ["h_raw"], axis=1 if cell.layout else 0),
            _n("Tanh", ["h_raw"], ["h0"]),
            _n("Sigmoid", ["h_raw"], ["c0"]),
        ]
        states = ["h0", "c0"]
    inputs = [x, "W", "R", "B" if cell.bias else "", lengths, states[0]]
    outputs = ["Y", "Y_h"]
    attrs: dict[str, object] = {"hidden_size": SIZE, "direction": cell.direction, **extra_attrs}
    if cell.layout:
        attrs["layout"] = 1
    if cell.op == "LSTM":
        inputs += [states[1], "P" if cell.peepholes else ""]
        outputs.append("Y_c")
    else:
        attrs["linear_before_reset"] = cell.linear_before_reset
    while not inputs[-1]:
        inputs.pop()
    nodes.append(_n(cell.op, inputs, outputs, **attrs))
    nodes += _flattened_outputs(cell, outputs)
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", STEPS, SIZE])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", None])],
        [
            numpy_helper.from_array(v.astype(np.float32) if v.dtype == np.float64 else v, k)
            for k, v in inits.items()
        ],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def _flattened_outputs(cell: Cell, outputs: list[str]) -> list[onnx.NodeProto]:
    """Each output to [N, -1]: layout 0 has Y [T, D, N, H] and states [D, N, H]; layout 1 has
    the batch first already."""
    nodes, flat = [], []
    for name in outputs:
        source = name
        if not cell.layout:
            perm = [2, 0, 1, 3] if name == "Y" else [1, 0, 2]
            nodes.append(_n("Transpose", [name], [f"{name}_b"], perm=perm))
            source = f"{name}_b"
        nodes.append(_n("Flatten", [source], [f"{name}_f"]))
        flat.append(f"{name}_f")
    nodes.append(_n("Concat", flat, ["y"], axis=1))
    return nodes


def _inputs(batch: int = 5) -> np.ndarray:
    """Random steps whose feature 0 is positive for the first 1..STEPS steps of each sample."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal((batch, STEPS, SIZE)).astype(np.float32)
    lengths = np.arange(batch) % STEPS + 1
    x[:, :, 0] = np.where(np.arange(STEPS)[None, :] < lengths[:, None], 1.0, -1.0)
    return x


@pytest.mark.parametrize("cell", CELLS, ids=str)
def test_recurrent_kernel_matches_onnxruntime(cell: Cell) -> None:
    proto = _model(cell)
    model = OnnxClassifier(proto).eval()
    x = _inputs()
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])

    expected = session.run(None, {"x": x})[0]
    with torch.no_grad():
        got = model(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got, expected, rtol=TOLERANCE, atol=TOLERANCE)


@pytest.mark.parametrize("cell", [Cell("LSTM", peepholes=True), Cell("GRU")], ids=str)
def test_recurrent_weights_are_parameters_with_gradients(cell: Cell) -> None:
    model = OnnxClassifier(_model(cell))

    model(torch.from_numpy(_inputs())).sum().backward()

    expected = {"W", "R", "B", "P"} if cell.op == "LSTM" else {"W", "R", "B"}
    assert set(model.trainable_parameter_names) == expected
    for name in expected:
        grad = model.onnx_tensor(name).grad
        assert grad is not None
        assert float(grad.abs().sum()) > 0


def test_batch_first_layout_is_refused() -> None:
    proto = _model(Cell("LSTM", layout=1, initial=True))

    with pytest.raises(UnsupportedModel, match=r"LSTM node .*layout 1"):
        OnnxClassifier(proto)


def test_other_activations_are_refused() -> None:
    proto = _model(Cell("GRU"), activations=["Relu", "Tanh"])

    with pytest.raises(UnsupportedModel, match=r"GRU node .*activations \['Relu', 'Tanh'\]"):
        OnnxClassifier(proto)
