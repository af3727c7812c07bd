"""What one forward pass of an ONNX model costs, estimated from its graph without running it.

The submit-time check (:mod:`service.jobs.validation`) runs a model on one sample; a few KB of
graph can ask for hours of compute there (a ConstantOfShape of 2048 x 2048 then 400 chained
MatMuls), so the check first estimates the pass and refuses one over the server's limits.

How: every tensor's shape is inferred at the check's batch with ``onnx.shape_inference`` (with
data propagation, so that shapes computed by Shape, Gather, Concat ... nodes are known), after
the large weights were replaced by their declared shapes (:func:`cost_skeleton`). Then each node
costs

- 2 FLOPs per multiply-accumulate for the matrix products: MatMul, Gemm, Conv, ConvTranspose,
  Einsum, RNN/GRU/LSTM, and their integer and quantised forms;
- for every other node, one FLOP per element it reads or writes, whichever is more: so a
  ConstantOfShape, Expand, Tile or Resize costs its output, a reduction its input.

Nothing is allocated but shapes; a graph of a few hundred nodes takes milliseconds.

Where a shape cannot be inferred (a size computed from the data, an operator onnx does not know),
the estimate stays conservative:

- a node that cannot make a tensor larger than its inputs (a function of one tensor, a reshape, a
  slice, a reduction, a concatenation ...) is bounded by the sum of its inputs' sizes;
- an element-wise node of several tensors by the product of their sizes (the largest broadcast
  they can make);
- any other node, and a matrix product whose dimensions are unknown, cannot be bounded, and the
  model is refused with the node's name: the check does not run what it cannot bound. Exporting
  the model with static shapes (or a fixed input size) avoids it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import onnx
from onnx import helper, shape_inference
from onnx.inliner import inline_local_functions

from service.core.errors import ResourceExhausted
from service.core.limits import quoted
from workers.engine.errors import UnsupportedModel

SMALL_INITIALIZER = 4096
"""Initializers up to this many elements stay in the skeleton: shapes, axes and scales that
shape inference reads the values of."""

FALLBACK_ITEM_BYTES = 8
"""The bytes per element assumed where a tensor's type is unknown (the widest common type)."""

_DEFAULT_DOMAINS = frozenset({"", "ai.onnx"})

_NOT_ENLARGING_OPS = """Abs Acos Acosh ArgMax ArgMin Asin Asinh Atan Atanh BatchNormalization
    Cast CastLike Ceil Celu Clip Concat Cos Cosh CumSum DequantizeLinear Dropout
    DynamicQuantizeLinear Elu Erf Exp Flatten Floor Gelu GlobalAveragePool GlobalLpPool
    GlobalMaxPool GroupNormalization Hardmax HardSigmoid HardSwish Identity InstanceNormalization
    IsInf IsNaN LayerNormalization LeakyRelu Log LogSoftmax LpNormalization
    MeanVarianceNormalization Mish Neg Not QuantizeLinear Reciprocal ReduceL1 ReduceL2 ReduceLogSum
    ReduceLogSumExp ReduceMax ReduceMean ReduceMin ReduceProd ReduceSum ReduceSumSquare Relu Reshape
    Round Selu Shape Shrink Sigmoid Sign Sin Sinh Size Slice Softmax Softplus Softsign Split Sqrt
    Squeeze Tan Tanh ThresholdedRelu TopK Transpose Unsqueeze"""
_NOT_ENLARGING = frozenset(_NOT_ENLARGING_OPS.split())
"""Operators whose outputs together hold at most as many elements as their inputs."""

_BROADCASTING_OPS = """Add And BitShift BitwiseAnd BitwiseOr BitwiseXor Div Equal Greater
    GreaterOrEqual Less LessOrEqual Max Mean Min Mod Mul Or Pow PRelu Sub Sum Where Xor"""
_BROADCASTING = frozenset(_BROADCASTING_OPS.split())
"""Element-wise operators of several tensors: at most the product of their sizes."""

_ML_NOT_ENLARGING = frozenset({"Scaler", "Normalizer", "ZipMap"})
"""scikit-learn's operators (domain ai.onnx.ml) whose output shapes onnx does not infer and
that make one value (ZipMap: one map entry) per input element. Their ArrayFeatureExtractor,
which picks columns, is bounded like an element-wise operator of its data and indices."""


