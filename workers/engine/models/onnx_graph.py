"""Train an uploaded ONNX classifier in PyTorch, then write the trained weights back into it.

Design decision: we do not use a third-party onnx->torch converter. :class:`OnnxClassifier`
interprets the user's ONNX graph node by node with torch operations, and its trainable weights are
the graph's initializers. After training, :func:`write_trained_onnx` copies the user's own
``ModelProto`` and only replaces the initializer tensors, so the artifact keeps the user's nodes,
names, outputs and final Softmax: the output contract they sent comes back unchanged in structure.
Converters rebuild a different graph (renamed tensors, fused or split operators, a different
output), which would silently change what the user deploys.

The few edits we do make to the user's graph are deliberate and reported in ``notes``:

* a batch size fixed at export becomes the symbolic dimension ``batch``, and Reshape targets that
  hard-code that batch size are rewritten to follow the input (``-1``, or ``0`` = copy);
* an initializer that exporters de-duplicated between a weight and BatchNorm running statistics
  (equal tensors, e.g. an untrained layer) is untied into a new initializer, because running
  statistics are updated in place during training;
* model-local functions are inlined.

See docs/onnx-conversion.md for the operator list and the rules deciding what is trainable.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import math
import os
import re
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

import numpy as np
import onnx
import onnx.inliner
import torch
import torch.nn.functional as F
from onnx import (
    AttributeProto,
    GraphProto,
    ModelProto,
    NodeProto,
    TensorProto,
    helper,
    numpy_helper,
)
from torch import Tensor, nn

from workers.engine.errors import (
    InvalidData,
    InvalidModel,
    UnsupportedModel,
    float_input_required,
)

__all__ = ["OnnxClassifier", "load_onnx_classifier", "write_trained_onnx"]

MIN_OPSET = 9
BATCH_DIM = "batch"
_STANDARD_DOMAINS = ("", "ai.onnx")
_FLOAT_TYPES = (TensorProto.FLOAT, TensorProto.DOUBLE, TensorProto.FLOAT16, TensorProto.BFLOAT16)
_INLINE_WRITE_LIMIT = 1_800_000_000

_TORCH_DTYPES: dict[int, torch.dtype] = {
    TensorProto.FLOAT: torch.float32,
    TensorProto.DOUBLE: torch.float64,
    TensorProto.FLOAT16: torch.float16,
    TensorProto.BFLOAT16: torch.bfloat16,
    TensorProto.INT8: torch.int8,
    TensorProto.UINT8: torch.uint8,
    TensorProto.INT16: torch.int16,
    TensorProto.UINT16: torch.uint16,
    TensorProto.INT32: torch.int32,
    TensorProto.UINT32: torch.uint32,
    TensorProto.INT64: torch.int64,
    TensorProto.UINT64: torch.uint64,
    TensorProto.BOOL: torch.bool,
}


# --------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------


def load_onnx_classifier(
    path: Path, *, max_bytes: int | None = None, allow_external_data: bool = False
) -> OnnxClassifier:
    """Read, validate and wrap an ONNX classifier.

    Raises :class:`InvalidModel` for anything that is not a readable, well-formed ONNX model and
    :class:`UnsupportedModel` for a well-formed model we cannot train (operators, domains, inputs
    and outputs that are not a single float tensor each, control flow, external data).

    External data is refused unless ``allow_external_data`` is true, and even then every location
    must be a relative path that stays inside the model's folder after resolving symlinks. The
    model is parsed without following external references; they are read only once checked.
    """
    path = Path(path)
    data = _read_model_bytes(path, max_bytes)
    model = _parse_model(data)
    budget = None if max_bytes is None else max_bytes - len(data)
    del data
    _load_checked_external_data(model, path.parent, allow_external_data, budget)
    return OnnxClassifier(model, _owned=True)


class OnnxClassifier(nn.Module):
    """An ONNX classifier graph executed with torch operations, trainable end to end.

    ``forward`` returns logits: when the graph ends in Softmax or LogSoftmax over the classes,
    execution stops before it (``final_activation`` names it, ``output_is_probability`` is true
    for Softmax). Initializers feeding weight slots are ``nn.Parameter``s (see
    ``trainable_parameter_names``, in ONNX names); BatchNormalization running statistics are
    buffers updated in train mode; every other initializer is a frozen buffer.

    Constructing one from a ``ModelProto`` validates a copy of it (operators, domains, one float
    input and output, ``onnx.checker``) and test-runs the graph once; files go through
    :func:`load_onnx_classifier`, which also guards reading them. A new instance is in train
    mode, like any ``nn.Module``.
    """

    input_name: str
    output_name: str
    input_shape: tuple[int | None, ...]
    input_dtype: torch.dtype
    num_classes: int
    opset: int
    final_activation: str | None
    output_is_probability: bool
    notes: list[str]
    trainable_parameter_names: list[str]

    def __init__(self, model: ModelProto, *, _owned: bool = False) -> None:
        super().__init__()
        _validate_model(model)
        proto = _inline_functions(model, copy_model=not _owned)
        graph = proto.graph
        self.opset = _default_opset(proto)
        self.notes = []
        if len(model.functions):
            self.notes.append(
                f"{len(model.functions)} model-local function(s) were inlined; "
                "the written model contains their nodes instead"
            )
        graph_input, graph_output = _classifier_io(graph)
        self.input_name = graph_input.name
        self.output_name = graph_output.name
        input_dims = list(graph_input.type.tensor_type.shape.dim)
        self.input_shape = tuple(_static_dim(d) for d in input_dims[1:])
        self.input_dtype = _TORCH_DTYPES[graph_input.type.tensor_type.elem_type]
        self._exported_batch = _static_dim(input_dims[0])

        producers = {out: node for node in graph.node for out in node.output if out}
        self._logits_name, self.final_activation = _final_activation(
            producers, self.output_name, self.opset
        )
        self.output_is_probability = self.final_activation == "Softmax"
        if self.final_activation:
            self.notes.append(
                f"the model ends in {self.final_activation}: training uses the logits before it "
                f"and the written model keeps the {self.final_activation} output"
            )

        self._proto = proto
        live = _live_nodes(graph, self._logits_name, producers)
        self._plan = [
            _make_node(graph.node[i], i, self.opset)
            for i in live
            if graph.node[i].op_type != "Constant"
        ]
        self._tensor_attrs: dict[str, str] = {}
        self._initializer_types: dict[str, int] = {}
        self._register_tensors(graph, producers)
        self._note_graph_facts(graph)
        _schedule_drops(self._plan, self._logits_name)
        self.num_classes = self._check_runs(graph_output)
        _strip_initializer_data(graph, set(self._tensor_attrs))

    def forward(self, x: Tensor) -> Tensor:
        self._check_input(x)
        return self._execute(x.to(self.input_dtype), _Run(training=self.training))

    def onnx_tensor(self, name: str) -> Tensor:
        """The module's current tensor for an ONNX initializer name."""
        attr = self._tensor_attrs.get(name)
        if attr is None or name not in self._initializer_types:
            raise KeyError(f"no initializer named {name!r}")
        tensor: Tensor = getattr(self, attr)
        return tensor

    def to_onnx_model(self) -> ModelProto:
        """A copy of the user's model carrying the module's current initializer values."""
        model = copy.deepcopy(self._proto)
        for init in model.graph.initializer:
            if init.name in self._initializer_types:
                _fill_initializer(init, self.onnx_tensor(init.name))
        for value in (*model.graph.input, *model.graph.output):
            if value.name in (self.input_name, self.output_name):
                _make_batch_symbolic(value)
        return model

    # -- building -----------------------------------------------------------------------------

    def _register_tensors(self, graph: GraphProto, producers: dict[str, NodeProto]) -> None:
        initializers = {init.name: init for init in graph.initializer}
        constants = {node.output[0]: node for node in graph.node if node.op_type == "Constant"}
        roles = _initializer_roles(self._plan, initializers, producers)
        self._untie_running_stats(roles, initializers)
        self.trainable_parameter_names = []
        taken: set[str] = set()
        for name, init in initializers.items():
            dtype = _TORCH_DTYPES.get(init.data_type)
            if dtype is None:
                continue
            tensor = _tensor_from_proto(init)
            attr = _attr_name("p_" if name in roles.params else "b_", name, taken)
            if name in roles.params:
                self.register_parameter(attr, nn.Parameter(tensor))
                self.trainable_parameter_names.append(name)
            else:
                self.register_buffer(attr, tensor)
            self._tensor_attrs[name] = attr
            self._initializer_types[name] = init.data_type
        for name, node in constants.items():
            attr = _attr_name("k_", name, taken)
            self.register_buffer(attr, _constant_value(node), persistent=False)
            self._tensor_attrs[name] = attr
        self._frozen_weight_slots = roles.frozen_weight_slots
        self._refuse_training_mode_dropout()
        for node in self._plan:
            node.constant_inputs = frozenset(
                i
                for i, name in enumerate(node.inputs)
                if _constant_source(name, producers, initializers) is not None
            )
            if node.op_type == "BatchNormalization":
                node.attrs["_running_stats"] = all(
                    len(node.inputs) > i
                    and _initializer_source(node.inputs[i], producers, initializers) in roles.stats
                    for i in (3, 4)
                )

    def _refuse_training_mode_dropout(self) -> None:
        for node in self._plan:
            flag = node.inputs[2] if node.op_type == "Dropout" and len(node.inputs) > 2 else ""
            if flag in self._tensor_attrs and bool(getattr(self, self._tensor_attrs[flag]).all()):
                raise UnsupportedModel(
                    f"Dropout node '{node.name}' was exported in training mode (training_mode "
                    "is true, so it drops values at inference); export the model after calling "
                    "model.eval()"
                )

    def _untie_running_stats(self, roles: _Roles, initializers: dict[str, TensorProto]) -> None:
        """Give each shared BatchNorm running statistic its own initializer.

        Exporters merge initializers with equal contents; a fresh BatchNorm has running_mean ==
        bias == 0 and running_var == weight == 1, so after the merge one tensor is both a
        trainable weight and a statistic updated in place. Untying keeps both meanings.
        """
        graph = self._proto.graph
        taken = {init.name for init in graph.initializer} | {
            out for node in graph.node for out in node.output
        }
        untied = []
        for node, slot, source in roles.untie:
            new_name = _unique(f"{node.inputs[slot]}.untied", taken)
            clone = TensorProto()
            clone.CopyFrom(initializers[source])
            clone.name = new_name
            graph.initializer.append(clone)
            initializers[new_name] = clone
            graph.node[node.index].input[slot] = new_name
            node.inputs[slot] = new_name
            roles.stats.add(new_name)
            untied.append(f"'{new_name}' (was '{source}')")
        if untied:
            self.notes.append(
                f"{len(untied)} BatchNorm running statistic(s) shared an initializer with another "
                "input (exporters merge equal tensors, e.g. of an untrained layer) and were "
                f"untied into new initializers: {', '.join(untied)}"
            )

    def _note_graph_facts(self, graph: GraphProto) -> None:
        batch_norms = [n for n in self._plan if n.op_type == "BatchNormalization"]
        if batch_norms:
            self.notes.append(
                f"{len(batch_norms)} BatchNormalization layer(s) train with batch statistics "
                "and update their running statistics"
            )
        dropouts = sum(n.op_type == "Dropout" for n in self._plan)
        if dropouts:
            self.notes.append(f"{dropouts} Dropout layer(s) are active in train mode")
        folded = _folded_batchnorm_layers(graph, self._plan)
        if folded:
            self.notes.append(
                f"BatchNorm folded into {folded} Conv/Gemm layer(s) by the exporter: "
                "trained as it is"
            )
        if self._frozen_weight_slots:
            self.notes.append(
                f"{self._frozen_weight_slots} weight input(s) are not initializers (constants or "
                "computed values) and stay frozen"
            )

    def _check_runs(self, graph_output: onnx.ValueInfoProto) -> int:
        """Run the graph once at a batch size other than the exported one and return the class
        count. With a fixed exported batch, this run also finds the Reshape targets that
        hard-code it (see module docstring) so that both the module and the written model follow
        the runtime batch size."""
        declared = list(graph_output.type.tensor_type.shape.dim)
        if any(d is None for d in self.input_shape):
            if self._exported_batch is not None:
                _clear_value_info_shapes(self._proto.graph, None)
                self.notes.append(
                    f"the batch size was fixed to {self._exported_batch} at export; the graph "
                    "could not be test-run (symbolic input dimensions), so Reshape targets were "
                    "not checked for it"
                )
            if len(declared) == 2 and _static_dim(declared[1]):
                return _static_dim(declared[1]) or 0
            raise UnsupportedModel(
                "cannot determine the number of classes: the input has symbolic dimensions "
                "other than the batch and the output's class dimension is not fixed"
            )
        batch = 3 if self._exported_batch != 3 else 5
        if self._exported_batch is not None:
            self._fix_batch_reshapes(batch)
        shapes: dict[str, tuple[int, ...]] = {}
        try:
            logits = self._probe(batch, _Run(training=False, shapes=shapes))
        except _NodeFailure as exc:
            raise self._probe_failure(exc, batch) from exc
        _clear_value_info_shapes(self._proto.graph, shapes)
        if logits.dim() != 2 or logits.shape[0] != batch:
            raise UnsupportedModel(
                f"for a batch of {batch} the model outputs shape {tuple(logits.shape)}; a "
                "classifier must output [batch, classes]"
            )
        if logits.shape[1] < 2:
            raise UnsupportedModel(
                "the model outputs a single score per sample; export one logit per class "
                "(at least two) so that it can be trained with cross-entropy"
            )
        return int(logits.shape[1])

    def _probe(self, batch: int, run: _Run) -> Tensor:
        x = torch.zeros((batch, *[d or 1 for d in self.input_shape]), dtype=self.input_dtype)
        with torch.no_grad():
            return self._execute(x, run)

    def _probe_failure(self, exc: _NodeFailure, batch: int) -> UnsupportedModel:
        exported = self._exported_batch
        if exported is not None:
            try:
                self._probe(exported, _Run(training=False))
            except _NodeFailure:
                pass
            else:
                return UnsupportedModel(
                    f"the graph only runs with the batch size it was exported with ({exported}); "
                    f"at batch size {batch} it fails at {str(exc).rstrip('.')}. Re-export with a "
                    "dynamic batch "
                    "dimension (dynamic_shapes / dynamic_axes)"
                )
        return UnsupportedModel(f"the graph cannot be executed: {exc}")

    def _fix_batch_reshapes(self, batch: int) -> None:
        exported = self._exported_batch
        assert exported is not None
        found: set[int] = set()
        with contextlib.suppress(_NodeFailure):
            self._probe(batch, _Run(training=False, batch_fix=(exported, batch), fixed=found))
        fixed = [n for n in self._plan if n.index in found]
        rewritten = self._rewrite_reshape_targets(fixed)
        message = (
            f"the batch size was fixed to {exported} at export; the input and output now have "
            f"the symbolic batch dimension '{BATCH_DIM}'"
        )
        if rewritten:
            message += f" and {rewritten} Reshape target(s) follow the runtime batch size"
        self.notes.append(message)

    def _rewrite_reshape_targets(self, nodes: list[_Node]) -> int:
        identities = {n.outputs[0]: n.inputs[0] for n in self._plan if n.op_type == "Identity"}

        def source_of(name: str) -> str:
            while name in identities:
                name = identities[name]
            return name

        by_source: dict[str, list[_Node]] = {}
        for node in nodes:
            by_source.setdefault(source_of(node.inputs[1]), []).append(node)
        consumers: dict[str, int] = {}
        for node in self._plan:
            if node.op_type != "Identity":
                for name in filter(None, node.inputs):
                    consumers[source_of(name)] = consumers.get(source_of(name), 0) + 1
        count = 0
        for source, reshapes in by_source.items():
            if consumers.get(source) != len(reshapes):
                continue
            target = [int(v) for v in getattr(self, self._tensor_attrs[source]).tolist()]
            new = _batch_free_target(target, reshapes)
            if new is None:
                continue
            self._set_constant(source, new)
            for node in reshapes:
                if 0 in new[:1] and node.attrs.get("allowzero", 0):
                    node.attrs["allowzero"] = 0
                    _set_int_attribute(self._proto.graph.node[node.index], "allowzero", 0)
            count += len(reshapes)
        return count

    def _set_constant(self, name: str, values: list[int]) -> None:
        attr = self._tensor_attrs[name]
        old: Tensor = getattr(self, attr)
        setattr(self, attr, torch.tensor(values, dtype=old.dtype).reshape(old.shape))
        if name in self._initializer_types:
            return
        for node in self._proto.graph.node:
            if node.op_type == "Constant" and node.output[0] == name:
                _set_constant_node(node, np.asarray(values, dtype=np.int64).reshape(old.shape))

    # -- running ------------------------------------------------------------------------------

    def _check_input(self, x: Tensor) -> None:
        expected = self.input_shape
        got = tuple(x.shape[1:])
        if len(got) != len(expected) or any(
            e is not None and e != g for e, g in zip(expected, got, strict=True)
        ):
            shown = tuple("?" if d is None else d for d in expected)
            raise InvalidData(
                f"the model expects inputs of shape [batch, {', '.join(map(str, shown))}] "
                f"but got {list(x.shape)}"
            )

    def _execute(self, x: Tensor, run: _Run) -> Tensor:
        env: dict[str, Tensor] = {name: getattr(self, a) for name, a in self._tensor_attrs.items()}
        env[self.input_name] = x
        run.batch = int(x.shape[0])
        for node in self._plan:
            args = [env[name] if name else None for name in node.inputs]
            try:
                result = node.fn(run, node, args)
            except _NodeFailure:
                raise
            except Exception as exc:
                raise _NodeFailure(node, exc) from exc
            values = (result,) if isinstance(result, Tensor) else result
            for name, value in zip(node.outputs, values, strict=False):
                if name:
                    env[name] = value
                    if run.shapes is not None:
                        run.shapes[name] = tuple(value.shape)
            for name in node.drop_after:
                env.pop(name, None)
        return env[self._logits_name]


