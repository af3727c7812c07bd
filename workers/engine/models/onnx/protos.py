"""ONNX protos and torch tensors: element types, dimensions, initializer contents and node
attributes."""

from __future__ import annotations

import re
import sys
from typing import Any

import numpy as np
import onnx
import torch
from onnx import GraphProto, NodeProto, TensorProto, helper, numpy_helper
from torch import Tensor

from workers.engine.errors import UnsupportedModel

BATCH_DIM = "batch"
_STANDARD_DOMAINS = ("", "ai.onnx")
_FLOAT_TYPES = (TensorProto.FLOAT, TensorProto.DOUBLE, TensorProto.FLOAT16, TensorProto.BFLOAT16)


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


def _tensor_from_proto(proto: TensorProto) -> Tensor:
    array = numpy_helper.to_array(proto)
    if proto.data_type == TensorProto.BFLOAT16:
        return torch.from_numpy(array.view(np.int16).copy()).view(torch.bfloat16)
    return torch.from_numpy(np.array(array, copy=True))


def _fill_initializer(init: TensorProto, tensor: Tensor) -> None:
    array = _initializer_array(init, tensor)
    _clear_tensor_data(init)
    init.raw_data = array.tobytes()


def _initializer_array(init: TensorProto, tensor: Tensor) -> np.ndarray:
    """``tensor`` as the initializer's raw data holds it: its ONNX type, little-endian (a view
    of the tensor where nothing needs converting)."""
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
    return array


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
