"""What the graph says about the classifier: its input and output, the nodes that compute the
logits, and the role of each initializer (trainable weight, running statistic, constant)."""

from __future__ import annotations

from dataclasses import dataclass, field

import onnx
from onnx import GraphProto, NodeProto, TensorProto

from workers.engine.errors import UnsupportedModel, float_input_required
from workers.engine.models.onnx.protos import _FLOAT_TYPES, _attributes, _type_name
from workers.engine.models.onnx.runtime import _Node


def _classifier_input(inputs: list[onnx.ValueInfoProto]) -> onnx.ValueInfoProto:
    """The one float input of a classifier that takes no token ids."""
    if len(inputs) != 1:
        names = ", ".join(f"'{v.name}'" for v in inputs) or "none"
        raise UnsupportedModel(
            f"the model has {len(inputs)} inputs ({names}); a classifier with exactly one input "
            "tensor is required"
        )
    graph_input = inputs[0]
    tensor_type = graph_input.type.tensor_type
    if not graph_input.type.HasField("tensor_type") or tensor_type.elem_type not in _FLOAT_TYPES:
        raise UnsupportedModel(float_input_required(graph_input.name, _type_name(graph_input)))
    if not tensor_type.HasField("shape") or len(tensor_type.shape.dim) < 2:
        raise UnsupportedModel(
            f"input '{graph_input.name}' must have a known rank with a leading batch dimension"
        )
    return graph_input


def _classifier_output(graph: GraphProto) -> onnx.ValueInfoProto:
    if len(graph.output) != 1:
        raise UnsupportedModel(
            f"the model has {len(graph.output)} outputs; a classifier with exactly one output "
            "(the class scores) is required"
        )
    graph_output = graph.output[0]
    out_type = graph_output.type.tensor_type
    if not graph_output.type.HasField("tensor_type") or out_type.elem_type not in _FLOAT_TYPES:
        raise UnsupportedModel(
            f"output '{graph_output.name}' is of type {_type_name(graph_output)}; a classifier "
            "must output float class scores (logits or probabilities)"
        )
    if out_type.HasField("shape") and len(out_type.shape.dim) != 2:
        raise UnsupportedModel(
            f"output '{graph_output.name}' has rank {len(out_type.shape.dim)}; a classifier "
            "must output [batch, classes]"
        )
    return graph_output


def _final_activation(
    producers: dict[str, NodeProto], output: str, opset: int
) -> tuple[str, str | None]:
    name = output
    node = producers.get(name)
    while node is not None and node.op_type == "Identity":
        name = node.input[0]
        node = producers.get(name)
    if node is None or node.op_type not in ("Softmax", "LogSoftmax"):
        return output, None
    axis = _attributes(node).get("axis", -1 if opset >= 13 else 1)
    if axis not in (-1, 1):
        return output, None
    return node.input[0], node.op_type


def _live_nodes(graph: GraphProto, target: str, producers: dict[str, NodeProto]) -> list[int]:
    index = {id(node): i for i, node in enumerate(graph.node)}
    needed, pending = set(), [target]
    while pending:
        name = pending.pop()
        node = producers.get(name)
        if node is None or id(node) in needed:
            continue
        needed.add(id(node))
        pending.extend(n for n in node.input if n)
    return sorted(index[i] for i in needed)


def _schedule_drops(plan: list[_Node], keep: str) -> None:
    """Let intermediate values go after their last use, to bound memory on large graphs."""
    produced = {out for node in plan for out in node.outputs}
    last_use: dict[str, int] = {}
    for position, node in enumerate(plan):
        for name in node.inputs:
            if name in produced:
                last_use[name] = position
    for name, position in last_use.items():
        if name != keep:
            plan[position].drop_after.append(name)


_PARAM_SLOTS: dict[str, tuple[int, ...]] = {
    "Conv": (1, 2),
    "ConvTranspose": (1, 2),
    "Gemm": (1, 2),
    "BatchNormalization": (1, 2),
    "InstanceNormalization": (1, 2),
    "LayerNormalization": (1, 2),
    "PRelu": (1,),
    "LSTM": (1, 2, 3, 7),
    "GRU": (1, 2, 3),
}
_STAT_SLOTS: dict[str, tuple[int, ...]] = {"BatchNormalization": (3, 4)}
_BIAS_PRODUCERS = ("MatMul", "Conv", "ConvTranspose", "Gemm")


