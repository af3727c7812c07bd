"""scikit-learn exports (skl2onnx): the ``ai.onnx.ml`` operators on the path to the scores, and
which of the two outputs (label, probabilities) is the classifier's.

The linear operators (LinearClassifier, Scaler, Normalizer) keep their weights in attributes,
which training cannot reach, so they are translated into standard nodes whose weights are
initializers; the written model then computes the same outputs with those nodes. ZipMap (a
sequence of maps, off the scores path) stays as it is, and ArrayFeatureExtractor is executed.
Tree ensembles and kernel SVMs are refused: their outputs are piecewise constant in the inputs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import onnx
from onnx import GraphProto, NodeProto, TensorProto, helper, numpy_helper

from workers.engine.errors import UnsupportedModel
from workers.engine.models.onnx.protos import _FLOAT_TYPES, _attributes, _type_name, _unique

ML_DOMAIN = "ai.onnx.ml"
_TRANSLATED = frozenset({"LinearClassifier", "Scaler", "Normalizer"})
ML_OPS = _TRANSLATED | {"ArrayFeatureExtractor", "ZipMap"}
_NOT_DIFFERENTIABLE = frozenset(
    {"TreeEnsembleClassifier", "TreeEnsembleRegressor", "TreeEnsemble", "SVMClassifier"}
)


def is_sklearn_export(model: onnx.ModelProto) -> bool:
    return any(entry.domain == ML_DOMAIN for entry in model.opset_import)


def check_ml_operators(nodes: Sequence[NodeProto]) -> list[tuple[str, str]]:
    """Refuse non-differentiable ``ai.onnx.ml`` models; return the non-standard operators left
    that the reader does not handle, as (domain, op_type)."""
    found = {n.op_type: n for n in nodes if n.domain == ML_DOMAIN}
    refused = sorted(found.keys() & _NOT_DIFFERENTIABLE)
    if refused:
        raise UnsupportedModel(_refusal(refused, found))
    return [(ML_DOMAIN, op) for op in sorted(found.keys() - ML_OPS)]


def _refusal(refused: list[str], found: dict[str, NodeProto]) -> str:
    what = ", ".join(refused)
    message = (
        f"the model uses {what}: a tree ensemble or a kernel SVM predicts a piecewise-constant "
        "function of its inputs, so its gradients are zero almost everywhere and gradient-based "
        "training (and gradient attacks) cannot harden it. Distil it into a differentiable "
        "model first (fit an MLPClassifier on the ensemble's predicted probabilities and export "
        "that with skl2onnx), or score the original with a black-box attack (the service does "
        "not offer black-box scoring of such models yet)"
    )
    svm = found.get("SVMClassifier")
    if svm is not None and _attributes(svm).get("kernel_type", "LINEAR") == "LINEAR":
        message += "; for a linear SVC, LinearSVC or SGDClassifier(loss='hinge') export as "
        message += "LinearClassifier, which is supported"
    return message


def translate_ml_operators(graph: GraphProto, opset: int) -> list[str]:
    """Replace LinearClassifier, Scaler and Normalizer nodes by standard nodes, in place."""
    taken = {init.name for init in graph.initializer} | {
        name for node in graph.node for name in (*node.input, *node.output)
    }
    builder = _Builder(graph, opset, taken)
    translated: list[str] = []
    new_nodes: list[NodeProto] = []
    for node in graph.node:
        if node.domain == ML_DOMAIN and node.op_type in _TRANSLATED:
            new_nodes.extend(builder.translate(node))
            translated.append(node.op_type)
        else:
            new_nodes.append(node)
    if not translated:
        return []
    del graph.node[:]
    graph.node.extend(new_nodes)
    ops = ", ".join(sorted(set(translated)))
    return [
        f"the ai.onnx.ml operator(s) {ops} were rewritten as standard ONNX nodes whose weights "
        "are initializers (so they can be trained); the written model computes the same outputs "
        "with those nodes"
    ]


class _Builder:
    def __init__(self, graph: GraphProto, opset: int, taken: set[str]) -> None:
        self.graph, self.opset, self.taken = graph, opset, taken

    def name(self, base: str) -> str:
        return _unique(base, self.taken)

    def constant(self, base: str, values: np.ndarray) -> str:
        name = self.name(base)
        self.graph.initializer.append(numpy_helper.from_array(values, name))
        return name

    def translate(self, node: NodeProto) -> list[NodeProto]:
        attrs = _attributes(node)
        if node.op_type == "LinearClassifier":
            return self.linear_classifier(node, attrs)
        if node.op_type == "Scaler":
            return self.scaler(node, attrs)
        return self.normalizer(node, attrs)

    def linear_classifier(self, node: NodeProto, attrs: dict) -> list[NodeProto]:
        labels = _class_labels(node, attrs)
        coefficients = np.asarray(attrs["coefficients"], dtype=np.float32)
        intercepts = np.asarray(attrs.get("intercepts", []), dtype=np.float32)
        rows = len(intercepts) or len(labels)
        if rows != len(labels) or coefficients.size % rows:
            raise UnsupportedModel(
                f"LinearClassifier node '{node.name}' has {rows} coefficient row(s) for "
                f"{len(labels)} classes; one row per class is required"
            )
        weight = coefficients.reshape(rows, -1)
        if not len(intercepts):
            intercepts = np.zeros(rows, dtype=np.float32)
        stem = node.name or "linear"
        nodes: list[NodeProto] = []
        scores = self.name(f"{stem}_raw_scores")
        if rows == 2 and np.array_equal(weight[0], -weight[1]) and intercepts[0] == -intercepts[1]:
            nodes += self._tied_binary(stem, node.input[0], weight[1:], intercepts[1:], scores)
        else:
            w = self.constant(f"{stem}_coefficients", weight)
            b = self.constant(f"{stem}_intercepts", intercepts)
            nodes.append(helper.make_node("Gemm", [node.input[0], w, b], [scores], transB=1))
        nodes += self._post_transform(node, attrs, scores)
        if node.output[0]:
            index = self.name(f"{stem}_class_index")
            table = self.constant(f"{stem}_classes", labels)
            nodes.append(helper.make_node("ArgMax", [scores], [index], axis=1, keepdims=0))
            nodes.append(helper.make_node("Gather", [table, index], [node.output[0]], axis=0))
        return nodes

    def _tied_binary(
        self, stem: str, x: str, weight: np.ndarray, bias: np.ndarray, out: str
    ) -> list[NodeProto]:
        """skl2onnx writes a binary model as two opposite rows; one row and its negation keep
        them opposite through training, so the two scores stay one decision."""
        w = self.constant(f"{stem}_coefficients", weight)
        b = self.constant(f"{stem}_intercepts", bias)
        score, negated = self.name(f"{stem}_score"), self.name(f"{stem}_negated_score")
        return [
            helper.make_node("Gemm", [x, w, b], [score], transB=1),
            helper.make_node("Neg", [score], [negated]),
            helper.make_node("Concat", [negated, score], [out], axis=1),
        ]

    def _post_transform(self, node: NodeProto, attrs: dict, scores: str) -> list[NodeProto]:
        transform = attrs.get("post_transform", "NONE")
        out = node.output[1] if len(node.output) > 1 else ""
        if not out:
            return []
        if transform == "NONE":
            return [helper.make_node("Identity", [scores], [out])]
        if transform == "LOGISTIC":
            return [helper.make_node("Sigmoid", [scores], [out])]
        if transform == "SOFTMAX":
            return [helper.make_node("Softmax", [scores], [out], axis=1)]
        raise UnsupportedModel(
            f"LinearClassifier node '{node.name}' uses post_transform {transform}; NONE, "
            "LOGISTIC and SOFTMAX are supported"
        )

    def scaler(self, node: NodeProto, attrs: dict) -> list[NodeProto]:
        stem = node.name or "scaler"
        offset = self.constant(f"{stem}_offset", _floats(attrs.get("offset", [0.0])))
        scale = self.constant(f"{stem}_scale", _floats(attrs.get("scale", [1.0])))
        centred = self.name(f"{stem}_centred")
        return [
            helper.make_node("Sub", [node.input[0], offset], [centred]),
            helper.make_node("Mul", [centred, scale], [node.output[0]]),
        ]

    def normalizer(self, node: NodeProto, attrs: dict) -> list[NodeProto]:
        norm = attrs.get("norm", "MAX")
        stem = node.name or "normalizer"
        x, out = node.input[0], node.output[0]
        total = self.name(f"{stem}_norm")
        if norm == "L1":
            magnitude = self.name(f"{stem}_abs")
            return [
                helper.make_node("Abs", [x], [magnitude]),
                self._reduce("ReduceSum", magnitude, total),
                helper.make_node("Div", [x, total], [out]),
            ]
        if norm == "L2":
            squares, root = self.name(f"{stem}_squares"), self.name(f"{stem}_root")
            return [
                helper.make_node("Mul", [x, x], [squares]),
                self._reduce("ReduceSum", squares, total),
                helper.make_node("Sqrt", [total], [root]),
                helper.make_node("Div", [x, root], [out]),
            ]
        if norm == "MAX":
            return [self._reduce("ReduceMax", x, total), helper.make_node("Div", [x, total], [out])]
        raise UnsupportedModel(f"Normalizer node '{node.name}' has an unknown norm {norm!r}")

    def _reduce(self, op: str, x: str, out: str) -> NodeProto:
        axes_as_input = self.opset >= (13 if op == "ReduceSum" else 18)
        if axes_as_input:
            axes = self.constant(f"{out}_axes", np.array([1], dtype=np.int64))
            return helper.make_node(op, [x, axes], [out], keepdims=1)
        return helper.make_node(op, [x], [out], axes=[1], keepdims=1)


def _class_labels(node: NodeProto, attrs: dict) -> np.ndarray:
    if "classlabels_ints" in attrs:
        return np.asarray(attrs["classlabels_ints"], dtype=np.int64)
    if "classlabels_strings" in attrs:
        raw = next(a.strings for a in node.attribute if a.name == "classlabels_strings")
        return np.array(list(raw), dtype=object)
    raise UnsupportedModel(f"LinearClassifier node '{node.name}' names no class labels")


def _floats(values: Sequence[float]) -> np.ndarray:
    return np.asarray(values, dtype=np.float32)


def scores_output(graph: GraphProto) -> tuple[onnx.ValueInfoProto, str]:
    """The probabilities or scores output of a scikit-learn export: its one float tensor
    output, or the tensor a ZipMap turns into a sequence of maps (with the graph output that
    serves it: the tensor itself, or the ZipMap's maps). The label is not trained."""
    producers = {out: node for node in graph.node for out in node.output if out}
    candidates = []
    for value in graph.output:
        kind = value.type.WhichOneof("value")
        if kind == "tensor_type" and value.type.tensor_type.elem_type in _FLOAT_TYPES:
            candidates.append((value, value.name))
            continue
        node = producers.get(value.name)
        if kind == "sequence_type" and node is not None and node.op_type == "ZipMap":
            scores = helper.make_tensor_value_info(node.input[0], TensorProto.FLOAT, None)
            candidates.append((scores, value.name))
    if len(candidates) != 1:
        listed = ", ".join(f"'{v.name}' ({_type_name(v)})" for v in graph.output)
        raise UnsupportedModel(
            f"the scikit-learn export has outputs {listed}; exactly one of them must be the "
            "class probabilities or scores (a float tensor, or a ZipMap of one)"
        )
    return candidates[0]


class SklearnLogits(NamedTuple):
    value: str
    """The graph value the module computes; ``head`` turns it into logits."""
    final_activation: str | None
    """'Softmax' when the output is the softmax of the logits."""
    head: str | None = None
    served_column: int | None = None
    """The output is this column of the logits (a binary LinearSVC's positive score)."""


def sklearn_logits(
    producers: dict[str, NodeProto], output: str, graph: GraphProto
) -> SklearnLogits:
    """How the module computes logits for a scikit-learn output.

    The head maps that value to logits whose softmax is exactly the output's probabilities:
    ``logsigmoid`` for independent sigmoids that sum to one (a binary pair, or an L1
    normalisation of one-vs-rest sigmoids), ``binary`` (``[0, z]``) for ``[1 - sigmoid(z),
    sigmoid(z)]``. Scores that are not probabilities (LinearSVC, hinge SGD) are the logits;
    a binary LinearSVC outputs only the positive class's score s, and its logits are ``[-s, s]``.
    """
    constants = {init.name: init for init in graph.initializer}
    _, node = _through_identity(producers, output)
    if node is not None and node.op_type == "ArrayFeatureExtractor":
        pair, _ = _through_identity(producers, node.input[0])
        if _is_tied_pair(producers, pair) and _constant_is(constants, node.input[1], 1):
            return SklearnLogits(pair, None, served_column=1)
    normalised = False
    if _is_l1_normalisation(producers, node):
        assert node is not None
        _, node = _through_identity(producers, node.input[0])
        normalised = True
    if node is None:
        return SklearnLogits(output, None)
    activations = ("Softmax",) if normalised else ("Softmax", "LogSoftmax")
    if node.op_type in activations and _attributes(node).get("axis", 1) in (-1, 1):
        return SklearnLogits(node.input[0], node.op_type)
    if node.op_type == "Sigmoid" and (normalised or _is_tied_pair(producers, node.input[0])):
        return SklearnLogits(node.input[0], "Softmax", "logsigmoid")
    binary = _complement_pair(producers, node, constants)
    if binary is not None and not normalised:
        return SklearnLogits(binary, "Softmax", "binary")
    return SklearnLogits(output, None)


def _through_identity(producers: dict[str, NodeProto], name: str) -> tuple[str, NodeProto | None]:
    node = producers.get(name)
    while node is not None and node.op_type == "Identity":
        name = node.input[0]
        node = producers.get(name)
    return name, node


def _is_l1_normalisation(producers: dict[str, NodeProto], node: NodeProto | None) -> bool:
    if node is None or node.op_type != "Div":
        return False
    total = producers.get(node.input[1])
    if total is None or total.op_type != "ReduceSum":
        return False
    magnitude = producers.get(total.input[0])
    return (
        magnitude is not None and magnitude.op_type == "Abs" and magnitude.input[0] == node.input[0]
    )


def _is_tied_pair(producers: dict[str, NodeProto], name: str) -> bool:
    """``Concat(-s, s)`` along the classes, as the translation of a binary model writes it."""
    node = producers.get(name)
    if node is None or node.op_type != "Concat" or len(node.input) != 2:
        return False
    negated = producers.get(node.input[0])
    return negated is not None and negated.op_type == "Neg" and negated.input[0] == node.input[1]


def _constant_is(constants: dict[str, TensorProto], name: str, value: float) -> bool:
    tensor = constants.get(name)
    return tensor is not None and bool(np.all(numpy_helper.to_array(tensor) == value))


def _complement_pair(
    producers: dict[str, NodeProto], node: NodeProto, constants: dict[str, TensorProto]
) -> str | None:
    """z when ``node`` is ``Concat(1 - sigmoid(z), sigmoid(z))`` (skl2onnx's binary MLP)."""
    if node.op_type != "Concat" or len(node.input) != 2 or _attributes(node).get("axis") != 1:
        return None
    complement, positive = producers.get(node.input[0]), producers.get(node.input[1])
    if complement is None or positive is None or positive.op_type != "Sigmoid":
        return None
    if complement.op_type != "Sub" or complement.input[1] != node.input[1]:
        return None
    if not _constant_is(constants, complement.input[0], 1):
        return None
    return positive.input[0]
