"""What the client sends for a text model: the dataset's declared format, and an idempotency
key that tells two tokenizers apart."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pytest

from client.domain import DatasetFormat, HardeningParams, ModelFormat, dataset_format_of
from client.idempotency import derive_idempotency_key


@pytest.mark.parametrize(
    ("name", "fmt"),
    [
        ("train.jsonl", DatasetFormat.JSONL),
        ("train.ndjson", DatasetFormat.JSONL),
        ("train.csv", DatasetFormat.CSV),
        ("train.npz", DatasetFormat.NPZ),
    ],
)
def test_a_datasets_format_comes_from_its_suffix(tmp_path: Path, name: str, fmt: str) -> None:
    path = tmp_path / name
    path.write_bytes(b"anything")

    assert dataset_format_of(path) is fmt


@pytest.mark.parametrize(
    ("content", "fmt"),
    [
        (b'\xef\xbb\xbf{"text": "hi", "label": 0}\n', DatasetFormat.JSONL),
        (b"text,label\nhi,0\n", DatasetFormat.CSV),
    ],
)
def test_a_file_without_a_suffix_is_told_by_its_first_bytes(
    tmp_path: Path, content: bytes, fmt: DatasetFormat
) -> None:
    path = tmp_path / "data"
    path.write_bytes(content)

    assert dataset_format_of(path) is fmt


def test_a_zip_without_a_suffix_is_an_npz(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("x.npy", b"")
    path = tmp_path / "data"
    path.write_bytes(buffer.getvalue())

    assert dataset_format_of(path) is DatasetFormat.NPZ


def test_two_tokenizers_give_two_idempotency_keys(tmp_path: Path) -> None:
    model, data = tmp_path / "m.onnx", tmp_path / "train.jsonl"
    model.write_bytes(b"model")
    data.write_text('{"text": "hi", "label": 0}\n')
    first, second = tmp_path / "a.json", tmp_path / "b.json"
    first.write_text('{"model": {"vocab": {"a": 0}}}')
    second.write_text('{"model": {"vocab": {"b": 0}}}')
    params = HardeningParams(method="pgd", eps=0.0)

    def key(tokenizer: Path) -> str:
        return derive_idempotency_key(
            model, ModelFormat.ONNX, data, None, params, tokenizer_path=tokenizer
        )

    assert key(first) != key(second)
    assert key(first) == key(first)
