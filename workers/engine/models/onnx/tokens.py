"""Where a text classifier takes its tokens: the token-ids input, the word-embedding lookup it
feeds, and the optional attention mask.

The rule: an integer input consumed by a ``Gather`` on axis 0 of a float rank-2 initializer is
the token ids, and that ``Gather`` is the word-embedding lookup. Position and token-type
embeddings are lookups too, but their indices are computed inside the graph, not read from an
input, so they are never taken for the word embeddings. Another integer input of the same shape
is the attention mask. Anything else next to the token ids is refused, naming the input.
"""

from __future__ import annotations

from dataclasses import dataclass

import onnx
import torch
from onnx import GraphProto, NodeProto, TensorProto
from torch import Tensor

from workers.engine.errors import InvalidData, UnsupportedModel
from workers.engine.models.onnx.analysis import _initializer_source
from workers.engine.models.onnx.protos import _FLOAT_TYPES, _attributes, _static_dim, _type_name
from workers.engine.models.onnx.runtime import _Node

_ID_TYPES = (TensorProto.INT64, TensorProto.INT32)
_MASK_TYPES = (*_ID_TYPES, TensorProto.BOOL)
_SHAPE_READERS = ("Shape", "Size")


@dataclass(frozen=True)
class TokenInput:
    """How a text classifier read from ONNX takes its tokens.

    ``embedding_output`` is the ONNX name of the word-embedding lookup's output, the tensor that
    :meth:`OnnxClassifier.classify_embedded` replaces. ``ids_read_elsewhere`` is true when the
    graph also reads the token ids' values outside that lookup and outside shape reads (for
    example a padding mask computed as ``ids == pad``); ``classify_embedded`` then needs the
    ids too.
    """

    ids_name: str
    mask_name: str | None
    vocab_size: int
    embedding_dim: int
    max_length: int | None
    embedding_output: str
    embedding_table: str
    ids_read_elsewhere: bool


def _graph_inputs(graph: GraphProto) -> list[onnx.ValueInfoProto]:
    initializers = {init.name for init in graph.initializer}
    return [value for value in graph.input if value.name not in initializers]


def _find_token_input(graph: GraphProto, inputs: list[onnx.ValueInfoProto]) -> TokenInput | None:
    """The token input of a text classifier, or None when no input feeds an embedding lookup
    (the model is then read as a classifier of one float tensor)."""
    initializers = {init.name: init for init in graph.initializer}
    producers = {out: node for node in graph.node for out in node.output if out}
    lookups = {
        value.name: found
        for value in inputs
        if _elem_type(value) in _ID_TYPES
        and (found := _embedding_lookups(graph, value.name, initializers, producers))
    }
    if not lookups:
        return None
    if len(lookups) > 1:
        names = ", ".join(f"'{name}'" for name in lookups)
        raise UnsupportedModel(
            f"inputs {names} each feed an embedding lookup; a text classifier takes one input "
            "of token ids (and optionally an attention mask): compute token types and positions "
            "inside the model"
        )
    ids_name, gathers = next(iter(lookups.items()))
    if len(gathers) > 1:
        raise UnsupportedModel(
            f"input '{ids_name}' feeds {len(gathers)} embedding lookups; one word-embedding "
            "lookup of the token ids is supported"
        )
    ids = next(v for v in inputs if v.name == ids_name)
    dims = _dims(ids)
    if len(dims) != 2:
        raise UnsupportedModel(
            f"input '{ids_name}' (token ids) has rank {len(dims)}; [batch, sequence] is required"
        )
    gather = gathers[0]
    table = _lookup_table(gather.input[0], 0, producers, initializers)
    assert table is not None
    vocab, dim = (int(d) for d in initializers[table].dims)
    return TokenInput(
        ids_name=ids_name,
        mask_name=_attention_mask(inputs, ids),
        vocab_size=vocab,
        embedding_dim=dim,
        max_length=dims[1],
        embedding_output=gather.output[0],
        embedding_table=table,
        ids_read_elsewhere=_read_elsewhere(graph, _integer_copies(graph, ids_name), gather),
    )


def _integer_copies(graph: GraphProto, name: str) -> list[str]:
    """``name`` and the tensors that are the same ids through Identity or an integer Cast
    (``ids.long()`` in a torch model exports as a Cast before the lookup)."""
    copies = [name]
    for node in graph.node:
        if node.input[:1] and node.input[0] in copies and _passes_ids_through(node):
            copies.append(node.output[0])
    return copies


def _passes_ids_through(node: NodeProto) -> bool:
    if node.op_type == "Identity":
        return True
    return node.op_type == "Cast" and _attributes(node).get("to") in _ID_TYPES


def _read_elsewhere(graph: GraphProto, copies: list[str], gather: NodeProto) -> bool:
    """Whether a node other than the lookup, a shape read or a copy reads the ids' values."""
    return any(
        node is not gather
        and node.op_type not in _SHAPE_READERS
        and not (_passes_ids_through(node) and node.output[0] in copies)
        for node in graph.node
        if any(name in node.input for name in copies)
    )


