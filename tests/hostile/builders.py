"""Byte builders of the hostile corpus: models, datasets and payloads, made fresh by each case.

Everything here is deterministic. Only :func:`torchscript_bytes` and :func:`torch_export_bytes`
import torch (in the test process, never in the server's code path); they are cached because
exporting takes a few seconds.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import pickle
import struct
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

FEATURES = 64
CLASSES = 10
STATIC = Path(__file__).resolve().parent / "static"


def static(name: str) -> bytes:
    """A small committed file of ``tests/hostile/static``."""
    return (STATIC / name).read_bytes()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# --- ONNX -------------------------------------------------------------------------------------


def _model(
    nodes: Sequence[onnx.NodeProto],
    inputs: Sequence[onnx.ValueInfoProto],
    outputs: Sequence[onnx.ValueInfoProto],
    initializers: Sequence[onnx.TensorProto] = (),
    functions: Sequence[onnx.FunctionProto] = (),
) -> onnx.ModelProto:
    graph = helper.make_graph(list(nodes), "hostile", list(inputs), list(outputs), initializers)
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17)], functions=list(functions)
    )
    model.ir_version = 8
    return model


def _x(name: str = "x", features: int = FEATURES) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, ["N", features])


def _logits(name: str = "logits", classes: int = CLASSES) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, ["N", classes])


def _weights(seed: int, features: int = FEATURES, classes: int = CLASSES) -> list[TensorProto]:
    rng = np.random.default_rng(seed)
    return [
        numpy_helper.from_array(rng.normal(0, 0.1, (features, classes)).astype(np.float32), "W"),
        numpy_helper.from_array(np.zeros(classes, np.float32), "B"),
    ]


def linear_proto(seed: int = 0, features: int = FEATURES) -> onnx.ModelProto:
    """A valid one-layer classifier (N, features) -> (N, 10)."""
    return _model(
        [helper.make_node("Gemm", ["x", "W", "B"], ["logits"])],
        [_x(features=features)],
        [_logits()],
        _weights(seed, features),
    )


def linear_onnx(seed: int = 0) -> bytes:
    model = linear_proto(seed)
    onnx.checker.check_model(model)
    return model.SerializeToString()


def truncated(data: bytes, keep: float) -> bytes:
    return data[: max(1, int(len(data) * keep))]


def overwritten(data: bytes, start: int, junk: bytes) -> bytes:
    """``data`` with ``junk`` written over it from byte ``start`` on."""
    return data[:start] + junk + data[start + len(junk) :]


def npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def two_inputs_onnx() -> bytes:
    return _model(
        [
            helper.make_node("Add", ["x", "x2"], ["s"]),
            helper.make_node("Gemm", ["s", "W", "B"], ["logits"]),
        ],
        [_x(), _x("x2")],
        [_logits()],
        _weights(1),
    ).SerializeToString()


def two_outputs_onnx() -> bytes:
    return _model(
        [
            helper.make_node("Gemm", ["x", "W", "B"], ["logits"]),
            helper.make_node("Softmax", ["logits"], ["probs"], axis=1),
        ],
        [_x()],
        [_logits(), _logits("probs")],
        _weights(2),
    ).SerializeToString()


def integer_output_onnx() -> bytes:
    """No float output: the graph ends in ArgMax, so it returns class indices (int64)."""
    return _model(
        [
            helper.make_node("Gemm", ["x", "W", "B"], ["logits"]),
            helper.make_node("ArgMax", ["logits"], ["label"], axis=1, keepdims=0),
        ],
        [_x()],
        [helper.make_tensor_value_info("label", TensorProto.INT64, ["N"])],
        _weights(3),
    ).SerializeToString()


def _point_outside(tensor: TensorProto, location: str) -> None:
    """Move a tensor's bytes to "external data" at ``location`` (by hand, nothing is written)."""
    size = len(numpy_helper.to_array(tensor).tobytes())
    tensor.ClearField("raw_data")
    tensor.ClearField("float_data")
    tensor.data_location = TensorProto.EXTERNAL
    del tensor.external_data[:]
    for key, value in (("location", location), ("offset", "0"), ("length", str(size))):
        entry = tensor.external_data.add()
        entry.key, entry.value = key, value


def external_initializer_onnx(location: str) -> bytes:
    """The weight initializer lives in an external file at ``location``."""
    model = linear_proto(seed=4)
    _point_outside(model.graph.initializer[0], location)
    return model.SerializeToString()