def write_trained_onnx(model: OnnxClassifier, path: Path) -> None:
    """Write the user's graph with the module's current tensors (parameters and buffers).

    Nodes, names, inputs and outputs (including a final Softmax) are the user's; a fixed batch
    dimension on the input and output becomes the symbolic ``batch``. The result passes
    ``onnx.checker``. Models over ~1.8 GB are written with their tensors in ``<name>.data``.
    """
    path = Path(path)
    proto = model.to_onnx_model()
    total = sum(len(init.raw_data) for init in proto.graph.initializer)
    if total > _INLINE_WRITE_LIMIT:
        onnx.save_model(
            proto, path, save_as_external_data=True, location=f"{path.name}.data", size_threshold=0
        )
        onnx.checker.check_model(str(path))
        return
    onnx.checker.check_model(proto)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(proto.SerializeToString())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# --------------------------------------------------------------------------------------------
# Reading and validating the file
# --------------------------------------------------------------------------------------------


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
    yield from _all_tensors(model.graph)
    for function in model.functions:
        for node in function.node:
            yield from _attribute_tensors(node.attribute)


def _load_checked_external_data(
    model: ModelProto, folder: Path, allowed: bool, budget: int | None
) -> None:
    external = [t for t in _model_tensors(model) if t.data_location == TensorProto.EXTERNAL]
    if not external:
        return
    if not allowed:
        raise UnsupportedModel(
            f"the model stores {len(external)} tensor(s) in external data files (first: "
            f"'{external[0].name}'); upload a single self-contained .onnx file: export with"
            " torch.onnx.export(..., external_data=False), or re-save with"
            " onnx.save(onnx.load(path), path, save_as_external_data=False)"
        )
    base = folder.resolve()
    for tensor in external:
        info = {entry.key: entry.value for entry in tensor.external_data}
        file = _external_location(tensor.name, info.get("location", ""), base)
        try:
            offset = int(info.get("offset") or 0)
            available = file.stat().st_size - offset
            size = available if info.get("length") is None else int(info["length"])
        except ValueError as exc:
            raise InvalidModel(f"external data of tensor '{tensor.name}' is malformed") from exc
        if offset < 0 or size < 0 or size > available:
            raise InvalidModel(
                f"external data of tensor '{tensor.name}' lies outside its file "
                f"(offset {offset}, length {size})"
            )
        if budget is not None:
            budget -= size
            if budget < 0:
                raise InvalidModel("the model and its external data are over the size limit")
        with file.open("rb") as handle:
            handle.seek(offset)
            tensor.raw_data = handle.read(size)
        del tensor.external_data[:]
        tensor.data_location = TensorProto.DEFAULT


