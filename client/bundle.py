"""What ``upload_model`` sends: the model file itself, or an ONNX bundle made on the fly.

An ONNX model whose tensors live in external data files (``torch.onnx.export(...,
dynamo=True)`` writes ``model.onnx.data`` beside the ``.onnx``) travels as a bundle: an
uncompressed POSIX tar of the ``.onnx`` and exactly the files it references, under the names
it references them by (docs/model-bundles.md). The tar is never written to disk: its bytes are
generated from the files twice, once to hash them (the upload's header carries size and
SHA-256) and once to send them, so a model of many gigabytes costs no temporary copy. A ready
``.tar`` bundle is sent as it is; a ``.zip`` of the same content is re-packed as a tar stream.
"""

from __future__ import annotations

import contextlib
import hashlib
import tarfile
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import IO

from client.domain import ModelFormat
from client.errors import InvalidInput
from client.onnx_wire import external_data_locations
from client.transfer import CHUNK_BYTES, FileDigest, digest_file, read_chunks

BLOCK = 512
_END_OF_ARCHIVE = b"\0" * (2 * BLOCK)


@dataclass(frozen=True)
class Member:
    """One file of a bundle: its name inside the bundle, its size and how to read it."""

    name: str
    size: int
    open: Callable[[], contextlib.AbstractContextManager[IO[bytes]]]


@dataclass(frozen=True)
class ModelUpload:
    """The bytes of a model upload, readable as many times as needed."""

    name: str
    format: ModelFormat
    digest: FileDigest
    chunks: Callable[[], Iterator[bytes]]


def model_upload(path: Path, model_format: ModelFormat) -> ModelUpload:
    """The upload for the model at ``path`` declared as ``model_format``: a bundle when an ONNX
    model references external data or the file is a ``.zip`` bundle, else the file."""
    members: list[Member] | None = None
    if model_format is ModelFormat.ONNX:
        members = onnx_members(path)
    elif model_format is ModelFormat.ONNX_BUNDLE and zipfile.is_zipfile(path):
        members = zip_members(path)
    if members is None:
        return ModelUpload(path.name, model_format, digest_file(path), lambda: read_chunks(path))
    digest = hashlib.sha256()
    size = 0
    for chunk in tar_stream(members):
        digest.update(chunk)
        size += len(chunk)
    return ModelUpload(
        path.name,
        ModelFormat.ONNX_BUNDLE,
        FileDigest(size, digest.hexdigest()),
        lambda: tar_stream(members),
    )


def onnx_members(path: Path) -> list[Member] | None:
    """The bundle's members for an ONNX model with external data: the model, then each data
    file it references; None when it references none (or is not a protobuf message: the
    server says what it is)."""
    try:
        locations = external_data_locations(path)
    except ValueError:
        return None
    if not locations:
        return None
    name = path.name if path.name.lower().endswith(".onnx") else f"{path.stem}.onnx"
    members = [_file_member(name, path)]
    for location in locations:
        members.append(_file_member(_member_name(location, path), path.parent / location))
    return members


def zip_members(path: Path) -> list[Member]:
    """The files of a ``.zip`` bundle (folders left out), to re-pack as a tar; their names
    are checked by the server like those of any bundle."""
    try:
        with zipfile.ZipFile(path) as archive:
            infos = [info for info in archive.infolist() if not info.is_dir()]
    except (zipfile.BadZipFile, OSError) as exc:
        raise InvalidInput(f"{path.name} is not a readable zip archive: {exc}") from exc

    def opener(name: str) -> Callable[[], contextlib.AbstractContextManager[IO[bytes]]]:
        @contextlib.contextmanager
        def open_member() -> Iterator[IO[bytes]]:
            with zipfile.ZipFile(path) as archive, archive.open(name) as member:
                yield member

        return open_member

    return [Member(info.filename, info.file_size, opener(info.filename)) for info in infos]


def tar_stream(members: list[Member]) -> Iterator[bytes]:
    """An uncompressed POSIX (pax) tar of ``members``, in chunks: the same bytes on every call
    while the files are unchanged (no times, owners or modes of the machine go in)."""
    for member in members:
        yield _header(member.name, member.size)
        left = member.size
        with member.open() as handle:
            while left:
                chunk = handle.read(min(left, CHUNK_BYTES))
                if not chunk:
                    break
                left -= len(chunk)
                yield chunk
            if left or handle.read(1):
                raise InvalidInput(
                    f"{member.name} changed while it was being uploaded; upload it again"
                )
        if member.size % BLOCK:
            yield b"\0" * (BLOCK - member.size % BLOCK)
    yield _END_OF_ARCHIVE


def _header(name: str, size: int) -> bytes:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mode = 0o644
    info.mtime = 0
    info.type = tarfile.REGTYPE
    return info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")


def _member_name(location: str, model: Path) -> str:
    posix = PurePosixPath(location.replace("\\", "/"))
    if posix.is_absolute() or PureWindowsPath(location).drive or ".." in posix.parts:
        raise InvalidInput(
            f"{model.name} references external data at {location!r}, outside its folder; a"
            " bundle carries only files in the model's folder (re-save the model with its data"
            " files beside it)"
        )
    return "/".join(p for p in posix.parts if p != ".")


def _file_member(name: str, path: Path) -> Member:
    if not path.is_file():
        raise InvalidInput(
            f"the model references the external data file {name!r}, which is not beside it"
            f" ({path} does not exist); keep the data files the exporter wrote next to the"
            " .onnx"
        )
    return Member(name, path.stat().st_size, lambda: path.open("rb"))