@dataclass
class _Roles:
    params: set[str] = field(default_factory=set)
    stats: set[str] = field(default_factory=set)
    untie: list[tuple[_Node, int, str]] = field(default_factory=list)
    frozen_weight_slots: int = 0


def _initializer_roles(
    plan: list[_Node], initializers: dict[str, TensorProto], producers: dict[str, NodeProto]
) -> _Roles:
    """Decide which initializers are trainable, which are running statistics, and which
    statistic uses must be untied because their initializer is used for something else too."""
    roles = _Roles()
    uses: dict[str, list[tuple[_Node, int, str]]] = {}
    for node in plan:
        if node.op_type == "Identity":
            continue
        param_slots = _param_slots(node, producers)
        for slot, name in enumerate(node.inputs):
            if not name:
                continue
            source = _initializer_source(name, producers, initializers)
            is_float = source is not None and initializers[source].data_type in _FLOAT_TYPES
            role = "const"
            if slot in param_slots:
                role = "param" if is_float else "const"
                if source is None and slot in _PARAM_SLOTS.get(node.op_type, ()):
                    roles.frozen_weight_slots += 1
            elif slot in _STAT_SLOTS.get(node.op_type, ()):
                role = "stat"
            if source is not None:
                uses.setdefault(source, []).append((node, slot, role))
    for source, entries in uses.items():
        if any(role == "param" for _, _, role in entries):
            roles.params.add(source)
        stat_uses = [(n, s) for n, s, role in entries if role == "stat"]
        if not stat_uses:
            continue
        exclusive = len(entries) == 1 and initializers[source].data_type in _FLOAT_TYPES
        if exclusive:
            roles.stats.add(source)
            continue
        roles.untie.extend((node, slot, source) for node, slot in stat_uses)
    return roles


def _param_slots(node: _Node, producers: dict[str, NodeProto]) -> tuple[int, ...]:
    if node.op_type in _PARAM_SLOTS:
        return _PARAM_SLOTS[node.op_type]
    if node.op_type == "MatMul":
        return (0, 1)
    if node.op_type in ("Add", "Sub", "Mul") and len(node.inputs) == 2:
        for slot, other in ((1, 0), (0, 1)):
            producer = producers.get(node.inputs[other])
            if producer is not None and producer.op_type in _BIAS_PRODUCERS:
                return (slot,)
    return ()


def _initializer_source(
    name: str, producers: dict[str, NodeProto], initializers: dict[str, TensorProto]
) -> str | None:
    while name not in initializers:
        node = producers.get(name)
        if node is None or node.op_type != "Identity":
            return None
        name = node.input[0]
    return name


def _constant_source(
    name: str, producers: dict[str, NodeProto], initializers: dict[str, TensorProto]
) -> str | None:
    while name not in initializers:
        node = producers.get(name)
        if node is None:
            return None
        if node.op_type == "Constant":
            return name
        if node.op_type != "Identity":
            return None
        name = node.input[0]
    return name


def _folded_batchnorm_layers(graph: GraphProto, plan: list[_Node]) -> int:
    """Conv/Gemm layers into which the exporter folded a BatchNorm.

    The dynamo exporter records the fusion in node metadata; the legacy exporter leaves no
    trace except a computed weight named ``onnx::Conv_<n>`` instead of the module's name."""
    count = 0
    for node in plan:
        if node.op_type not in ("Conv", "Gemm"):
            continue
        meta = {p.key: p.value for p in graph.node[node.index].metadata_props}
        rule = meta.get("pkg.onnxscript.rewriter.rule_name", "").lower()
        aten_op = meta.get("namespace", "").rsplit("/", 1)[-1]
        weight = node.inputs[1] if len(node.inputs) > 1 else ""
        if (
            "batchnorm" in rule
            or "batch_norm" in aten_op
            or (node.op_type == "Conv" and weight.startswith("onnx::Conv_"))
        ):
            count += 1
    return count


def _batch_free_target(target: list[int], reshapes: list[_Node]) -> list[int] | None:
    if not target:
        return None
    if -1 not in target[1:]:
        return [-1, *target[1:]]
    if 0 in target[1:] and any(n.attrs.get("allowzero", 0) for n in reshapes):
        return None
    return [0, *target[1:]]