def _external_location(tensor: str, location: str, base: Path) -> Path:
    """Resolve an external data location, refusing anything that leaves the model's folder."""
    if not location or "\x00" in location:
        raise InvalidModel(f"external data of tensor '{tensor}' has no valid location")
    posix = PurePosixPath(location.replace("\\", "/"))
    if (
        posix.is_absolute()
        or PureWindowsPath(location).is_absolute()
        or PureWindowsPath(location).drive
    ):
        raise InvalidModel(
            f"external data of tensor '{tensor}' has an absolute location ({location!r}); "
            "only files inside the model's folder are accepted"
        )
    if ".." in posix.parts:
        raise InvalidModel(
            f"external data of tensor '{tensor}' points outside the model's folder ({location!r})"
        )
    resolved = (base / posix).resolve()
    if not resolved.is_relative_to(base):
        raise InvalidModel(
            f"external data of tensor '{tensor}' resolves outside the model's folder "
            f"({location!r}, through a symbolic link)"
        )
    if not resolved.is_file():
        raise InvalidModel(f"external data file {location!r} of tensor '{tensor}' is missing")
    return resolved


def _default_opset(model: ModelProto) -> int:
    versions = [o.version for o in model.opset_import if o.domain in _STANDARD_DOMAINS]
    if not versions:
        raise InvalidModel("the model does not import the standard ONNX operator set")
    return max(versions)


