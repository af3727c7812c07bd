"""ONNX bundles for tests: a small classifier with its weights in external data, and tar
archives built member by member, good or hostile (links, paths out, sizes that lie)."""

from __future__ import annotations

import io
import tarfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

Member = tuple[tarfile.TarInfo, bytes]
FEATURES, CLASSES = 6, 3


def linear_with_external_data(
    folder: Path, name: str = "m.onnx", location: str = "m.onnx.data"
) -> Path:
    """A Gemm classifier (6 features, 3 classes) at ``folder/name`` whose weight and bias are
    kept in ``folder/location``, as onnx.save writes external data."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    weight = numpy_helper.from_array(rng.standard_normal((CLASSES, FEATURES)).astype("f4"), "w")
    bias = numpy_helper.from_array(rng.standard_normal(CLASSES).astype("f4"), "b")
    graph = helper.make_graph(
        [helper.make_node("Gemm", ["x", "w", "b"], ["y"], transB=1)],
        "linear",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", FEATURES])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", CLASSES])],
        [weight, bias],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    (folder / location).parent.mkdir(parents=True, exist_ok=True)
    path = folder / name
    onnx.save(model, path, save_as_external_data=True, location=location, size_threshold=0)
    return path


def file_member(name: str, data: bytes, *, size: int | None = None) -> Member:
    info = tarfile.TarInfo(name)
    info.size = len(data) if size is None else size
    return info, data


def link_member(name: str, target: str, kind: bytes = tarfile.SYMTYPE) -> Member:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    return info, b""


def special_member(name: str, kind: bytes) -> Member:
    info = tarfile.TarInfo(name)
    info.type = kind
    return info, b""


def tar_bytes(members: Sequence[Member]) -> bytes:
    """A tar of ``members`` exactly as given: the header says ``info.size`` whatever the data
    holds (so a test can make sizes lie), the data padded to whole blocks."""
    out = io.BytesIO()
    for info, data in members:
        out.write(info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape"))
        out.write(data)
        out.write(b"\0" * (-len(data) % 512))
    out.write(b"\0" * 1024)
    return out.getvalue()


def bundle_of(folder: Path, names: Sequence[str]) -> bytes:
    """A bundle of the files ``names`` under ``folder``, named so inside it."""
    return tar_bytes([file_member(n, (folder / n).read_bytes()) for n in names])


WIDE_FEATURES, WIDE_HIDDEN = 16, 2048
STREAMED_LIMIT = 100_000
"""An inline weight limit the wide MLP is over: its first layer (128 KiB) is streamed, its
smaller tensors (under 64 KiB each, 32 KiB in all) are read into the graph."""


def wide_mlp_with_external_data(folder: Path, name: str = "m.onnx") -> Path:
    """An MLP (16 features, 2048 hidden units, 3 classes) at ``folder/name`` with all its
    weights in ``folder/<name>.data``: 160 KiB of weights, the first layer 128 KiB of them."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    arrays = {
        "w1": rng.standard_normal((WIDE_FEATURES, WIDE_HIDDEN)).astype("f4") * 0.25,
        "b1": rng.standard_normal(WIDE_HIDDEN).astype("f4") * 0.1,
        "w2": rng.standard_normal((WIDE_HIDDEN, CLASSES)).astype("f4") * 0.05,
        "b2": np.zeros(CLASSES, "f4"),
    }
    nodes = [
        helper.make_node("MatMul", ["x", "w1"], ["h"]),
        helper.make_node("Add", ["h", "b1"], ["z"]),
        helper.make_node("Relu", ["z"], ["a"]),
        helper.make_node("MatMul", ["a", "w2"], ["o"]),
        helper.make_node("Add", ["o", "b2"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "wide",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", WIDE_FEATURES])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", CLASSES])],
        [numpy_helper.from_array(a, n) for n, a in arrays.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    onnx.save(model, path, save_as_external_data=True, location=f"{name}.data", size_threshold=0)
    return path
