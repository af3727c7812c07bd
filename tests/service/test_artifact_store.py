"""The local artifact store: atomic, content-addressed writes."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from service.core.errors import ChecksumMismatch, NotFound
from service.store.artifacts import LocalArtifactStore


def visible_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()]


def test_committed_blob_is_named_by_its_sha256(tmp_path: Path) -> None:
    store = LocalArtifactStore(tmp_path)
    data = b"hello " * 1000

    with store.new_blob() as blob:
        blob.write(data[:10])
        blob.write(data[10:])
        stored = blob.commit(expected_sha256=hashlib.sha256(data).hexdigest())

    assert stored.sha256 == hashlib.sha256(data).hexdigest()
    assert stored.size_bytes == len(data)
    with store.open(stored.sha256) as f:
        assert f.read() == data
    assert list((tmp_path / "tmp").iterdir()) == []


def test_a_blob_is_invisible_until_committed_and_gone_if_abandoned(tmp_path: Path) -> None:
    store = LocalArtifactStore(tmp_path)

    seen_while_writing = []

    def abandoned_upload() -> None:
        with store.new_blob() as blob:
            blob.write(b"partial")
            seen_while_writing.extend(visible_files(tmp_path / "blobs"))
            raise RuntimeError("client went away")

    with pytest.raises(RuntimeError):
        abandoned_upload()

    assert seen_while_writing == []
    assert visible_files(tmp_path) == []


def test_checksum_mismatch_keeps_nothing(tmp_path: Path) -> None:
    store = LocalArtifactStore(tmp_path)

    def upload() -> None:
        with store.new_blob() as blob:
            blob.write(b"actual bytes")
            blob.commit(expected_sha256=hashlib.sha256(b"other bytes").hexdigest())

    with pytest.raises(ChecksumMismatch, match="Upload again"):
        upload()

    assert visible_files(tmp_path) == []


def test_same_bytes_twice_are_stored_once(tmp_path: Path) -> None:
    store = LocalArtifactStore(tmp_path)
    source = tmp_path / "source.bin"
    source.write_bytes(b"x" * 3_000_000)

    first = store.put_file(source)
    second = store.put_file(source)

    assert first == second
    assert len(visible_files(tmp_path / "blobs")) == 1


def test_the_same_bytes_uploaded_again_leave_the_stored_file_as_it_is(tmp_path: Path) -> None:
    store = LocalArtifactStore(tmp_path)
    source = tmp_path / "source.bin"
    source.write_bytes(b"model" * 1000)
    stored = store.put_file(source)
    before = store.blob_path(stored.sha256).stat()

    store.put_file(source)

    after = store.blob_path(stored.sha256).stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert list((tmp_path / "tmp").iterdir()) == []


def test_a_damaged_blob_is_replaced_by_the_same_bytes_uploaded_again(tmp_path: Path) -> None:
    store = LocalArtifactStore(tmp_path)
    source = tmp_path / "source.bin"
    source.write_bytes(b"model" * 1000)
    stored = store.put_file(source)
    blob = store.blob_path(stored.sha256)
    blob.chmod(0o644)
    blob.write_bytes(b"rotten" * 1000)

    store.put_file(source)

    assert blob.read_bytes() == source.read_bytes()


def test_unknown_blob_is_not_found(tmp_path: Path) -> None:
    store = LocalArtifactStore(tmp_path)

    with pytest.raises(NotFound):
        store.open("0" * 64)
    with pytest.raises(NotFound):
        store.open("../../etc/passwd")


def test_a_deleted_blob_is_gone_and_deleting_it_again_says_so(tmp_path: Path) -> None:
    store = LocalArtifactStore(tmp_path)
    kept = store.put_file(_file(tmp_path / "kept", b"kept"))
    gone = store.put_file(_file(tmp_path / "gone", b"gone"))

    assert store.delete(gone.sha256)
    assert not store.delete(gone.sha256)
    assert not store.exists(gone.sha256)
    assert store.exists(kept.sha256)
    with pytest.raises(NotFound):
        store.delete("../../etc/passwd")


def _file(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path