def external_constant_onnx(location: str) -> bytes:
    """The weights are a Constant node's attribute tensor whose data is external: a place a
    check of ``graph.initializer`` alone would miss."""
    weight, bias = _weights(5)
    weight.name = "Wc"
    _point_outside(weight, location)
    return _model(
        [
            helper.make_node("Constant", [], ["W"], value=weight),
            helper.make_node("Gemm", ["x", "W", "B"], ["logits"]),
        ],
        [_x()],
        [_logits()],
        [bias],
    ).SerializeToString()


def external_function_onnx(location: str) -> bytes:
    """External data inside a model-local function's Constant node."""
    weight, bias = _weights(6)
    weight.name = "Wf"
    _point_outside(weight, location)
    function = helper.make_function(
        "hostile.local",
        "Weights",
        [],
        ["w"],
        [helper.make_node("Constant", [], ["w"], value=weight)],
        [helper.make_opsetid("", 17)],
    )
    model = _model(
        [
            helper.make_node("Weights", [], ["W"], domain="hostile.local"),
            helper.make_node("Gemm", ["x", "W", "B"], ["logits"]),
        ],
        [_x()],
        [_logits()],
        [bias],
        functions=[function],
    )
    model.opset_import.append(helper.make_opsetid("hostile.local", 1))
    return model.SerializeToString()


def endless_loop_onnx() -> bytes:
    """Valid ONNX whose Loop runs 2**62 iterations: running it once never returns."""
    body = helper.make_graph(
        [
            helper.make_node("Identity", ["cond_in"], ["cond_out"]),
            helper.make_node("Add", ["acc_in", "one"], ["acc_out"]),
        ],
        "body",
        [
            helper.make_tensor_value_info("i", TensorProto.INT64, []),
            helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
            helper.make_tensor_value_info("acc_in", TensorProto.FLOAT, ["N", CLASSES]),
        ],
        [
            helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
            helper.make_tensor_value_info("acc_out", TensorProto.FLOAT, ["N", CLASSES]),
        ],
        [numpy_helper.from_array(np.array(1.0, np.float32), "one")],
    )
    model = _model(
        [
            helper.make_node("Gemm", ["x", "W", "B"], ["h"]),
            helper.make_node("Loop", ["trip", "cond", "h"], ["logits"], body=body),
        ],
        [_x()],
        [_logits()],
        [
            *_weights(7),
            numpy_helper.from_array(np.array(2**62, np.int64), "trip"),
            numpy_helper.from_array(np.array(True), "cond"),
        ],
    )
    onnx.checker.check_model(model)
    return model.SerializeToString()


# --- other model formats ----------------------------------------------------------------------


def safetensors_bytes(seed: int = 0) -> bytes:
    """safetensors weights written by hand: an 8-byte header length, a JSON header, the data."""
    weight = np.random.default_rng(seed).normal(0, 0.1, (CLASSES, FEATURES)).astype(np.float32)
    data = weight.tobytes()
    header = json.dumps(
        {"0.weight": {"dtype": "F32", "shape": list(weight.shape), "data_offsets": [0, len(data)]}}
    ).encode()
    return struct.pack("<Q", len(header)) + header + data


