"""Reading an uploaded ONNX file safely and validating the model before it is interpreted:
size limits, external data confined to the model's folder, operators, domains, opset."""

from __future__ import annotations

import copy
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import onnx
import onnx.inliner
from onnx import AttributeProto, GraphProto, ModelProto, NodeProto, TensorProto

from workers.engine.errors import InvalidModel, UnsupportedModel
from workers.engine.models.external_data import ExternalRange, external_range
from workers.engine.models.onnx.ops import _SUPPORTED_OPS
from workers.engine.models.onnx.protos import _STANDARD_DOMAINS, _TORCH_DTYPES
from workers.engine.models.onnx.sklearn import ML_DOMAIN, check_ml_operators
from workers.engine.spec import INLINE_WEIGHT_LIMIT

MIN_OPSET = 9


def _read_model_file(
    path: Path, max_bytes: int | None, allow_external_data: bool, inline_limit: int
) -> tuple[ModelProto, bool]:
    """The model in ``path`` with its checked external data loaded (see load_onnx_classifier),
    and whether some of it was left in its files (over ``inline_limit``): those tensors are read
    into torch from the model's folder later (:mod:`workers.engine.models.onnx.external`)."""
    data = _read_model_bytes(path, max_bytes)
    model = _parse_model(data)
    budget = None if max_bytes is None else max_bytes - len(data)
    del data
    streamed = _load_checked_external_data(
        model, path.parent, allow_external_data, budget, inline_limit
    )
    return model, streamed