@dataclass(frozen=True)
class CostLimits:
    """What the submit-time check lets one forward pass cost at its batch."""

    max_flops: float
    max_tensor_bytes: int
    flops_setting: str = "TEMPERING_VALIDATION_MAX_GFLOPS"
    tensor_setting: str = "a quarter of TEMPERING_VALIDATION_MEMORY_LIMIT"


DEFAULT_LIMITS = CostLimits(max_flops=200e9, max_tensor_bytes=2**30)
"""The server's defaults: 200 GFLOPs (ResNet-50 on one sample is about 8, counting 2 per
multiply-accumulate; one core does 200 in about 10 s) and a quarter of the default 4 GiB of the
check's memory."""


@dataclass(frozen=True)
class NodeCost:
    label: str
    """The node as a message names it: its operator and name (or position)."""
    flops: int
    output_bytes: int
    exact: bool
    """False where the output's size is an upper bound (its shape could not be inferred)."""


@dataclass(frozen=True)
class GraphCost:
    batch: int
    flops: int
    costliest: NodeCost | None
    largest: NodeCost | None
    """The node that makes the largest tensor."""


@dataclass(frozen=True)
class Skeleton:
    """A model without its large weights, for :func:`estimate_cost`."""

    model: onnx.ModelProto
    input_names: tuple[str, ...]
    """The model's real inputs (not initializers)."""


def cost_skeleton(model: onnx.ModelProto) -> Skeleton:
    """The graph of ``model`` with model-local functions inlined, each large initializer turned
    into an input of its declared shape, and no declared shapes of its own beyond its inputs'
    (value_info and output shapes are inferred again, so a model cannot claim a small size for
    a node's output)."""
    graph = model.graph
    weight_names = {t.name for t in graph.initializer} | {
        s.values.name for s in graph.sparse_initializer
    }
    inputs = [i for i in graph.input if i.name not in weight_names]
    kept = [t for t in graph.initializer if _count(t.dims) <= SMALL_INITIALIZER]
    declared = [t for t in graph.initializer if _count(t.dims) > SMALL_INITIALIZER]
    weights = [helper.make_tensor_value_info(t.name, t.data_type, list(t.dims)) for t in declared]
    weights += [
        helper.make_tensor_value_info(s.values.name, s.values.data_type, list(s.dims))
        for s in graph.sparse_initializer
    ]
    outputs = [
        helper.make_tensor_value_info(o.name, o.type.tensor_type.elem_type, None)
        for o in graph.output
    ]
    skeleton_graph = helper.make_graph(
        list(graph.node), graph.name, [*inputs, *weights], outputs, kept
    )
    skeleton = helper.make_model(
        skeleton_graph, opset_imports=list(model.opset_import), functions=list(model.functions)
    )
    skeleton.ir_version = model.ir_version
    if skeleton.functions:
        skeleton = inline_local_functions(skeleton)
    return Skeleton(skeleton, tuple(i.name for i in inputs))


def estimate_cost(skeleton: Skeleton, input_shape: Sequence[int]) -> GraphCost:
    """The cost of one pass with the model's one input shaped ``input_shape`` (batch first).
    Raises UnsupportedModel for a node whose size or cost cannot be bounded."""
    model = onnx.ModelProto()
    model.CopyFrom(skeleton.model)
    _set_input_shape(model.graph, skeleton.input_names, input_shape)
    try:
        inferred = shape_inference.infer_shapes(model, strict_mode=False, data_prop=True)
    except Exception as exc:
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        raise UnsupportedModel(
            f"the server cannot infer the model's tensor shapes to bound its cost: {reason}"
        ) from exc
    return _Estimate(inferred.graph).run(batch=int(input_shape[0]))


