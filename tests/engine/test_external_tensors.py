"""Reading a tensor kept in external data straight into torch (models over the inline weight
limit): the checked range of its file, exactly the bytes its shape and type need, confined to
the model's folder, and a file cut short refused naming the tensor."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from onnx import TensorProto, numpy_helper

from workers.engine.errors import InvalidModel
from workers.engine.models import external_data
from workers.engine.models.onnx import external
from workers.engine.models.onnx.external import ExternalWeights


def external_tensor(
    name: str, array: np.ndarray, location: str, offset: int, length: int | None = None
) -> TensorProto:
    proto = numpy_helper.from_array(array, name)
    proto.ClearField("raw_data")
    proto.data_location = TensorProto.EXTERNAL
    entries = {"location": location, "offset": str(offset)}
    entries["length"] = str(array.nbytes if length is None else length)
    for key, value in entries.items():
        entry = proto.external_data.add()
        entry.key, entry.value = key, value
    return proto


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    (tmp_path / "model").mkdir()
    return tmp_path / "model"


def weights_in(folder: Path) -> ExternalWeights:
    return ExternalWeights(folder / "m.onnx")


def test_a_tensor_is_read_from_its_offset_in_the_data_file(folder: Path) -> None:
    values = np.arange(12, dtype="f4").reshape(3, 4)
    (folder / "m.onnx.data").write_bytes(b"\xff" * 100 + values.tobytes() + b"\xee" * 8)

    tensor = weights_in(folder).tensor(external_tensor("w", values, "m.onnx.data", 100))

    assert tensor.dtype is torch.float32
    assert torch.equal(tensor, torch.from_numpy(values))


def test_integer_tensors_keep_their_type(folder: Path) -> None:
    values = np.array([[1, -2], [3, 2**40]], dtype="i8")
    (folder / "m.onnx.data").write_bytes(values.tobytes())

    tensor = weights_in(folder).tensor(external_tensor("ids", values, "m.onnx.data", 0))

    assert tensor.dtype is torch.int64
    assert tensor.tolist() == values.tolist()


def test_the_tensor_owns_its_bytes_once_the_file_is_gone(folder: Path) -> None:
    values = np.ones((2, 2), dtype="f4")
    (folder / "m.onnx.data").write_bytes(values.tobytes())
    tensor = weights_in(folder).tensor(external_tensor("w", values, "m.onnx.data", 0))

    (folder / "m.onnx.data").unlink()
    tensor.add_(1)

    assert tensor.tolist() == [[2.0, 2.0], [2.0, 2.0]]


def test_a_length_other_than_the_shape_needs_is_refused(folder: Path) -> None:
    values = np.zeros((2, 3), dtype="f4")
    (folder / "m.onnx.data").write_bytes(b"\0" * 64)

    with pytest.raises(InvalidModel, match="tensor 'w' is 20 bytes long; its shape"):
        weights_in(folder).tensor(external_tensor("w", values, "m.onnx.data", 0, length=20))


def test_a_range_past_the_end_of_the_file_is_refused(folder: Path) -> None:
    values = np.zeros(8, dtype="f4")
    (folder / "m.onnx.data").write_bytes(b"\0" * 40)

    with pytest.raises(InvalidModel, match="'w' lies outside its file"):
        weights_in(folder).tensor(external_tensor("w", values, "m.onnx.data", 16))


def test_a_file_cut_short_after_its_range_was_checked_is_refused(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    values = np.zeros(16, dtype="f4")
    data = folder / "m.onnx.data"
    data.write_bytes(values.tobytes())

    def checked_then_truncated(tensor: TensorProto, base: Path) -> external_data.ExternalRange:
        span = external_data.external_range(tensor, base)
        os.truncate(data, 10)
        return span

    monkeypatch.setattr(external, "external_range", checked_then_truncated)

    with pytest.raises(InvalidModel, match="'w' is truncated: its file ends 54 bytes before"):
        weights_in(folder).tensor(external_tensor("w", values, "m.onnx.data", 0))


@pytest.mark.parametrize(
    ("location", "message"),
    [
        ("../outside.data", "points outside the model's folder"),
        ("/etc/passwd", "absolute location"),
        ("missing.data", "is missing"),
    ],
)
def test_a_location_outside_the_folder_or_missing_is_refused(
    folder: Path, location: str, message: str
) -> None:
    (folder.parent / "outside.data").write_bytes(b"\0" * 64)

    with pytest.raises(InvalidModel, match=message):
        weights_in(folder).tensor(external_tensor("w", np.zeros(4, "f4"), location, 0))


def test_a_symbolic_link_out_of_the_folder_is_refused(folder: Path) -> None:
    (folder.parent / "secret.data").write_bytes(b"\0" * 64)
    (folder / "m.onnx.data").symlink_to(folder.parent / "secret.data")

    with pytest.raises(InvalidModel, match="resolves outside the model's folder"):
        weights_in(folder).tensor(external_tensor("w", np.zeros(4, "f4"), "m.onnx.data", 0))
