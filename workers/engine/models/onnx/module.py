"""The torch module interpreting an ONNX classifier, and writing its trained tensors back."""

from __future__ import annotations

import contextlib
import copy
import os
import tempfile
from pathlib import Path

import numpy as np
import onnx
import torch
import torch.nn.functional as F
from onnx import GraphProto, ModelProto, NodeProto, TensorProto
from torch import Tensor, nn

from workers.engine.errors import InvalidData, UnsupportedModel
from workers.engine.models.onnx.analysis import (
    _batch_free_target,
    _classifier_input,
    _classifier_output,
    _constant_source,
    _final_activation,
    _folded_batchnorm_layers,
    _initializer_roles,
    _initializer_source,
    _live_nodes,
    _Roles,
    _schedule_drops,
)
from workers.engine.models.onnx.external import ExternalWeights
from workers.engine.models.onnx.ops import _make_node
from workers.engine.models.onnx.protos import (
    _TORCH_DTYPES,
    BATCH_DIM,
    _attr_name,
    _clear_tensor_data,
    _clear_value_info_shapes,
    _constant_value,
    _fill_initializer,
    _initializer_array,
    _make_batch_symbolic,
    _set_constant_node,
    _set_int_attribute,
    _static_dim,
    _strip_initializer_data,
    _tensor_from_proto,
    _unique,
)
from workers.engine.models.onnx.reading import (
    _default_opset,
    _inline_functions,
    _read_model_file,
    _validate_model,
)
from workers.engine.models.onnx.runtime import _Node, _NodeFailure, _Run
from workers.engine.models.onnx.sklearn import (
    is_sklearn_export,
    scores_output,
    sklearn_logits,
    translate_ml_operators,
)
from workers.engine.models.onnx.tokens import (
    TokenInput,
    _check_embedded,
    _check_ids,
    _elem_type,
    _find_token_input,
    _graph_inputs,
    _lookup_tables,
    _text_note,
)
from workers.engine.spec import INLINE_WEIGHT_LIMIT

PROBE_LENGTH = 7


def load_onnx_classifier(
    path: Path,
    *,
    max_bytes: int | None = None,
    allow_external_data: bool = False,
    inline_limit: int = INLINE_WEIGHT_LIMIT,
) -> OnnxClassifier:
    """Read, validate and wrap an ONNX classifier.

    Raises :class:`InvalidModel` for anything that is not a readable, well-formed ONNX model and
    :class:`UnsupportedModel` for a well-formed model we cannot train (operators, domains, inputs
    and outputs that are not a single float tensor each, control flow, external data).

    External data is refused unless ``allow_external_data`` is true, and even then every location
    must be a relative path that stays inside the model's folder after resolving symlinks. The
    model is parsed without following external references; they are read only once checked.
    When they add up to more than ``inline_limit`` bytes, the large initializers are never put
    into the ``ModelProto`` (capped at 2 GB): they are read from their files straight into the
    module's tensors while it is built, so loading holds about one copy of the weights.
    """
    path = Path(path)
    model, streamed = _read_model_file(path, max_bytes, allow_external_data, inline_limit)
    return OnnxClassifier(model, _owned=True, weights=ExternalWeights(path) if streamed else None)