def check_cost(cost: GraphCost, limits: CostLimits) -> None:
    """Raise ResourceExhausted, naming the node and its estimated cost, for a pass over
    ``limits``: its largest tensor first (the cause of a memory blow-up), then its FLOPs."""
    largest, costliest = cost.largest, cost.costliest
    samples = "one sample" if cost.batch == 1 else f"a batch of {cost.batch}"
    if largest is not None and largest.output_bytes > limits.max_tensor_bytes:
        size = _bytes_text(largest.output_bytes)
        raise ResourceExhausted(
            f"the model's {largest.label} makes a tensor of {'' if largest.exact else 'up to '}"
            f"{size} on {samples}, over the {_bytes_text(limits.max_tensor_bytes)} the server's"
            f" submit-time check allows one tensor ({limits.tensor_setting})"
        )
    if costliest is not None and cost.flops > limits.max_flops:
        raise ResourceExhausted(
            f"one forward pass of the model on {samples} is estimated at"
            f" {_flops_text(cost.flops)}, over the {_flops_text(limits.max_flops)} the server's"
            f" submit-time check allows ({limits.flops_setting}); its costliest node is"
            f" {costliest.label} at {_flops_text(costliest.flops)}"
        )


class _Estimate:
    """One pass over the nodes in their (topological) order."""

    def __init__(self, graph: onnx.GraphProto) -> None:
        self._shapes: dict[str, tuple[int, ...]] = {}
        self._types: dict[str, int] = {}
        for value in (*graph.input, *graph.value_info, *graph.output):
            self._note(value)
        for tensor in graph.initializer:
            self._shapes[tensor.name] = tuple(tensor.dims)
            self._types[tensor.name] = tensor.data_type
        self._sizes = {name: math.prod(shape) for name, shape in self._shapes.items()}
        self._nodes = graph.node

    def run(self, batch: int) -> GraphCost:
        total = 0
        costliest: NodeCost | None = None
        largest: NodeCost | None = None
        for index, node in enumerate(self._nodes):
            cost = self._node(node, _label(node, index))
            total += cost.flops
            if costliest is None or cost.flops > costliest.flops:
                costliest = cost
            if largest is None or cost.output_bytes > largest.output_bytes:
                largest = cost
        return GraphCost(batch, total, costliest, largest)

    def _note(self, value: onnx.ValueInfoProto) -> None:
        tensor_type = value.type.tensor_type
        if tensor_type.elem_type:
            self._types[value.name] = tensor_type.elem_type
        if tensor_type.HasField("shape"):
            dims = [d.dim_value if d.HasField("dim_value") else -1 for d in tensor_type.shape.dim]
            if all(d >= 0 for d in dims):
                self._shapes[value.name] = tuple(dims)

    def _node(self, node: onnx.NodeProto, label: str) -> NodeCost:
        in_sizes = [self._sizes.get(name) for name in node.input if name]
        exact = True
        for name in node.output:
            if name and name not in self._sizes:
                self._sizes[name] = self._bound(node, in_sizes, label)
                exact = False
        out_sizes = [self._sizes[name] for name in node.output if name]
        macs = _macs(node, self._shapes)
        if isinstance(macs, _Unknown):
            raise _unbounded(label, "the dimensions of its operands")
        if macs is not None:
            flops = 2 * int(macs)
        else:
            flops = max(sum(s for s in in_sizes if s is not None), sum(out_sizes))
        output_bytes = max(
            (self._sizes[n] * self._item_bytes(n) for n in node.output if n), default=0
        )
        return NodeCost(label, flops, output_bytes, exact)

    def _bound(self, node: onnx.NodeProto, in_sizes: list[int | None], label: str) -> int:
        if node.domain in _DEFAULT_DOMAINS and None not in in_sizes:
            known = [s for s in in_sizes if s is not None]
            if node.op_type in _NOT_ENLARGING:
                return sum(known)
            if node.op_type in _BROADCASTING:
                return math.prod(known)
        if node.domain == "ai.onnx.ml" and None not in in_sizes:
            known = [s for s in in_sizes if s is not None]
            if node.op_type in _ML_NOT_ENLARGING:
                return sum(known)
            if node.op_type == "ArrayFeatureExtractor":
                return math.prod(known)
        raise _unbounded(label, "the size of its output")

    def _item_bytes(self, name: str) -> int:
        elem_type = self._types.get(name)
        if not elem_type or elem_type in (onnx.TensorProto.STRING, onnx.TensorProto.UNDEFINED):
            return FALLBACK_ITEM_BYTES
        return int(helper.tensor_dtype_to_np_dtype(elem_type).itemsize)


class _Unknown:
    pass


_UNKNOWN = _Unknown()