def zip_bytes(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


@functools.cache
def torchscript_bytes() -> bytes:
    import torch

    torch.manual_seed(0)
    buffer = io.BytesIO()
    module = torch.nn.Sequential(torch.nn.Linear(FEATURES, CLASSES))
    torch.jit.save(torch.jit.script(module), buffer)
    return buffer.getvalue()


@functools.cache
def torch_export_bytes() -> bytes:
    import torch

    torch.manual_seed(0)
    module = torch.nn.Sequential(torch.nn.Linear(FEATURES, CLASSES)).eval()
    buffer = io.BytesIO()
    torch.export.save(torch.export.export(module, (torch.zeros(2, FEATURES),)), buffer)
    return buffer.getvalue()


def corrupt_member(archive: bytes, member_suffix: str) -> bytes:
    """Flip the bytes of one stored member in place: the zip still opens, its CRC-32 fails."""
    with zipfile.ZipFile(io.BytesIO(archive)) as listing:
        info = next(i for i in listing.infolist() if i.filename.endswith(member_suffix))
    assert info.compress_type == zipfile.ZIP_STORED
    assert info.file_size > 0
    offset = info.header_offset
    name_len, extra_len = struct.unpack("<HH", archive[offset + 26 : offset + 30])
    start = offset + 30 + name_len + extra_len
    flipped = bytes(b ^ 0xFF for b in archive[start : start + info.file_size])
    return archive[:start] + flipped + archive[start + info.file_size :]


# --- payloads whose loading would run code ----------------------------------------------------


class Trap:
    """Unpickling this calls ``open(marker, "w")``: the marker file is proof that code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return (open, (str(self.marker), "w"))


def raw_pickle(marker: Path) -> bytes:
    """What ``torch.save(obj, f, _use_new_zipfile_serialization=False)`` writes: a bare pickle."""
    return pickle.dumps({"state_dict": Trap(marker)}, protocol=2)


def torch_save_zip(marker: Path) -> bytes:
    """The layout of ``torch.save``: a zip holding ``archive/data.pkl``."""
    return zip_bytes(
        {
            "archive/data.pkl": pickle.dumps({"state_dict": Trap(marker)}, protocol=2),
            "archive/byteorder": b"little",
            "archive/version": b"3\n",
        }
    )


def npz_with_object_array(marker: Path) -> bytes:
    """``np.savez`` of an object array pickles its items; loading it with pickles allowed would
    call the trap."""
    x = np.empty((4, 1), dtype=object)
    x[:, 0] = [Trap(marker)] * 4
    return npz_bytes(x, np.zeros(4, np.int64))


# --- datasets ---------------------------------------------------------------------------------


def npz_bytes(x: np.ndarray, y: np.ndarray, **extra: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    arrays: dict[str, Any] = {"x": x, "y": y, **extra}
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def good_arrays(samples: int = 64, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 1, (samples, FEATURES)).astype(np.float32)
    return x, rng.integers(0, CLASSES, samples)


def good_npz(samples: int = 64, seed: int = 1) -> bytes:
    return npz_bytes(*good_arrays(samples, seed))


def npz_lying_header(shape: tuple[int, ...]) -> bytes:
    """x's .npy header claims ``shape`` but the member holds 64 bytes of data."""
    x_header = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        x_header, {"descr": "<f4", "fortran_order": False, "shape": shape}
    )
    y = io.BytesIO()
    np.save(y, np.zeros(shape[0] if shape[0] < 1000 else 4, np.int64))
    return zip_bytes({"x.npy": x_header.getvalue() + b"\0" * 64, "y.npy": y.getvalue()})


def bundle_bytes(files: dict[str, bytes], links: dict[str, str] | None = None) -> bytes:
    """An ONNX bundle (uncompressed tar) of ``files``, plus symbolic links name -> target."""
    from tests.bundle_support import file_member, link_member, tar_bytes

    members = [file_member(name, data) for name, data in files.items()]
    members += [link_member(name, target) for name, target in (links or {}).items()]
    return tar_bytes(members)


def bundled_external_onnx(location: str) -> bytes:
    """A bundle of a model whose weights are external at ``location``, and no data file."""
    return bundle_bytes({"m.onnx": external_initializer_onnx(location)})


def bundle_linking_to(target: str) -> bytes:
    """A bundle whose model reads its weights from ``w.bin``, a symbolic link to ``target``."""
    return bundle_bytes({"m.onnx": external_initializer_onnx("w.bin")}, {"w.bin": target})


# --- text: a tiny token classifier, its tokenizer, labelled texts ----------------------------

TEXT_WORDS = ("the", "cat", "dog", "likes", "hates", "prize", "money", "today", "again", "gift")
TEXT_CLASSES = 2