def _read_model_bytes(path: Path, max_bytes: int | None) -> bytes:
    try:
        if not path.is_file():
            raise InvalidModel(f"the model file {path.name} is missing or not a regular file")
        with path.open("rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            if max_bytes is not None and size > max_bytes:
                raise InvalidModel(
                    f"the model file is {size} bytes; the limit is {max_bytes} bytes"
                )
            data = handle.read() if max_bytes is None else handle.read(max_bytes + 1)
    except OSError as exc:
        reason = exc.strerror or exc
        raise InvalidModel(f"cannot read the model file {path.name}: {reason}") from exc
    if max_bytes is not None and len(data) > max_bytes:
        raise InvalidModel(f"the model file is over the limit of {max_bytes} bytes")
    if not data:
        raise InvalidModel(f"the model file {path.name} is empty")
    return data


def _parse_model(data: bytes) -> ModelProto:
    try:
        model = onnx.load_model_from_string(data)
    except Exception as exc:
        raise InvalidModel(
            f"the file is not an ONNX model (truncated or corrupt protobuf: {exc})"
        ) from exc
    if not model.HasField("graph") or not model.graph.node or model.ir_version <= 0:
        raise InvalidModel("the file is not an ONNX model (no IR version or no graph nodes)")
    return model


def _all_tensors(graph: GraphProto) -> Iterator[TensorProto]:
    yield from graph.initializer
    yield from _graph_tensors_but_initializers(graph)


def _graph_tensors_but_initializers(graph: GraphProto) -> Iterator[TensorProto]:
    for sparse in graph.sparse_initializer:
        yield sparse.values
        yield sparse.indices
    for node in graph.node:
        yield from _attribute_tensors(node.attribute)


def _attribute_tensors(attributes: Sequence[AttributeProto]) -> Iterator[TensorProto]:
    for attr in attributes:
        if attr.HasField("t"):
            yield attr.t
        yield from attr.tensors
        if attr.HasField("g"):
            yield from _all_tensors(attr.g)
        for sub in attr.graphs:
            yield from _all_tensors(sub)


def _model_tensors(model: ModelProto) -> Iterator[TensorProto]:
    yield from model.graph.initializer
    yield from _tensors_but_initializers(model)


def _tensors_but_initializers(model: ModelProto) -> Iterator[TensorProto]:
    """Every tensor of the model other than the main graph's initializers."""
    yield from _graph_tensors_but_initializers(model.graph)
    for function in model.functions:
        for node in function.node:
            yield from _attribute_tensors(node.attribute)


STREAMED_MIN_BYTES = 64 << 10
"""External initializers smaller than this are read into the graph even over the inline limit:
scalars and shape targets that the graph analysis reads from the proto."""


def _load_checked_external_data(
    model: ModelProto, folder: Path, allowed: bool, budget: int | None, inline_limit: int
) -> bool:
    """Check every external location and read the tensors into the graph; over ``inline_limit``
    bytes in all, leave the main graph's large initializers of a torch type in their files and
    return True. What is still read into the graph then must stay under the hard
    :data:`INLINE_WEIGHT_LIMIT` (protobuf's cap), whatever the operator lowered the limit to."""
    external = [t for t in _model_tensors(model) if t.data_location == TensorProto.EXTERNAL]
    if not external:
        return False
    if not allowed:
        raise UnsupportedModel(
            f"the model stores {len(external)} tensor(s) in external data files (first: "
            f"'{external[0].name}'); upload a single self-contained .onnx file: export with"
            " torch.onnx.export(..., external_data=False), or re-save with"
            " onnx.save(onnx.load(path), path, save_as_external_data=False)"
        )
    base = folder.resolve()
    spans = [external_range(tensor, base) for tensor in external]
    total = sum(span.length for span in spans)
    if budget is not None and total > budget:
        raise InvalidModel("the model and its external data are over the size limit")
    if total <= inline_limit:
        for tensor, span in zip(external, spans, strict=True):
            _inline(tensor, span)
        return False
    initializers = sum(
        1 for t in model.graph.initializer if t.data_location == TensorProto.EXTERNAL
    )
    inlined, streamed = 0, False
    for index, (tensor, span) in enumerate(zip(external, spans, strict=True)):
        if (
            index < initializers
            and tensor.data_type in _TORCH_DTYPES
            and span.length >= STREAMED_MIN_BYTES
        ):
            streamed = True
            continue
        inlined += span.length
        if inlined > INLINE_WEIGHT_LIMIT:
            raise UnsupportedModel(
                f"the model keeps over {INLINE_WEIGHT_LIMIT} bytes of external data in tensors that"
                " are not initializers of a numeric type, or are under"
                f" {STREAMED_MIN_BYTES} bytes each; only large initializers are read from their"
                " files (docs/model-bundles.md)"
            )
        _inline(tensor, span)
    return streamed


def _inline(tensor: TensorProto, span: ExternalRange) -> None:
    with span.file.open("rb") as handle:
        handle.seek(span.offset)
        data = handle.read(span.length)
    if len(data) != span.length:
        raise InvalidModel(
            f"external data of tensor '{tensor.name}' is truncated: its file ends"
            f" {span.length - len(data)} bytes before the tensor does"
        )
    tensor.raw_data = data
    del tensor.external_data[:]
    tensor.data_location = TensorProto.DEFAULT


def _default_opset(model: ModelProto) -> int:
    versions = [o.version for o in model.opset_import if o.domain in _STANDARD_DOMAINS]
    if not versions:
        raise InvalidModel("the model does not import the standard ONNX operator set")
    return max(versions)


def _validate_model(model: ModelProto, model_path: Path | None = None) -> None:
    """``model_path``: where the model was read from, when some of its initializers are still
    in their external data files there (over the inline limit); it is then checked by that path,
    so that the checker finds them (checked in memory, it would look in the working folder)."""
    opset = _default_opset(model)
    if opset < MIN_OPSET:
        raise UnsupportedModel(
            f"the model uses ONNX opset {opset}; opset {MIN_OPSET} or newer is required "
            "(re-export it, or convert it with onnx.version_converter)"
        )
    if len(model.graph.sparse_initializer):
        raise UnsupportedModel("sparse initializers are not supported")
    functions = {(f.domain, f.name): f for f in model.functions}
    nodes = _expanded_nodes(model.graph.node, functions)
    custom = sorted(
        {(n.domain, n.op_type) for n in nodes if n.domain not in (*_STANDARD_DOMAINS, ML_DOMAIN)}
    )
    custom = sorted(custom + check_ml_operators(nodes))
    if custom:
        listed = ", ".join(f"{op} (domain '{domain}')" for domain, op in custom)
        raise UnsupportedModel(
            f"the model uses operators from non-standard domains: {listed}; only the standard "
            "ONNX domain and the linear scikit-learn operators of 'ai.onnx.ml' are supported"
        )
    unsupported = sorted(
        {
            n.op_type + (" (control flow)" if _has_subgraph(n) else "")
            for n in nodes
            if n.domain != ML_DOMAIN and n.op_type not in _SUPPORTED_OPS
        }
    )
    if unsupported:
        raise UnsupportedModel(f"unsupported ONNX operators: {', '.join(unsupported)}")
    in_training_mode = [
        n.name or n.op_type
        for n in nodes
        if n.op_type == "BatchNormalization"
        and (
            any(a.name == "training_mode" and a.i for a in n.attribute)
            or sum(bool(o) for o in n.output) > 1
        )
    ]
    if in_training_mode:
        raise UnsupportedModel(
            f"BatchNormalization node '{in_training_mode[0]}' was exported in training mode "
            "(training_mode=1 or running-statistics outputs); export the model after calling "
            "model.eval()"
        )
    if model_path is None and any(
        t.data_location == TensorProto.EXTERNAL for t in _model_tensors(model)
    ):
        raise UnsupportedModel(
            "the model references external data; load it with "
            "load_onnx_classifier(..., allow_external_data=True)"
        )
    if model_path is not None and any(
        t.data_location == TensorProto.EXTERNAL for t in _tensors_but_initializers(model)
    ):
        raise UnsupportedModel("only initializers of the main graph may stay in external data")
    try:
        onnx.checker.check_model(model if model_path is None else str(model_path))
    except Exception as exc:
        raise InvalidModel(f"the ONNX model is invalid: {exc}") from exc


def _expanded_nodes(
    nodes: Sequence[NodeProto], functions: dict[tuple[str, str], onnx.FunctionProto]
) -> list[NodeProto]:
    """Nodes of the graph with calls of model-local functions replaced by their bodies."""
    result: list[NodeProto] = []
    pending, seen = list(nodes), set()
    while pending:
        node = pending.pop()
        key = (node.domain, node.op_type)
        if key in functions:
            if key not in seen:
                seen.add(key)
                pending.extend(functions[key].node)
            continue
        result.append(node)
    return result


def _has_subgraph(node: NodeProto) -> bool:
    return any(a.type in (AttributeProto.GRAPH, AttributeProto.GRAPHS) for a in node.attribute)


def _inline_functions(model: ModelProto, *, copy_model: bool) -> ModelProto:
    if len(model.functions):
        return onnx.inliner.inline_local_functions(model)
    return copy.deepcopy(model) if copy_model else model