class OnnxClassifier(nn.Module):
    """An ONNX classifier graph executed with torch operations, trainable end to end.

    ``forward`` returns logits: when the graph ends in Softmax or LogSoftmax over the classes,
    execution stops before it (``final_activation`` names it, ``output_is_probability`` is true
    for Softmax). Initializers feeding weight slots are ``nn.Parameter``s (see
    ``trainable_parameter_names``, in ONNX names); BatchNormalization running statistics are
    buffers updated in train mode; every other initializer is a frozen buffer.

    ``served_output`` names the graph output those scores are read from: ``output_name``, or
    for a scikit-learn export wrapping them in ZipMap, its maps; :meth:`served_from_logits`
    gives what it holds. A scikit-learn export's label output is not executed (see
    docs/onnx-conversion.md).

    A text classifier (an integer input feeding an embedding lookup) takes token ids and an
    optional attention mask; ``token_input`` describes them, and :meth:`embed` with
    :meth:`classify_embedded` split the model at the word-embedding lookup. Its embedding
    tables are parameters too. ``token_input`` is None for every other model.

    Constructing one from a ``ModelProto`` validates a copy of it (operators, domains, one float
    input or token ids, one output, ``onnx.checker``) and test-runs the graph once; files go
    through :func:`load_onnx_classifier`, which also guards reading them. A new instance is in
    train mode, like any ``nn.Module``.
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
    served_output: str
    trainable_parameter_names: list[str]
    token_input: TokenInput | None

    def __init__(
        self, model: ModelProto, *, _owned: bool = False, weights: ExternalWeights | None = None
    ) -> None:
        """``weights``: where initializers the proto keeps in external data are read from (the
        model's folder must exist until this returns); without it, none may be external."""
        super().__init__()
        _validate_model(model, weights.model_path if weights is not None else None)
        self._weights = weights
        proto = _inline_functions(model, copy_model=not _owned)
        graph = proto.graph
        self.opset = _default_opset(proto)
        self.notes = []
        if len(model.functions):
            self.notes.append(
                f"{len(model.functions)} model-local function(s) were inlined; "
                "the written model contains their nodes instead"
            )
        sklearn = is_sklearn_export(proto)
        if sklearn:
            self.notes += translate_ml_operators(graph, self.opset)
        inputs = _graph_inputs(graph)
        self.token_input = _find_token_input(graph, inputs)
        token = self.token_input
        graph_input = (
            _classifier_input(inputs)
            if token is None
            else next(v for v in inputs if v.name == token.ids_name)
        )
        if sklearn:
            graph_output, self.served_output = scores_output(graph)
        else:
            graph_output = _classifier_output(graph)
            self.served_output = graph_output.name
        self.input_name = graph_input.name
        self.output_name = graph_output.name
        mask = next((v for v in inputs if token and v.name == token.mask_name), None)
        self._mask_dtype = None if mask is None else _TORCH_DTYPES[_elem_type(mask)]
        input_dims = list(graph_input.type.tensor_type.shape.dim)
        self.input_shape = tuple(_static_dim(d) for d in input_dims[1:])
        self.input_dtype = _TORCH_DTYPES[graph_input.type.tensor_type.elem_type]
        self._exported_batch = _static_dim(input_dims[0])

        producers = {out: node for node in graph.node for out in node.output if out}
        self._head: str | None = None
        self._served_column: int | None = None
        if sklearn:
            reading = sklearn_logits(producers, self.output_name, graph)
            self._logits_name, self.final_activation = reading.value, reading.final_activation
            self._head, self._served_column = reading.head, reading.served_column
        else:
            self._logits_name, self.final_activation = _final_activation(
                producers, self.output_name, self.opset
            )
        self.output_is_probability = self.final_activation == "Softmax"
        if self._head:
            self.notes.append(
                f"the probabilities '{self.output_name}' are sigmoids that sum to one: training "
                "uses logits whose softmax equals them, and the written model keeps its outputs"
            )
        elif self.final_activation:
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
        self._embedded_plan = self._plan_without_word_lookup()
        self.num_classes = self._check_runs(graph_output)
        _strip_initializer_data(graph, set(self._tensor_attrs))
        self._weights = None

    def forward(self, x: Tensor, attention_mask: Tensor | None = None) -> Tensor:
        """Logits for a batch of inputs; for a text classifier, token ids [batch, sequence] and
        an optional attention mask (all ones when left out)."""
        if self.token_input is None:
            if attention_mask is not None:
                raise InvalidData("the model takes no attention mask: it is not a text classifier")
            self._check_input(x)
            feeds = {self.input_name: x.to(self.input_dtype)}
            return self._execute(feeds, _Run(training=self.training))
        return self.classify_embedded(self.embed(x), attention_mask, ids=x)

    def embed(self, ids: Tensor) -> Tensor:
        """The word-embedding lookup of token ids [batch, sequence] -> [batch, sequence, dim],
        differentiable with respect to the embedding table."""
        token = self._text()
        _check_ids(ids, token)
        return F.embedding(ids.long(), self.onnx_tensor(token.embedding_table))

    def classify_embedded(
        self, embedded: Tensor, attention_mask: Tensor | None = None, *, ids: Tensor | None = None
    ) -> Tensor:
        """Logits with ``embedded`` [batch, sequence, dim] in place of the word-embedding
        lookup's output, for perturbations in embedding space.

        ``ids`` are needed only when the graph reads them beyond that lookup and shape reads
        (``token_input.ids_read_elsewhere``); otherwise any ids of the right shape would do.
        """
        token = self._text()
        _check_embedded(embedded, token)
        batch, length = int(embedded.shape[0]), int(embedded.shape[1])
        if ids is None:
            if token.ids_read_elsewhere:
                raise InvalidData(
                    f"the graph reads the token ids '{token.ids_name}' beyond the embedding "
                    "lookup: pass ids= to classify_embedded"
                )
            ids = torch.zeros((batch, length), dtype=self.input_dtype, device=embedded.device)
        elif tuple(ids.shape) != (batch, length):
            raise InvalidData(
                f"ids of shape {list(ids.shape)} do not match the embeddings {list(embedded.shape)}"
            )
        feeds = {token.ids_name: ids.to(self.input_dtype), token.embedding_output: embedded}
        if token.mask_name is not None:
            feeds[token.mask_name] = self._mask(attention_mask, (batch, length), embedded.device)
        elif attention_mask is not None:
            raise InvalidData("the model has no attention-mask input")
        return self._execute(feeds, _Run(training=self.training), self._embedded_plan)

    def served_from_logits(self, logits: Tensor) -> Tensor:
        """What the graph output ``served_output`` holds for these logits: the probabilities
        through a final Softmax or LogSoftmax, a binary LinearSVC's one score, or the logits.
        (A ZipMap output holds the same values as maps, one per sample, keyed by class.)"""
        if self.final_activation == "Softmax":
            return torch.softmax(logits, dim=1)
        if self.final_activation == "LogSoftmax":
            return torch.log_softmax(logits, dim=1)
        if self._served_column is not None:
            return logits[:, self._served_column : self._served_column + 1]
        return logits

    def onnx_tensor(self, name: str) -> Tensor:
        """The module's current tensor for an ONNX initializer name."""
        attr = self._tensor_attrs.get(name)
        if attr is None or name not in self._initializer_types:
            raise KeyError(f"no initializer named {name!r}")
        tensor: Tensor = getattr(self, attr)
        return tensor

    def to_onnx_model(self) -> ModelProto:
        """A copy of the user's model carrying the module's current initializer values."""
        model = self._export_skeleton()
        for init in model.graph.initializer:
            if init.name in self._initializer_types:
                _fill_initializer(init, self.onnx_tensor(init.name))
        return model

    def weight_bytes(self) -> int:
        """Bytes of the initializers the module holds, as the written model stores them."""
        return sum(
            self.onnx_tensor(name).numel() * _element_bytes(dtype)
            for name, dtype in self._initializer_types.items()
        )

    def _export_skeleton(self) -> ModelProto:
        """A copy of the user's model whose held initializers have no values yet (the kept proto
        is stripped of them), with the symbolic batch dimension on its input and output."""
        model = copy.deepcopy(self._proto)
        names = {self.output_name, *self._input_names()}
        for value in (*model.graph.input, *model.graph.output):
            if value.name in names:
                _make_batch_symbolic(value)
        return model

    def _text(self) -> TokenInput:
        if self.token_input is None:
            raise TypeError("the model is not a text classifier (it has no token-ids input)")
        return self.token_input

    def _input_names(self) -> list[str]:
        mask = self.token_input.mask_name if self.token_input else None
        return [self.input_name, *([mask] if mask else [])]

    def _mask(self, mask: Tensor | None, shape: tuple[int, int], device: torch.device) -> Tensor:
        assert self._mask_dtype is not None
        if mask is None:
            return torch.ones(shape, dtype=self._mask_dtype, device=device)
        if tuple(mask.shape) != shape:
            raise InvalidData(
                f"the attention mask has shape {list(mask.shape)}; the token ids have {list(shape)}"
            )
        return mask.to(self._mask_dtype)

    # -- building -----------------------------------------------------------------------------

    def _register_tensors(self, graph: GraphProto, producers: dict[str, NodeProto]) -> None:
        initializers = {init.name: init for init in graph.initializer}
        constants = {node.output[0]: node for node in graph.node if node.op_type == "Constant"}
        roles = _initializer_roles(self._plan, initializers, producers)
        self._lookup_table_names: set[str] = set()
        if self.token_input is not None:
            self._lookup_table_names = _lookup_tables(self._plan, initializers, producers)
            roles.params |= self._lookup_table_names
        self._untie_running_stats(roles, initializers)
        self.trainable_parameter_names = []
        taken: set[str] = set()
        for name, init in initializers.items():
            dtype = _TORCH_DTYPES.get(init.data_type)
            if dtype is None:
                continue
            tensor = self._initializer_tensor(init)
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

    def _initializer_tensor(self, init: TensorProto) -> Tensor:
        if init.data_location == TensorProto.EXTERNAL and self._weights is not None:
            return self._weights.tensor(init)
        return _tensor_from_proto(init)

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
        if self.token_input is not None:
            self.notes.append(_text_note(self.token_input, len(self._lookup_table_names)))
        if self._frozen_weight_slots:
            self.notes.append(
                f"{self._frozen_weight_slots} weight input(s) are not initializers (constants or "
                "computed values) and stay frozen"
            )

    def _check_runs(self, graph_output: onnx.ValueInfoProto) -> int:
        """Run the graph once at a batch size other than the exported one and return the class
        count. With a fixed exported batch, this run also finds the Reshape targets that
        hard-code it (package docstring) so that both the module and the written model follow
        the runtime batch size."""
        declared = list(graph_output.type.tensor_type.shape.dim)
        if self.token_input is None and any(d is None for d in self.input_shape):
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
        with torch.no_grad():
            return self._execute(self._probe_feeds(batch), run)

    def _probe_feeds(self, batch: int) -> dict[str, Tensor]:
        """Zeros for a float input; for a text classifier token 0 everywhere (a valid id) at
        the exported sequence length, or at PROBE_LENGTH when it is symbolic, and a full mask."""
        if self.token_input is None:
            shape = (batch, *[d or 1 for d in self.input_shape])
            return {self.input_name: torch.zeros(shape, dtype=self.input_dtype)}
        shape = (batch, self.token_input.max_length or PROBE_LENGTH)
        feeds = {self.input_name: torch.zeros(shape, dtype=self.input_dtype)}
        if self.token_input.mask_name is not None:
            feeds[self.token_input.mask_name] = self._mask(None, shape, torch.device("cpu"))
        return feeds

    def _plan_without_word_lookup(self) -> list[_Node]:
        if self.token_input is None:
            return self._plan
        output = self.token_input.embedding_output
        return [node for node in self._plan if output not in node.outputs]

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
        token = self.token_input
        if token is not None and token.max_length is None:
            return UnsupportedModel(
                f"the graph cannot be executed at sequence length {PROBE_LENGTH} although its "
                f"sequence axis is dynamic: {exc}. A graph that only runs at the sequence length "
                "it was exported with (the classic exporter hard-codes it in "
                "nn.MultiheadAttention) must declare it: export without a dynamic axis on "
                f"dimension 1 of '{token.ids_name}', or with dynamo=True"
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

    def _execute(
        self, feeds: dict[str, Tensor], run: _Run, plan: list[_Node] | None = None
    ) -> Tensor:
        env: dict[str, Tensor] = {name: getattr(self, a) for name, a in self._tensor_attrs.items()}
        env.update(feeds)
        run.batch = int(feeds[self.input_name].shape[0])
        for node in self._plan if plan is None else plan:
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
        return _logits_head(self._head, env[self._logits_name])


def _logits_head(head: str | None, value: Tensor) -> Tensor:
    """Logits whose softmax is the probabilities a scikit-learn export computes from ``value``
    (see ``sklearn_logits``)."""
    if head == "logsigmoid":
        return F.logsigmoid(value)
    if head == "binary":
        return torch.cat([torch.zeros_like(value), value], dim=1)
    return value


def write_trained_onnx(
    model: OnnxClassifier, path: Path, *, inline_limit: int = INLINE_WEIGHT_LIMIT
) -> bool:
    """Write the user's graph with the module's current tensors (parameters and buffers);
    return whether its weights went to external data.

    Nodes, names, inputs and outputs (including a final Softmax) are the user's; a fixed batch
    dimension on the input and output becomes the symbolic ``batch``. The result passes
    ``onnx.checker``. A model whose weights are over ``inline_limit`` bytes is written with
    them in ``<name>.data`` beside it, each tensor copied there straight from the module (never
    through a ``ModelProto``, which protobuf caps at 2 GB).
    """
    path = Path(path)
    if model.weight_bytes() > inline_limit:
        _write_with_external_data(model, path)
        return True
    proto = model.to_onnx_model()
    onnx.checker.check_model(proto)
    _replace_file(path, proto.SerializeToString())
    return False


EXTERNAL_ALIGNMENT = 4096
"""Offsets of tensors in the data file are page-aligned, so that runtimes may map them."""
_INLINE_BELOW = 1024
"""Tensors smaller than this stay inside the graph, as ``onnx.save`` keeps them by default."""


def _write_with_external_data(model: OnnxClassifier, path: Path) -> None:
    proto = model._export_skeleton()
    location = f"{path.name}.data"
    data_path = path.with_name(location)
    with data_path.open("wb") as data:
        for init in proto.graph.initializer:
            if init.name not in model._initializer_types:
                continue
            array = _initializer_array(init, model.onnx_tensor(init.name))
            _clear_tensor_data(init)
            if array.nbytes < _INLINE_BELOW:
                init.raw_data = array.tobytes()
                continue
            offset = data.tell() + -data.tell() % EXTERNAL_ALIGNMENT
            data.seek(offset)
            data.write(np.ascontiguousarray(array).data.cast("B"))
            init.data_location = TensorProto.EXTERNAL
            for key, value in (
                ("location", location),
                ("offset", str(offset)),
                ("length", str(array.nbytes)),
            ):
                entry = init.external_data.add()
                entry.key, entry.value = key, value
    _replace_file(path, proto.SerializeToString())
    onnx.checker.check_model(str(path))


def _replace_file(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _element_bytes(data_type: int) -> int:
    return torch.empty((), dtype=_TORCH_DTYPES[data_type]).element_size()