def _embedding_lookups(
    graph: GraphProto,
    name: str,
    initializers: dict[str, TensorProto],
    producers: dict[str, NodeProto],
) -> list[NodeProto]:
    """The Gather nodes that read the input ``name`` (or an integer copy of it) as indices into
    an embedding table."""
    copies = _integer_copies(graph, name)
    return [
        node
        for node in graph.node
        if node.op_type == "Gather"
        and len(node.input) == 2
        and node.input[1] in copies
        and _lookup_table(node.input[0], _attributes(node).get("axis", 0), producers, initializers)
    ]


def _lookup_table(
    data: str, axis: int, producers: dict[str, NodeProto], initializers: dict[str, TensorProto]
) -> str | None:
    """The table a Gather reads when it is an embedding lookup (axis 0 of a float rank-2
    initializer, possibly through Identity), else None."""
    source = _initializer_source(data, producers, initializers) if axis == 0 else None
    if source is None:
        return None
    init = initializers[source]
    return source if init.data_type in _FLOAT_TYPES and len(init.dims) == 2 else None


def _attention_mask(inputs: list[onnx.ValueInfoProto], ids: onnx.ValueInfoProto) -> str | None:
    others = [value for value in inputs if value.name != ids.name]
    for value in others:
        if _elem_type(value) not in _MASK_TYPES or not _same_shape(_dims(value), _dims(ids)):
            raise UnsupportedModel(
                f"input '{value.name}' ({_type_name(value)}, shape {_shown(value)}) cannot be "
                f"placed: a text classifier takes the token ids '{ids.name}' and optionally an "
                f"attention mask of the same shape ({_shown(ids)}) with integer or boolean values"
            )
    if len(others) > 1:
        names = ", ".join(f"'{value.name}'" for value in others)
        raise UnsupportedModel(
            f"inputs {names} all look like attention masks for '{ids.name}'; a text classifier "
            "takes at most one attention mask"
        )
    return others[0].name if others else None


def _elem_type(value: onnx.ValueInfoProto) -> int:
    """The element type of a tensor value, 0 (UNDEFINED) for anything else."""
    if not value.type.HasField("tensor_type"):
        return TensorProto.UNDEFINED
    return int(value.type.tensor_type.elem_type)


def _dims(value: onnx.ValueInfoProto) -> list[int | None]:
    tensor_type = value.type.tensor_type
    if not tensor_type.HasField("shape"):
        return []
    return [_static_dim(d) for d in tensor_type.shape.dim]


def _same_shape(a: list[int | None], b: list[int | None]) -> bool:
    """Equal rank, and equal sizes wherever both are fixed."""
    if len(a) != len(b):
        return False
    return all(x is None or y is None or x == y for x, y in zip(a, b, strict=True))


def _shown(value: onnx.ValueInfoProto) -> str:
    dims = _dims(value)
    return "[" + ", ".join("?" if d is None else str(d) for d in dims) + "]" if dims else "unknown"


def _lookup_tables(
    plan: list[_Node], initializers: dict[str, TensorProto], producers: dict[str, NodeProto]
) -> set[str]:
    """Embedding tables of a text model (word, position, token type): float rank-2
    initializers read by a Gather on axis 0. They are trained like any weight."""
    tables = (
        _lookup_table(node.inputs[0], node.attrs.get("axis", 0), producers, initializers)
        for node in plan
        if node.op_type == "Gather"
    )
    return {table for table in tables if table is not None}


def _text_note(token: TokenInput, tables: int) -> str:
    mask = f" with the attention mask '{token.mask_name}'" if token.mask_name else ""
    return (
        f"text classifier: token ids '{token.ids_name}'{mask}, word embeddings "
        f"'{token.embedding_table}' ({token.vocab_size} x {token.embedding_dim}); "
        f"{tables} embedding table(s) are trained"
    )


def _check_ids(ids: Tensor, token: TokenInput) -> None:
    if ids.is_floating_point() or ids.is_complex() or ids.dtype == torch.bool:
        raise InvalidData(f"token ids '{token.ids_name}' must be integers, got {ids.dtype}")
    _check_sequence(tuple(ids.shape), 2, token, "token ids")
    if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= token.vocab_size):
        raise InvalidData(
            f"token ids '{token.ids_name}' must lie in [0, {token.vocab_size}) (the size of the "
            f"vocabulary); got values from {int(ids.min())} to {int(ids.max())}"
        )


def _check_embedded(embedded: Tensor, token: TokenInput) -> None:
    _check_sequence(tuple(embedded.shape), 3, token, "embeddings")
    if embedded.shape[2] != token.embedding_dim:
        raise InvalidData(
            f"embeddings of shape {list(embedded.shape)}; the model's embedding dimension is "
            f"{token.embedding_dim}"
        )


def _check_sequence(shape: tuple[int, ...], rank: int, token: TokenInput, what: str) -> None:
    if len(shape) != rank:
        raise InvalidData(f"{what} must have rank {rank}, got shape {list(shape)}")
    if token.max_length is not None and shape[1] != token.max_length:
        raise InvalidData(
            f"the model was exported for sequences of length {token.max_length}; {what} have "
            f"shape {list(shape)}"
        )
