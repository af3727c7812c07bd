"""A hardened model that comes back as a bundle (its .onnx and data file, for weights over the
server's inline limit) is unpacked into a folder of its own as it streams in, and its files
appear there only once the whole download matches what the server announced; nothing outside
that folder is written, and no link is followed."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from client.errors import IntegrityError, InvalidInput
from client.model_bundle_out import bundle_folder, save_bundle
from client.transfer import FileDigest
from tests.bundle_support import file_member, link_member, tar_bytes

MODEL, DATA = b"onnx graph bytes", b"\x01\x02" * 5000


def good_bundle() -> bytes:
    return tar_bytes([file_member("hardened.onnx", MODEL), file_member("hardened.onnx.data", DATA)])


def chunked(data: bytes, size: int = 777) -> Iterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


def digest_of(data: bytes) -> FileDigest:
    return FileDigest(len(data), hashlib.sha256(data).hexdigest())


def test_the_bundle_is_unpacked_into_a_folder_named_after_the_output(tmp_path: Path) -> None:
    data = good_bundle()

    model = save_bundle(chunked(data), tmp_path / "out" / "robust.onnx", digest_of(data))

    assert model == tmp_path / "out" / "robust" / "hardened.onnx"
    assert model.read_bytes() == MODEL
    assert model.with_name("hardened.onnx.data").read_bytes() == DATA
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["robust"]


def test_an_existing_folder_is_the_destination_itself(tmp_path: Path) -> None:
    (tmp_path / "models").mkdir()

    model = save_bundle(chunked(good_bundle()), tmp_path / "models")

    assert model == tmp_path / "models" / "hardened.onnx"


def test_a_download_that_differs_from_the_announced_digest_leaves_nothing(tmp_path: Path) -> None:
    data = good_bundle()
    announced = FileDigest(len(data), "0" * 64)

    with pytest.raises(IntegrityError, match="SHA-256"):
        save_bundle(chunked(data), tmp_path / "robust.onnx", announced)

    assert list(tmp_path.iterdir()) == []


def test_a_download_cut_short_leaves_nothing(tmp_path: Path) -> None:
    data = good_bundle()

    with pytest.raises(IntegrityError):
        save_bundle(chunked(data[:3000]), tmp_path / "robust.onnx", digest_of(data))

    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name", ["../escaped.data", "/tmp/escaped.data", "a/../../escaped"])
def test_a_member_named_outside_the_bundle_is_refused_before_it_is_written(
    tmp_path: Path, name: str
) -> None:
    data = tar_bytes([file_member("hardened.onnx", MODEL), file_member(name, b"x")])

    with pytest.raises(IntegrityError, match="not a relative path inside it"):
        save_bundle(chunked(data), tmp_path / "out" / "robust.onnx")

    assert not (tmp_path / "escaped.data").exists()
    assert list((tmp_path / "out").iterdir()) == []


def test_a_link_in_the_bundle_is_refused(tmp_path: Path) -> None:
    data = tar_bytes([file_member("hardened.onnx", MODEL), link_member("x.data", "/etc/passwd")])

    with pytest.raises(IntegrityError, match="not a regular file"):
        save_bundle(chunked(data), tmp_path / "robust.onnx")


def test_a_bundle_without_one_top_level_model_is_refused(tmp_path: Path) -> None:
    data = tar_bytes([file_member("weights/hardened.onnx", MODEL)])

    with pytest.raises(IntegrityError, match=r"exactly one \.onnx"):
        save_bundle(chunked(data), tmp_path / "robust.onnx")

    assert list(tmp_path.iterdir()) == []


def test_downloading_again_replaces_the_bundles_files_and_keeps_the_others(tmp_path: Path) -> None:
    folder = tmp_path / "robust"
    folder.mkdir()
    (folder / "hardened.onnx").write_bytes(b"old")
    (folder / "notes.txt").write_text("mine")

    save_bundle(chunked(good_bundle()), tmp_path / "robust.onnx")

    assert (folder / "hardened.onnx").read_bytes() == MODEL
    assert (folder / "notes.txt").read_text() == "mine"


def test_a_link_in_the_destination_is_replaced_not_written_through(tmp_path: Path) -> None:
    outside = tmp_path / "precious.bin"
    outside.write_bytes(b"keep me")
    folder = tmp_path / "robust"
    folder.mkdir()
    (folder / "hardened.onnx.data").symlink_to(outside)

    save_bundle(chunked(good_bundle()), tmp_path / "robust.onnx")

    assert outside.read_bytes() == b"keep me"
    assert not (folder / "hardened.onnx.data").is_symlink()
    assert (folder / "hardened.onnx.data").read_bytes() == DATA


def test_a_destination_folder_that_is_a_link_is_refused(tmp_path: Path) -> None:
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "robust").symlink_to(tmp_path / "elsewhere")

    with pytest.raises(InvalidInput, match="not a folder"):
        save_bundle(chunked(good_bundle()), tmp_path / "robust.onnx")

    assert list((tmp_path / "elsewhere").iterdir()) == []


def test_the_folder_of_an_output_path_drops_its_onnx_suffix(tmp_path: Path) -> None:
    assert bundle_folder(tmp_path / "hardened.onnx") == tmp_path / "hardened"
    assert bundle_folder(tmp_path / "model") == tmp_path / "model"
