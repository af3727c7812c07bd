"""Which external data files an ONNX model references, read from the protobuf wire format.

The client installs without the ``onnx`` package, so this walks the few messages that can hold
a tensor (model, graph, function, node, attribute, sparse tensor) by their field numbers in
onnx.proto, and skips everything else, weights included, without copying it. The file is
memory-mapped: a 2 GB model is not read into memory.
"""

from __future__ import annotations

import mmap
from collections.abc import Iterator
from pathlib import Path

# Field numbers of onnx.proto (checked against the onnx package by a test).
_MODEL_GRAPH, _MODEL_FUNCTIONS = 7, 25
_GRAPH_NODE, _GRAPH_INITIALIZER, _GRAPH_SPARSE = 1, 5, 15
_FUNCTION_NODE = 7
_NODE_ATTRIBUTE = 5
_ATTR_T, _ATTR_G, _ATTR_TENSORS, _ATTR_GRAPHS, _ATTR_SPARSE, _ATTR_SPARSES = 5, 6, 10, 11, 22, 23
_SPARSE_VALUES, _SPARSE_INDICES = 1, 2
_TENSOR_EXTERNAL_DATA, _TENSOR_DATA_LOCATION = 13, 14
_EXTERNAL = 1
_VARINT, _FIXED64, _LEN, _FIXED32 = 0, 1, 2, 5

# What each message kind holds that may lead to a tensor: field -> kind of the submessage.
_CHILDREN = {
    "model": {_MODEL_GRAPH: "graph", _MODEL_FUNCTIONS: "function"},
    "graph": {_GRAPH_NODE: "node", _GRAPH_INITIALIZER: "tensor", _GRAPH_SPARSE: "sparse"},
    "function": {_FUNCTION_NODE: "node"},
    "node": {_NODE_ATTRIBUTE: "attribute"},
    "attribute": {
        _ATTR_T: "tensor",
        _ATTR_G: "graph",
        _ATTR_TENSORS: "tensor",
        _ATTR_GRAPHS: "graph",
        _ATTR_SPARSE: "sparse",
        _ATTR_SPARSES: "sparse",
    },
    "sparse": {_SPARSE_VALUES: "tensor", _SPARSE_INDICES: "tensor"},
}


def external_data_locations(path: Path) -> list[str]:
    """The distinct ``location`` strings of the model's tensors kept in external data, in the
    order first met; empty for a self-contained model. Raises ValueError if the file is not
    a protobuf message."""
    with path.open("rb") as handle:
        if not path.stat().st_size:
            return []
        with mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
            view = memoryview(mapped)
            try:
                return _locations(view)
            finally:
                view.release()


def _locations(buffer: memoryview) -> list[str]:
    found: dict[str, None] = {}
    pending = [("model", 0, len(buffer))]
    while pending:
        kind, start, end = pending.pop()
        if kind == "tensor":
            location = _external_location(buffer, start, end)
            if location is not None:
                found.setdefault(location)
            continue
        children = _CHILDREN[kind]
        for field, wire, value in _fields(buffer, start, end):
            if wire == _LEN and field in children:
                assert isinstance(value, tuple)
                pending.append((children[field], *value))
    return list(found)


def _external_location(buffer: memoryview, start: int, end: int) -> str | None:
    external, location = False, None
    for field, wire, value in _fields(buffer, start, end):
        if field == _TENSOR_DATA_LOCATION and wire == _VARINT:
            external = value == _EXTERNAL
        elif field == _TENSOR_EXTERNAL_DATA and wire == _LEN:
            assert isinstance(value, tuple)
            key, text = _entry(buffer, *value)
            if key == "location":
                location = text
    return location if external else None


def _entry(buffer: memoryview, start: int, end: int) -> tuple[str, str]:
    key = text = ""
    for field, wire, value in _fields(buffer, start, end):
        if wire == _LEN and field in (1, 2):
            assert isinstance(value, tuple)
            decoded = bytes(buffer[value[0] : value[1]]).decode("utf-8", "replace")
            key, text = (decoded, text) if field == 1 else (key, decoded)
    return key, text


def _fields(buffer: memoryview, start: int, end: int) -> Iterator[tuple[int, int, int | tuple]]:
    """``(field number, wire type, value)`` of each field in ``buffer[start:end]``: a varint's
    value, a length-delimited field's ``(start, end)``; fixed-width fields are skipped."""
    position = start
    while position < end:
        key, position = _varint(buffer, position, end)
        field, wire = key >> 3, key & 7
        if wire == _VARINT:
            value, position = _varint(buffer, position, end)
            yield field, wire, value
        elif wire == _LEN:
            length, position = _varint(buffer, position, end)
            if position + length > end:
                raise ValueError("a length-delimited field runs past its message")
            yield field, wire, (position, position + length)
            position += length
        elif wire in (_FIXED64, _FIXED32):
            position += 8 if wire == _FIXED64 else 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
    if position != end:
        raise ValueError("a field runs past its message")


def _varint(buffer: memoryview, position: int, end: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if position >= end or shift > 63:
            raise ValueError("a malformed varint")
        byte = buffer[position]
        position += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, position
        shift += 7