def word_level_tokenizer_json(words: Sequence[str] = TEXT_WORDS) -> bytes:
    """A word-level ``tokenizer.json`` with ``[PAD]`` = 0 and ``[UNK]`` = 1, then ``words``."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    vocab = {"[PAD]": 0, "[UNK]": 1, **{word: i + 2 for i, word in enumerate(words)}}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    return tokenizer.to_str().encode()


def text_onnx(vocab_size: int = len(TEXT_WORDS) + 2, seed: int = 0) -> bytes:
    """An embedding-bag classifier of token ids (N, T) int64 -> (N, 2): a Gather on a float
    table (what makes it a text model), the mean over tokens, a linear layer. No torch."""
    rng = np.random.default_rng(seed)
    table = numpy_helper.from_array(rng.normal(0, 0.1, (vocab_size, 8)).astype(np.float32), "E")
    weight = numpy_helper.from_array(rng.normal(0, 0.1, (8, TEXT_CLASSES)).astype(np.float32), "W")
    bias = numpy_helper.from_array(np.zeros(TEXT_CLASSES, np.float32), "B")
    model = _model(
        [
            helper.make_node("Gather", ["E", "input_ids"], ["embedded"], axis=0),
            helper.make_node("ReduceMean", ["embedded"], ["pooled"], axes=[1], keepdims=0),
            helper.make_node("Gemm", ["pooled", "W", "B"], ["logits"]),
        ],
        [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["N", "T"])],
        [_logits(classes=TEXT_CLASSES)],
        [table, weight, bias],
    )
    onnx.checker.check_model(model)
    return model.SerializeToString()


def text_rows(count: int = 12) -> list[dict[str, object]]:
    """``count`` labelled texts over the tokenizer's words."""
    rng = np.random.default_rng(5)
    return [
        {"text": " ".join(rng.choice(TEXT_WORDS, 5)), "label": int(i % TEXT_CLASSES)}
        for i in range(count)
    ]


def jsonl_bytes(rows: Sequence[object]) -> bytes:
    return "".join(json.dumps(row) + "\n" for row in rows).encode()


def good_jsonl() -> bytes:
    return jsonl_bytes(text_rows())


def jsonl_with(line: bytes, at: int = 3) -> bytes:
    """Good JSON Lines with raw ``line`` (no newline) put in as line ``at``."""
    lines = good_jsonl().splitlines(keepends=True)
    return b"".join([*lines[: at - 1], line + b"\n", *lines[at - 1 :]])


# --- tabular: a feature schema, a linear model of its columns, data it describes -------------

TABULAR_SCHEMA: dict[str, object] = {
    "features": [
        {"name": "amount", "lower": 0, "upper": 1000, "budget": {"range_share": 0.05}},
        {"name": "tx_24h", "kind": "integer", "lower": 0, "upper": 50, "budget": {"absolute": 2}},
        {"name": "foreign", "kind": "binary"},
        {"name": "merchant", "kind": "categorical", "columns": ["food", "travel", "online"]},
    ]
}
TABULAR_COLUMNS = 6
TABULAR_CLASSES = 2


def schema_bytes(document: object = TABULAR_SCHEMA) -> bytes:
    return json.dumps(document).encode()


def schema_with_feature(index: int, **change: object) -> bytes:
    """The schema with feature ``index`` changed (a value of None drops the key)."""
    features = [dict(f) for f in TABULAR_SCHEMA["features"]]  # type: ignore[attr-defined]
    features[index].update(change)
    features[index] = {k: v for k, v in features[index].items() if v is not None}
    return schema_bytes({"features": features})


def schema_with_constraints(*constraints: object, unbudgeted: int | None = None) -> bytes:
    """The schema with ``constraints``; ``unbudgeted``: a feature whose budget is dropped (a
    dependent takes none)."""
    features = [dict(f) for f in TABULAR_SCHEMA["features"]]  # type: ignore[attr-defined]
    if unbudgeted is not None:
        del features[unbudgeted]["budget"]
    return schema_bytes({"features": features, "constraints": list(constraints)})


def tabular_onnx(seed: int = 0) -> bytes:
    """A linear classifier of the schema's 6 columns into 2 classes."""
    model = _model(
        [helper.make_node("Gemm", ["x", "W", "B"], ["logits"])],
        [_x(features=TABULAR_COLUMNS)],
        [_logits(classes=TABULAR_CLASSES)],
        _weights(seed, TABULAR_COLUMNS, TABULAR_CLASSES),
    )
    onnx.checker.check_model(model)
    return model.SerializeToString()


def tabular_arrays(samples: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """Rows the schema describes: amount in [0, 1000], integer counts, 0/1, one-hot groups."""
    rng = np.random.default_rng(3)
    amount = rng.uniform(0, 1000, samples)
    tx = rng.integers(0, 51, samples)
    foreign = rng.integers(0, 2, samples)
    merchant = np.eye(3)[rng.integers(0, 3, samples)]
    x = np.column_stack([amount, tx, foreign, merchant]).astype(np.float32)
    return x, rng.integers(0, TABULAR_CLASSES, samples)


def tabular_npz() -> bytes:
    return npz_bytes(*tabular_arrays())