def _validate_model(model: ModelProto) -> None:
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
    custom = sorted({(n.domain, n.op_type) for n in nodes if n.domain not in _STANDARD_DOMAINS})
    if custom:
        listed = ", ".join(f"{op} (domain '{domain}')" for domain, op in custom)
        raise UnsupportedModel(
            f"the model uses operators from non-standard domains: {listed}; only the standard "
            "ONNX domain is supported"
        )
    unsupported = sorted(
        {
            n.op_type + (" (control flow)" if _has_subgraph(n) else "")
            for n in nodes
            if n.op_type not in _SUPPORTED_OPS
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
    if any(t.data_location == TensorProto.EXTERNAL for t in _model_tensors(model)):
        raise UnsupportedModel(
            "the model references external data; load it with "
            "load_onnx_classifier(..., allow_external_data=True)"
        )
    try:
        onnx.checker.check_model(model)
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


def _classifier_io(graph: GraphProto) -> tuple[onnx.ValueInfoProto, onnx.ValueInfoProto]:
    initializers = {init.name for init in graph.initializer}
    inputs = [value for value in graph.input if value.name not in initializers]
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
    return graph_input, graph_output


def _type_name(value: onnx.ValueInfoProto) -> str:
    if not value.type.HasField("tensor_type"):
        return value.type.WhichOneof("value") or "unknown"
    return str(TensorProto.DataType.Name(value.type.tensor_type.elem_type))


def _static_dim(dim: onnx.TensorShapeProto.Dimension) -> int | None:
    return dim.dim_value if dim.HasField("dim_value") and dim.dim_value > 0 else None


def _make_batch_symbolic(value: onnx.ValueInfoProto) -> None:
    dims = value.type.tensor_type.shape.dim
    if len(dims) and dims[0].HasField("dim_value"):
        dims[0].dim_param = BATCH_DIM


def _clear_value_info_shapes(graph: GraphProto, shapes: dict[str, tuple[int, ...]] | None) -> None:
    """Forget declared intermediate shapes that the runtime batch size contradicts."""
    for value in graph.value_info:
        tensor_type = value.type.tensor_type
        if not tensor_type.HasField("shape"):
            continue
        if shapes is not None:
            seen = shapes.get(value.name)
            declared = [_static_dim(d) for d in tensor_type.shape.dim]
            if seen is None or (
                len(seen) == len(declared)
                and all(d is None or d == s for d, s in zip(declared, seen, strict=True))
            ):
                continue
        tensor_type.ClearField("shape")


# --------------------------------------------------------------------------------------------
# Graph analysis
# --------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------
# Tensors and attributes
# --------------------------------------------------------------------------------------------


def _tensor_from_proto(proto: TensorProto) -> Tensor:
    array = numpy_helper.to_array(proto)
    if proto.data_type == TensorProto.BFLOAT16:
        return torch.from_numpy(array.view(np.int16).copy()).view(torch.bfloat16)
    return torch.from_numpy(np.array(array, copy=True))


def _fill_initializer(init: TensorProto, tensor: Tensor) -> None:
    dims = list(init.dims)
    if list(tensor.shape) != dims:
        raise ValueError(
            f"tensor for initializer '{init.name}' has shape {list(tensor.shape)}, the graph "
            f"expects {dims}"
        )
    value = tensor.detach().to("cpu", _TORCH_DTYPES[init.data_type]).contiguous()
    if value.dtype == torch.bfloat16:
        value = value.view(torch.int16)
    array = value.numpy()
    if sys.byteorder == "big":
        array = array.byteswap()
    _clear_tensor_data(init)
    init.raw_data = array.tobytes()


def _clear_tensor_data(init: TensorProto) -> None:
    for name in (
        "float_data",
        "int32_data",
        "string_data",
        "int64_data",
        "double_data",
        "uint64_data",
        "raw_data",
        "external_data",
    ):
        init.ClearField(name)
    init.data_location = TensorProto.DEFAULT


def _strip_initializer_data(graph: GraphProto, held: set[str]) -> None:
    """The module holds these tensors; the kept proto only needs their names, types and dims."""
    for init in graph.initializer:
        if init.name in held:
            _clear_tensor_data(init)


def _attributes(node: NodeProto) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for attr in node.attribute:
        value = helper.get_attribute_value(attr)
        if isinstance(value, bytes):
            value = value.decode("utf-8", errors="replace")
        elif isinstance(value, TensorProto):
            value = _tensor_from_proto(value)
        result[attr.name] = value
    return result


def _constant_value(node: NodeProto) -> Tensor:
    attrs = _attributes(node)
    if isinstance(attrs.get("value"), Tensor):
        value: Tensor = attrs["value"]
        return value
    for key in ("value_float", "value_floats", "value_int", "value_ints"):
        if key in attrs:
            dtype = torch.float32 if "float" in key else torch.int64
            return torch.tensor(attrs[key], dtype=dtype)
    raise UnsupportedModel(f"Constant node '{node.name}' has an unsupported value attribute")


def _set_constant_node(node: NodeProto, values: np.ndarray) -> None:
    for attr in node.attribute:
        if attr.name == "value":
            attr.t.CopyFrom(numpy_helper.from_array(values, attr.t.name))
        elif attr.name == "value_ints":
            del attr.ints[:]
            attr.ints.extend(int(v) for v in values.reshape(-1))


def _set_int_attribute(node: NodeProto, name: str, value: int) -> None:
    for attr in node.attribute:
        if attr.name == name:
            attr.i = value
            return
    node.attribute.append(helper.make_attribute(name, value))


def _attr_name(prefix: str, onnx_name: str, taken: set[str]) -> str:
    return _unique(prefix + re.sub(r"\W", "_", onnx_name), taken)


def _unique(base: str, taken: set[str]) -> str:
    name, n = base, 1
    while name in taken:
        n += 1
        name = f"{base}_{n}"
    taken.add(name)
    return name


# --------------------------------------------------------------------------------------------
# Execution
# --------------------------------------------------------------------------------------------


@dataclass
class _Run:
    """State of one execution of the graph."""

    training: bool
    batch: int = 0
    batch_fix: tuple[int, int] | None = None
    fixed: set[int] | None = None
    shapes: dict[str, tuple[int, ...]] | None = None


_OpFn = Callable[[_Run, "_Node", list[Tensor | None]], Tensor | Sequence[Tensor]]


@dataclass
class _Node:
    op_type: str
    name: str
    inputs: list[str]
    outputs: list[str]
    attrs: dict[str, Any]
    opset: int
    index: int
    fn: _OpFn
    drop_after: list[str] = field(default_factory=list)
    constant_inputs: frozenset[int] = frozenset()


class _NodeFailure(RuntimeError):
    def __init__(self, node: _Node, exc: BaseException) -> None:
        super().__init__(f"{node.op_type} node '{node.name}': {exc}")


class _Unsupported(Exception):
    """An operator attribute combination the interpreter does not implement."""


def _make_node(proto: NodeProto, index: int, opset: int) -> _Node:
    return _Node(
        op_type=proto.op_type,
        name=proto.name or f"#{index}",
        inputs=list(proto.input),
        outputs=list(proto.output),
        attrs=_attributes(proto),
        opset=opset,
        index=index,
        fn=_OPS[proto.op_type],
    )


def _arg(x: list[Tensor | None], i: int) -> Tensor | None:
    return x[i] if i < len(x) else None


def _req(x: list[Tensor | None], i: int) -> Tensor:
    value = _arg(x, i)
    if value is None:
        raise _Unsupported(f"input {i} is required")
    return value


def _ints(value: Tensor | None) -> list[int]:
    return [] if value is None else [int(v) for v in value.reshape(-1).tolist()]


def _axis(axis: int, rank: int) -> int:
    return axis + rank if axis < 0 else axis


def _unary(fn: Callable[[Tensor], Tensor]) -> _OpFn:
    return lambda run, node, x: fn(_req(x, 0))


def _binary(fn: Callable[[Tensor, Tensor], Tensor]) -> _OpFn:
    return lambda run, node, x: fn(_req(x, 0), _req(x, 1))


def _variadic(fn: Callable[[Tensor, Tensor], Tensor]) -> _OpFn:
    return lambda run, node, x: functools.reduce(fn, [v for v in x if v is not None])


def _div(a: Tensor, b: Tensor) -> Tensor:
    if a.is_floating_point() or b.is_floating_point():
        return a / b
    return torch.div(a, b, rounding_mode="trunc")


def _pow(a: Tensor, b: Tensor) -> Tensor:
    return torch.pow(a, b).to(a.dtype)


def _mean(run: _Run, node: _Node, x: list[Tensor | None]) -> Tensor:
    values = [v for v in x if v is not None]
    return functools.reduce(torch.add, values) / len(values)


def _mod(run: _Run, node: _Node, x: list[Tensor | None]) -> Tensor:
    a, b = _req(x, 0), _req(x, 1)
    return torch.fmod(a, b) if node.attrs.get("fmod", 0) else torch.remainder(a, b)


# -- convolution and pooling -------------------------------------------------------------------


def _spatial_pads(
    node: _Node,
    sizes: Sequence[int],
    kernel: Sequence[int],
    strides: Sequence[int],
    dilations: Sequence[int],
) -> list[tuple[int, int]]:
    auto_pad = node.attrs.get("auto_pad", "NOTSET")
    nd = len(kernel)
    if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        pairs = []
        for size, k, s, d in zip(sizes, kernel, strides, dilations, strict=True):
            out = -(-size // s)
            total = max(0, (out - 1) * s + (k - 1) * d + 1 - size)
            pairs.append(_split_total(total, upper=auto_pad == "SAME_UPPER"))
        return pairs
    if auto_pad == "VALID":
        return [(0, 0)] * nd
    pads = node.attrs.get("pads") or [0] * (2 * nd)
    return [(pads[i], pads[i + nd]) for i in range(nd)]


def _split_total(total: int, *, upper: bool) -> tuple[int, int]:
    """Split padding between begin and end; SAME_UPPER puts the odd element at the end."""
    small = total // 2
    return (small, total - small) if upper else (total - small, small)


def _torch_pad(pairs: Sequence[tuple[int, int]]) -> list[int]:
    """ONNX (begin, end) pairs in dimension order -> F.pad's last-dimension-first list."""
    return [p for pair in reversed(pairs) for p in pair]


def _window(
    node: _Node, data: Tensor, kernel: Sequence[int] | None = None
) -> tuple[list[int], list[int], list[int], list[tuple[int, int]]]:
    kernel = list(node.attrs.get("kernel_shape") or kernel or [])
    nd = len(kernel)
    strides = list(node.attrs.get("strides") or [1] * nd)
    dilations = list(node.attrs.get("dilations") or [1] * nd)
    pairs = _spatial_pads(node, data.shape[2:], kernel, strides, dilations)
    return kernel, strides, dilations, pairs


_CONVS = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}
_CONV_TRANSPOSES = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}
_MAX_POOLS = {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}
_AVG_POOLS = {1: F.avg_pool1d, 2: F.avg_pool2d, 3: F.avg_pool3d}


def _conv(run: _Run, node: _Node, x: list[Tensor | None]) -> Tensor:
    data, weight, bias = _req(x, 0), _req(x, 1), _arg(x, 2)
    kernel, strides, dilations, pairs = _window(node, data, list(weight.shape[2:]))
    padding: list[int] = [b for b, _ in pairs]
    if any(b != e for b, e in pairs):
        data, padding = F.pad(data, _torch_pad(pairs)), [0] * len(pairs)
    conv = _CONVS[len(kernel)]
    return conv(data, weight, bias, strides, padding, dilations, node.attrs.get("group", 1))


def _conv_transpose(run: _Run, node: _Node, x: list[Tensor | None]) -> Tensor:
    data, weight, bias = _req(x, 0), _req(x, 1), _arg(x, 2)
    kernel = list(node.attrs.get("kernel_shape") or weight.shape[2:])
    nd = len(kernel)
    strides = list(node.attrs.get("strides") or [1] * nd)
    dilations = list(node.attrs.get("dilations") or [1] * nd)
    out_pad = list(node.attrs.get("output_padding") or [0] * nd)
    auto_pad = node.attrs.get("auto_pad", "NOTSET")
    sizes = data.shape[2:]
    full = [
        s * (n - 1) + o + (k - 1) * d + 1
        for s, n, o, k, d in zip(strides, sizes, out_pad, kernel, dilations, strict=True)
    ]
    wanted = node.attrs.get("output_shape")
    if wanted is None and auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        wanted = [n * s for n, s in zip(sizes, strides, strict=True)]
    if wanted is not None:
        wanted = list(wanted)[-nd:]
        pairs = []
        for total in (f - w for f, w in zip(full, wanted, strict=True)):
            pairs.append(_split_total(total, upper=auto_pad == "SAME_UPPER"))
    elif auto_pad == "VALID":
        pairs = [(0, 0)] * nd
    else:
        pads = node.attrs.get("pads") or [0] * (2 * nd)
        pairs = [(pads[i], pads[i + nd]) for i in range(nd)]
    group = node.attrs.get("group", 1)
    y = _CONV_TRANSPOSES[nd](data, weight, bias, strides, 0, out_pad, group, dilations)
    if any(b or e for b, e in pairs):
        y = F.pad(y, [-p for p in _torch_pad(pairs)])
    return y


def _max_pool(run: _Run, node: _Node, x: list[Tensor | None]) -> Tensor:
    if len(node.outputs) > 1 and node.outputs[1]:
        raise _Unsupported("the Indices output of MaxPool is not supported")
    data = _req(x, 0)
    kernel, strides, dilations, pairs = _window(node, data)
    ceil_mode = bool(node.attrs.get("ceil_mode", 0))
    fits = all(
        b == e and b <= ((k - 1) * d + 1) // 2
        for (b, e), k, d in zip(pairs, kernel, dilations, strict=True)
    )
    pool = _MAX_POOLS[len(kernel)]
    if fits:
        padding = [b for b, _ in pairs]
        return pool(data, kernel, strides, padding, dilations, ceil_mode=ceil_mode)
    padded = F.pad(data, _torch_pad(pairs), value=-math.inf)
    y = pool(padded, kernel, strides, 0, dilations, ceil_mode=ceil_mode)
    return _drop_padding_windows(y, data, kernel, strides, dilations, pairs, ceil_mode)


def _average_pool(run: _Run, node: _Node, x: list[Tensor | None]) -> Tensor:
    data = _req(x, 0)
    kernel, strides, dilations, pairs = _window(node, data)
    if any(d != 1 for d in dilations):
        raise _Unsupported("AveragePool with dilations is not supported")
    ceil_mode = bool(node.attrs.get("ceil_mode", 0))
    include_pad = bool(node.attrs.get("count_include_pad", 0))
    pool = _AVG_POOLS[len(kernel)]
    if all(b == e and b <= k // 2 for (b, e), k in zip(pairs, kernel, strict=True)):
        return pool(data, kernel, strides, [b for b, _ in pairs], ceil_mode, include_pad)
    flat = _torch_pad(pairs)
    y = pool(F.pad(data, flat), kernel, strides, 0, ceil_mode, True)
    if not include_pad:
        ones = torch.ones((1, 1, *data.shape[2:]), dtype=data.dtype, device=data.device)
        y = y / pool(F.pad(ones, flat), kernel, strides, 0, ceil_mode, True)
    return _drop_padding_windows(y, data, kernel, strides, [1] * len(kernel), pairs, ceil_mode)


def _drop_padding_windows(
    y: Tensor,
    data: Tensor,
    kernel: Sequence[int],
    strides: Sequence[int],
    dilations: Sequence[int],
    pairs: Sequence[tuple[int, int]],
    ceil_mode: bool,
) -> Tensor:
    """With ceil_mode, ONNX drops a last window that would start in the end padding; torch only
    knows that rule for its own symmetric padding, not for padding we applied beforehand."""
    if not ceil_mode:
        return y
    for i, (size, k, s, d, (begin, end)) in enumerate(
        zip(data.shape[2:], kernel, strides, dilations, pairs, strict=True)
    ):
        out = -(-(size + begin + end - (k - 1) * d - 1) // s) + 1
        if (out - 1) * s >= size + begin:
            out -= 1
        y = y.narrow(2 + i, 0, min(out, y.shape[2 + i]))
    return y


def _global_pool(reduce: Callable[..., Tensor]) -> _OpFn:
    def run_pool(run: _Run, node: _Node, x: list[Tensor | None]) -> Tensor:
        data = _req(x, 0)
        return reduce(data, dim=tuple(range(2, data.dim())), keepdim=True)

    return run_pool


def _lrn(run: _Run, node: _Node, x: list[Tensor | None]) -> Tensor:
    a = node.attrs
    return F.local_response_norm(
        _req(x, 0), a["size"], a.get("alpha", 1e-4), a.get("beta", 0.75), a.get("bias", 1.0)
    )


# -- linear algebra and normalisation ----------------------------------------------------------


def _gemm(run: _Run, node: _Node, x: list[Tensor | None]) -> Tensor:
    a, b, c = _req(x, 0), _req(x, 1), _arg(x, 2)
    if node.attrs.get("transA", 0):
        a = a.t()
    if node.attrs.get("transB", 0):
        b = b.t()
    y = a @ b
    alpha, beta = node.attrs.get("alpha", 1.0), node.attrs.get("beta", 1.0)
    if alpha != 1.0:
        y = y * alpha
    if c is not None:
        y = y + (c if beta == 1.0 else c * beta)
    return y


def _batch_norm(run: _Run, node: _Node, x: list[Tensor | None]) -> Tensor:
    data, scale, bias, mean, var = (_req(x, i) for i in range(5))
    eps = node.attrs.get("epsilon", 1e-5)
    if run.training:
        running = node.attrs.get("_running_stats", False)
        momentum = 1.0 - node.attrs.get("momentum", 0.9)
        y = F.batch_norm(
            data,
            mean if running else None,
            var if running else None,
            scale,
            bias,
            True,
            momentum,
            eps,
        )
    else:
        y = F.batch_norm(data, mean, var, scale, bias, False, 0.0, eps)
    return y


def _instance_norm(run: _Run, node: _Node, x: list[Tensor | None]) -> Tensor:
    eps = node.attrs.get("epsilon", 1e-5)
    return F.instance_norm(_req(x, 0), weight=_req(x, 1), bias=_req(x, 2), eps=eps)


def _layer_norm(run: _Run, node: _Node, x: list[Tensor | None]) -> Sequence[Tensor]:
    data, scale, bias = _req(x, 0), _req(x, 1), _arg(x, 2)
    axis = _axis(node.attrs.get("axis", -1), data.dim())
    eps = node.attrs.get("epsilon", 1e-5)
    shape = tuple(data.shape[axis:])
    dims = tuple(range(axis, data.dim()))
    if tuple(scale.shape) == shape and (bias is None or tuple(bias.shape) == shape):
        y = F.layer_norm(data, shape, scale, bias, eps)
    else:
        y = F.layer_norm(data, shape, None, None, eps) * scale
        y = y if bias is None else y + bias
    if len(node.outputs) == 1:
        return (y,)
    mean = data.mean(dim=dims, keepdim=True)
    inv_std = torch.rsqrt(data.var(dim=dims, keepdim=True, unbiased=False) + eps)
    return (y, mean, inv_std)


# -- activations --------------------------------------------------------------------------------


def _leaky_relu(run: _Run, node: _Node, x: list[Tensor | None]) -> Tensor:
    return F.leaky_relu(_req(x, 0), node.attrs.get("alpha", 0.01))


def _prelu(run: _Run, node: _Node, x: list[Tensor | None]) -> Tensor:
    data, slope = _req(x, 0), _req(x, 1)
    return torch.where(data >= 0, data, data * slope)


def _elu(run: _Run, node: _Node, x: list[Tensor | None]) -> Tensor:
    return F.elu(_req(x, 0), node.attrs.get("alpha", 1.0))


def _selu(run: _Run, node: _Node, x: list[Tensor | None]) -> Tensor:
    data = _req(x, 0)
    alpha = node.attrs.get("alpha", 1.67326319217681884765625)
    gamma = node.attrs.get("gamma", 1.05070102214813232421875)
    return gamma * torch.where(data > 0, data, alpha * torch.expm1(data))


def _hard_sigmoid(run: _Run, node: _Node, x: list[Tensor | None]) -> Tensor:
    alpha, beta = node.attrs.get("alpha", 0.2), node.attrs.get("beta", 0.5)
    return torch.clamp(_req(x, 0) * alpha + beta, 0.0, 1.0)


def _gelu(run: _Run, node: _Node, x: list[Tensor | None]) -> Tensor:
    approximate = "tanh" if node.attrs.get("approximate", "none") == "tanh" else "none"
    return F.gelu(_req(x, 0), approximate=approximate)


def _clip(run: _Run, node: _Node, x: list[Tensor | None]) -> Tensor:
    data = _req(x, 0)
    if node.opset < 11:
        low, high = node.attrs.get("min"), node.attrs.get("max")
        return torch.clamp(data, low, high)
    return torch.clamp(data, _arg(x, 1), _arg(x, 2))


def _softmax_like(fn: Callable[..., Tensor]) -> _OpFn:
    def run_softmax(run: _Run, node: _Node, x: list[Tensor | None]) -> Tensor:
        data = _req(x, 0)
        if node.opset >= 13:
            return fn(data, dim=node.attrs.get("axis", -1))
        axis = _axis(node.attrs.get("axis", 1), data.dim())
        flat = data.reshape(math.prod(data.shape[:axis]), math.prod(data.shape[axis:]))
        return fn(flat, dim=1).reshape(data.shape)

    return run_softmax


def _dropout(run: _Run, node: _Node, x: list[Tensor | None]) -> Sequence[Tensor]:
    data = _req(x, 0)
    if node.opset >= 12:
        ratio_input = _arg(x, 1)
        ratio = 0.5 if ratio_input is None else float(ratio_input.item())
    else:
        ratio = node.attrs.get("ratio", 0.5)
    wants_mask = len(node.outputs) > 1 and bool(node.outputs[1])
    if not run.training or ratio == 0.0:
        return (data, torch.ones_like(data, dtype=torch.bool)) if wants_mask else (data,)
    if not wants_mask:
        return (F.dropout(data, ratio, training=True),)
    mask = torch.rand_like(data) >= ratio
    return (data * mask / (1.0 - ratio), mask)


# -- shapes and indexing ------------------------------------------------------------------------


def _reshape(run: _Run, node: _Node, x: list[Tensor | None]) -> Tensor:
    data, target = _req(x, 0), _ints(_req(x, 1))
    if run.batch_fix is not None and run.fixed is not None and 1 in node.constant_inputs:
        exported, batch = run.batch_fix
        if target and target[0] == exported and data.dim() and data.shape[0] == batch:
            run.fixed.add(node.index)
            target[0] = batch
    allow_zero = node.attrs.get("allowzero", 0)
    shape = [data.shape[i] if v == 0 and not allow_zero else v for i, v in enumerate(target)]
    return data.reshape(shape)


def _flatten(run: _Run, node: _Node, x: list[Tensor | None]) -> Tensor:
    data = _req(x, 0)
    axis = _axis(node.attrs.get("axis", 1), data.dim())
    return data.reshape(math.prod(data.shape[:axis]), math.prod(data.shape[axis:]))


def _transpose(run: _Run, node: _Node, x: list[Tensor | None]) -> Tensor:
    data = _req(x, 0)
    perm = node.attrs.get("perm") or list(reversed(range(data.dim())))
    return data.permute(*perm)


def _axes(node: _Node, x: list[Tensor | None], since: int) -> list[int] | None:
    if node.opset >= since:
        value = _arg(x, 1)
        return None if value is None else _ints(value)
    axes = node.attrs.get("axes")
    return None if axes is None else list(axes)


def _squeeze(run: _Run, node: _Node, x: list[Tensor | None]) -> Tensor:
    data = _req(x, 0)
    axes = _axes(node, x, 13)
    if not axes:
        return data.squeeze()
    return data.squeeze(tuple(_axis(a, data.dim()) for a in axes))


def _unsqueeze(run: _Run, node: _Node, x: list[Tensor | None]) -> Tensor:
    data = _req(x, 0)
    axes = _axes(node, x, 13) or []
    rank = data.dim() + len(axes)
    for axis in sorted(_axis(a, rank) for a in axes):
        data = data.unsqueeze(axis)
    return data


def _concat(run: _Run, node: _Node, x: list[Tensor | None]) -> Tensor:
    return torch.cat([v for v in x if v is not None], dim=node.attrs["axis"])


def _split(run: _Run, node: _Node, x: list[Tensor | None]) -> Sequence[Tensor]:
    data = _req(x, 0)
    axis = _axis(node.attrs.get("axis", 0), data.dim())
    size = data.shape[axis]
    sizes = _ints(_arg(x, 1)) if node.opset >= 13 else list(node.attrs.get("split") or [])
    if not sizes:
        parts = node.attrs.get("num_outputs", len(node.outputs))
        chunk = -(-size // parts)
        sizes = [chunk] * (parts - 1) + [size - chunk * (parts - 1)]
    return torch.split(data, sizes, dim=axis)


def _slice(run: _Run, node: _Node, x: list[Tensor | None]) -> Tensor:
    data = _req(x, 0)
    if node.opset < 10:
        starts, ends = list(node.attrs["starts"]), list(node.attrs["ends"])
        axes, steps = list(node.attrs.get("axes") or []), []
    else:
        starts, ends = _ints(_req(x, 1)), _ints(_req(x, 2))
        axes, steps = _ints(_arg(x, 3)), _ints(_arg(x, 4))
    axes = axes or list(range(len(starts)))
    steps = steps or [1] * len(starts)
    for start, end, axis, step in zip(starts, ends, axes, steps, strict=True):
        data = _slice_axis(data, _axis(axis, data.dim()), start, end, step)
    return data


def _slice_axis(data: Tensor, axis: int, start: int, end: int, step: int) -> Tensor:
    size = data.shape[axis]
    start = start + size if start < 0 else start
    end = end + size if end < 0 else end
    if step > 0:
        start, end = min(max(start, 0), size), min(max(end, 0), size)
        index: list[slice] = [slice(None)] * data.dim()
        index[axis] = slice(start, end, step)
        return data[tuple(index)]
    start, end = min(max(start, 0), size - 1), min(max(end, -1), size - 1)
    count = max(0, -(-(end - start) // step))
    positions = start + step * torch.arange(count, device=data.device)
    return data.index_select(axis, positions)


def _gather(run: _Run, node: _Node, x: list[Tensor | None]) -> Tensor:
    data, indices = _req(x, 0), _req(x, 1).long()
    axis = _axis(node.attrs.get("axis", 0), data.dim())
    indices = torch.where(indices < 0, indices + data.shape[axis], indices)
    picked = data.index_select(axis, indices.reshape(-1))
    return picked.reshape((*data.shape[:axis], *indices.shape, *data.shape[axis + 1 :]))


def _shape(run: _Run, node: _Node, x: list[Tensor | None]) -> Tensor:
    data = _req(x, 0)
    dims = list(data.shape)[node.attrs.get("start", 0) : node.attrs.get("end", data.dim())]
    return torch.tensor(dims, dtype=torch.int64, device=data.device)


def _size(run: _Run, node: _Node, x: list[Tensor | None]) -> Tensor:
    data = _req(x, 0)
    return torch.tensor(data.numel(), dtype=torch.int64, device=data.device)


def _constant_of_shape(run: _Run, node: _Node, x: list[Tensor | None]) -> Tensor:
    shape = _req(x, 0)
    value = node.attrs.get("value")
    fill = torch.zeros(1, dtype=torch.float32) if value is None else value.reshape(-1)
    return torch.full(_ints(shape), fill[0].item(), dtype=fill.dtype, device=shape.device)


def _expand(run: _Run, node: _Node, x: list[Tensor | None]) -> Tensor:
    data, shape = _req(x, 0), _ints(_req(x, 1))
    return data.expand(torch.broadcast_shapes(tuple(data.shape), tuple(shape)))


def _tile(run: _Run, node: _Node, x: list[Tensor | None]) -> Tensor:
    return _req(x, 0).repeat(*_ints(_req(x, 1)))


def _range(run: _Run, node: _Node, x: list[Tensor | None]) -> Tensor:
    start, limit, delta = _req(x, 0), _req(x, 1), _req(x, 2)
    return torch.arange(
        start.item(), limit.item(), delta.item(), dtype=start.dtype, device=start.device
    )


def _where(run: _Run, node: _Node, x: list[Tensor | None]) -> Tensor:
    return torch.where(_req(x, 0).bool(), _req(x, 1), _req(x, 2))


def _cast(run: _Run, node: _Node, x: list[Tensor | None]) -> Tensor:
    dtype = _TORCH_DTYPES.get(node.attrs["to"])
    if dtype is None:
        raise _Unsupported(f"Cast to {TensorProto.DataType.Name(node.attrs['to'])}")
    return _req(x, 0).to(dtype)


def _cast_like(run: _Run, node: _Node, x: list[Tensor | None]) -> Tensor:
    return _req(x, 0).to(_req(x, 1).dtype)


def _pad(run: _Run, node: _Node, x: list[Tensor | None]) -> Tensor:
    data = _req(x, 0)
    rank = data.dim()
    mode = node.attrs.get("mode", "constant")
    if node.opset < 11:
        pads, value, axes = list(node.attrs["pads"]), float(node.attrs.get("value", 0.0)), None
    else:
        pads = _ints(_req(x, 1))
        fill = _arg(x, 2)
        value = 0.0 if fill is None or fill.numel() == 0 else fill.item()
        axes = _ints(_arg(x, 3)) or None
    if axes is not None:
        full = [0] * (2 * rank)
        for i, axis in enumerate(_axis(a, rank) for a in axes):
            full[axis], full[axis + rank] = pads[i], pads[i + len(axes)]
        pads = full
    pairs = [(pads[i], pads[i + rank]) for i in range(rank)]
    if mode == "constant":
        return F.pad(data, _torch_pad(pairs), value=value)
    torch_mode = {"reflect": "reflect", "edge": "replicate", "wrap": "circular"}.get(mode)
    first = next((i for i, p in enumerate(pairs) if p != (0, 0)), rank)
    padded_dims = max(rank - first, rank - 2, 1)
    if torch_mode is None or padded_dims > 3:
        raise _Unsupported(f"Pad mode '{mode}' over {rank - first} dimension(s) of {rank}")
    return F.pad(data, _torch_pad(pairs[rank - padded_dims :]), mode=torch_mode)


def _einsum(run: _Run, node: _Node, x: list[Tensor | None]) -> Tensor:
    return torch.einsum(node.attrs["equation"], *[v for v in x if v is not None])


# -- reductions ---------------------------------------------------------------------------------


def _reduce(fn: Callable[[Tensor, list[int], bool], Tensor], axes_input_since: int) -> _OpFn:
    def run_reduce(run: _Run, node: _Node, x: list[Tensor | None]) -> Tensor:
        data = _req(x, 0)
        axes = _axes(node, x, axes_input_since)
        if not axes:
            if node.attrs.get("noop_with_empty_axes", 0):
                return data
            axes = list(range(data.dim()))
        keep = bool(node.attrs.get("keepdims", 1))
        return fn(data, [_axis(a, data.dim()) for a in axes], keep)

    return run_reduce


def _reduce_prod(data: Tensor, axes: list[int], keep: bool) -> Tensor:
    for axis in sorted(axes, reverse=True):
        data = data.prod(dim=axis, keepdim=keep)
    return data


def _sum_same_type(data: Tensor, axes: list[int], keep: bool) -> Tensor:
    return data.sum(dim=axes, keepdim=keep).to(data.dtype)


_REDUCTIONS: dict[str, Callable[[Tensor, list[int], bool], Tensor]] = {
    "ReduceMean": lambda t, a, k: t.mean(dim=a, keepdim=k),
    "ReduceMax": lambda t, a, k: torch.amax(t, dim=a, keepdim=k),
    "ReduceMin": lambda t, a, k: torch.amin(t, dim=a, keepdim=k),
    "ReduceProd": _reduce_prod,
    "ReduceL1": lambda t, a, k: t.abs().sum(dim=a, keepdim=k),
    "ReduceL2": lambda t, a, k: t.square().sum(dim=a, keepdim=k).sqrt(),
    "ReduceSumSquare": lambda t, a, k: t.square().sum(dim=a, keepdim=k),
    "ReduceLogSum": lambda t, a, k: t.sum(dim=a, keepdim=k).log(),
    "ReduceLogSumExp": lambda t, a, k: torch.logsumexp(t, dim=a, keepdim=k),
}


def _arg_reduce(fn: Callable[..., Tensor]) -> _OpFn:
    def run_arg(run: _Run, node: _Node, x: list[Tensor | None]) -> Tensor:
        data = _req(x, 0)
        axis = _axis(node.attrs.get("axis", 0), data.dim())
        keep = bool(node.attrs.get("keepdims", 1))
        if node.attrs.get("select_last_index", 0):
            flipped = fn(data.flip(axis), dim=axis, keepdim=keep)
            return data.shape[axis] - 1 - flipped
        return fn(data, dim=axis, keepdim=keep)

    return run_arg


def _not_executed(run: _Run, node: _Node, x: list[Tensor | None]) -> Tensor:
    raise _Unsupported("Constant nodes are evaluated when the model is loaded")


_OPS: dict[str, _OpFn] = {
    "Conv": _conv,
    "ConvTranspose": _conv_transpose,
    "MaxPool": _max_pool,
    "AveragePool": _average_pool,
    "GlobalAveragePool": _global_pool(torch.mean),
    "GlobalMaxPool": _global_pool(torch.amax),
    "LRN": _lrn,
    "Gemm": _gemm,
    "MatMul": _binary(torch.matmul),
    "BatchNormalization": _batch_norm,
    "InstanceNormalization": _instance_norm,
    "LayerNormalization": _layer_norm,
    "Add": _binary(torch.add),
    "Sub": _binary(torch.sub),
    "Mul": _binary(torch.mul),
    "Div": _binary(_div),
    "Pow": _binary(_pow),
    "Mod": _mod,
    "Equal": _binary(torch.eq),
    "Greater": _binary(torch.gt),
    "Less": _binary(torch.lt),
    "GreaterOrEqual": _binary(torch.ge),
    "LessOrEqual": _binary(torch.le),
    "And": _binary(torch.logical_and),
    "Or": _binary(torch.logical_or),
    "Xor": _binary(torch.logical_xor),
    "Not": _unary(torch.logical_not),
    "Min": _variadic(torch.minimum),
    "Max": _variadic(torch.maximum),
    "Sum": _variadic(torch.add),
    "Mean": _mean,
    "Neg": _unary(torch.neg),
    "Abs": _unary(torch.abs),
    "Sqrt": _unary(torch.sqrt),
    "Exp": _unary(torch.exp),
    "Log": _unary(torch.log),
    "Reciprocal": _unary(torch.reciprocal),
    "Floor": _unary(torch.floor),
    "Ceil": _unary(torch.ceil),
    "Round": _unary(torch.round),
    "Sign": _unary(torch.sign),
    "Erf": _unary(torch.erf),
    "Sin": _unary(torch.sin),
    "Cos": _unary(torch.cos),
    "Tanh": _unary(torch.tanh),
    "Sigmoid": _unary(torch.sigmoid),
    "Relu": _unary(F.relu),
    "LeakyRelu": _leaky_relu,
    "PRelu": _prelu,
    "Elu": _elu,
    "Selu": _selu,
    "HardSigmoid": _hard_sigmoid,
    "HardSwish": _unary(F.hardswish),
    "Softplus": _unary(F.softplus),
    "Softsign": _unary(F.softsign),
    "Mish": _unary(F.mish),
    "Gelu": _gelu,
    "Clip": _clip,
    "Softmax": _softmax_like(F.softmax),
    "LogSoftmax": _softmax_like(F.log_softmax),
    "Dropout": _dropout,
    "Identity": _unary(lambda t: t),
    "Cast": _cast,
    "CastLike": _cast_like,
    "Flatten": _flatten,
    "Reshape": _reshape,
    "Transpose": _transpose,
    "Squeeze": _squeeze,
    "Unsqueeze": _unsqueeze,
    "Concat": _concat,
    "Split": _split,
    "Slice": _slice,
    "Gather": _gather,
    "Shape": _shape,
    "Size": _size,
    "Constant": _not_executed,
    "ConstantOfShape": _constant_of_shape,
    "Expand": _expand,
    "Tile": _tile,
    "Range": _range,
    "Where": _where,
    "Pad": _pad,
    "Einsum": _einsum,
    "ReduceSum": _reduce(_sum_same_type, 13),
    **{name: _reduce(fn, 18) for name, fn in _REDUCTIONS.items()},
    "ArgMax": _arg_reduce(torch.argmax),
    "ArgMin": _arg_reduce(torch.argmin),
}
_SUPPORTED_OPS = frozenset(_OPS)
