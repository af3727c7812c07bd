"""Tensors kept in external data files, read straight into torch: for a model whose weights are
over the inline limit (:data:`~workers.engine.spec.INLINE_WEIGHT_LIMIT`), so that they never
pass through a ``ModelProto`` (capped at 2 GB) and loading holds about one copy of them.

Every read goes through :func:`~workers.engine.models.external_data.external_range` first: the
location confined to the model's folder, the offset and length inside the file. The length must
then be exactly what the tensor's shape and type need, and a file that ends early (truncated
after the check) is refused naming the tensor.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import torch
from onnx import TensorProto
from torch import Tensor

from workers.engine.errors import InvalidModel, UnsupportedModel
from workers.engine.models.external_data import external_range
from workers.engine.models.onnx.protos import _TORCH_DTYPES

_READ_BYTES = 1 << 30
"""Largest single read: Linux returns at most about 2 GiB from one read(2)."""


class ExternalWeights:
    """The external tensors of the model at ``model_path``, read from files in its folder."""

    def __init__(self, model_path: Path) -> None:
        self.model_path = Path(model_path)
        self.base = self.model_path.parent.resolve()

    def tensor(self, proto: TensorProto) -> Tensor:
        """``proto``'s values, read from its external data file into a new tensor (one copy,
        not zero-filled first). :class:`InvalidModel` when the range is outside the folder or
        the file, does not match the shape and type, or the file is shorter than it was when
        checked."""
        dtype = _TORCH_DTYPES.get(proto.data_type)
        if dtype is None:
            raise UnsupportedModel(
                f"tensor '{proto.name}' has element type"
                f" {TensorProto.DataType.Name(proto.data_type)}, which is not read from external"
                " data"
            )
        span = external_range(proto, self.base)
        dims = [int(d) for d in proto.dims]
        needed = math.prod(dims) * _element_bytes(dtype)
        if span.length != needed:
            raise InvalidModel(
                f"external data of tensor '{proto.name}' is {span.length} bytes long; its shape"
                f" {dims} and type {TensorProto.DataType.Name(proto.data_type)} need {needed}"
            )
        values = torch.empty(dims, dtype=dtype)
        view = values.reshape(-1).view(torch.uint8).numpy().data
        filled = 0
        with span.file.open("rb", buffering=0) as handle:
            handle.seek(span.offset)
            while filled < needed:
                got = handle.readinto(view[filled : filled + _READ_BYTES])
                if not got:
                    raise InvalidModel(
                        f"external data of tensor '{proto.name}' is truncated: its file ends"
                        f" {needed - filled} bytes before the tensor does"
                    )
                filled += got
        view.release()
        if sys.byteorder == "big" and values.element_size() > 1:
            values = _from_little_endian(values)
        return values


def _element_bytes(dtype: torch.dtype) -> int:
    return torch.empty((), dtype=dtype).element_size()


def _from_little_endian(values: Tensor) -> Tensor:
    """ONNX stores raw data little-endian."""
    import numpy as np

    width = {2: np.int16, 4: np.int32, 8: np.int64}[values.element_size()]
    swapped = values.view({2: torch.int16, 4: torch.int32, 8: torch.int64}[values.element_size()])
    array = swapped.numpy().view(width).byteswap()
    return torch.from_numpy(array).view(values.dtype)