def _macs(node: onnx.NodeProto, shapes: dict[str, tuple[int, ...]]) -> int | _Unknown | None:
    """Multiply-accumulates of a matrix product; None for any other node."""
    if node.domain not in _DEFAULT_DOMAINS:
        return None
    op = node.op_type

    def shape(position: int) -> tuple[int, ...] | None:
        return shapes.get(node.input[position]) if len(node.input) > position else None

    out = shapes.get(node.output[0]) if node.output else None
    if op in ("MatMul", "MatMulInteger", "QLinearMatMul", "Gemm"):
        a = shape(0)
        if a is None or out is None:
            return _UNKNOWN
        if op == "Gemm" and _int_attribute(node, "transA"):
            return math.prod(out) * (a[0] if a else 1)
        return math.prod(out) * (a[-1] if a else 1)
    if op in ("Conv", "ConvInteger", "QLinearConv"):
        weight = shape(3 if op == "QLinearConv" else 1)
        if weight is None or out is None:
            return _UNKNOWN
        return math.prod(out) * math.prod(weight[1:])
    if op == "ConvTranspose":
        x, weight = shape(0), shape(1)
        if x is None or weight is None:
            return _UNKNOWN
        return math.prod(x) * math.prod(weight[1:])
    if op in ("RNN", "GRU", "LSTM"):
        x, w, r = shape(0), shape(1), shape(2)
        if x is None or w is None or r is None or len(x) < 2:
            return _UNKNOWN
        return x[0] * x[1] * (math.prod(w) + math.prod(r))
    if op == "Einsum":
        return _einsum_macs(node, [shapes.get(name) for name in node.input], out)
    return None


def _einsum_macs(
    node: onnx.NodeProto,
    operands: list[tuple[int, ...] | None],
    out: tuple[int, ...] | None,
) -> int | _Unknown:
    """The output's size times the sizes of the letters summed over."""
    equation = next((a.s.decode() for a in node.attribute if a.name == "equation"), "")
    equation = equation.replace(" ", "")
    terms, _, result = equation.partition("->")
    if out is None or None in operands:
        return _UNKNOWN
    letters: dict[str, int] = {}
    for term, dims in zip(terms.split(","), operands, strict=False):
        assert dims is not None
        head, _, tail = term.partition("...")
        letters.update(zip(head, dims, strict=False))
        if tail:
            letters.update(zip(tail, dims[len(dims) - len(tail) :], strict=False))
    kept = set(result) if "->" in equation else {x for x in letters if terms.count(x) == 1}
    summed = [size for letter, size in letters.items() if letter not in kept]
    return math.prod(out) * math.prod(summed)


def _set_input_shape(
    graph: onnx.GraphProto, input_names: Iterable[str], input_shape: Sequence[int]
) -> None:
    names = set(input_names)
    for value in graph.input:
        if value.name in names:
            shape = value.type.tensor_type.shape
            del shape.dim[:]
            for size in input_shape:
                shape.dim.add().dim_value = int(size)


def _int_attribute(node: onnx.NodeProto, name: str) -> int:
    return next((int(a.i) for a in node.attribute if a.name == name), 0)


def _count(dims: Iterable[int]) -> int:
    return math.prod(dims)


def _label(node: onnx.NodeProto, index: int) -> str:
    return f"{node.op_type} {quoted(node.name, 80)}" if node.name else f"{node.op_type} #{index}"


def _unbounded(label: str, what: str) -> UnsupportedModel:
    return UnsupportedModel(
        f"the server cannot bound the cost of the model's {label}: {what} cannot be inferred"
        " from the graph at the check's batch, and the submit-time check does not run what it"
        " cannot bound; export the model with static shapes"
    )


def _flops_text(flops: float) -> str:
    units = (("PFLOPs", 1e15), ("TFLOPs", 1e12), ("GFLOPs", 1e9), ("MFLOPs", 1e6), ("FLOPs", 1))
    return _scaled(flops, units)


def _bytes_text(size: float) -> str:
    units = (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10), ("bytes", 1))
    return _scaled(size, units)


def _scaled(value: float, units: Sequence[tuple[str, float]]) -> str:
    """``value`` in the largest unit it reaches, to three significant digits and without an
    exponent however large."""
    unit, scale = next(((u, s) for u, s in units if value >= s), units[-1])
    scaled = value / scale
    return f"{scaled:.3g} {unit}" if scaled < 1000 else f"{scaled:,.0f} {unit}"
