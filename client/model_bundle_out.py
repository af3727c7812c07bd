"""Saving a hardened model that comes back as an ONNX bundle: ``hardened.onnx.tar``, the
``.onnx`` and its external data file, for weights over the server's inline limit
(docs/model-bundles.md).

The ``.onnx`` names its data file (``hardened.onnx.data``) inside itself, so the two must stay
side by side under those names: the bundle is unpacked into a folder of its own
(:func:`bundle_folder`: ``out/hardened.onnx`` -> ``out/hardened/``) rather than beside the user's
other files. It is unpacked as it streams in, into a fresh hidden folder next to that one, each
member checked first (regular files and folders only, relative names that stay inside, at most
:data:`MAX_MEMBERS`); only once the whole download matches the size and SHA-256 the server
announced, and holds exactly one ``.onnx`` at its top level, do its files move into the
folder. Nothing outside that folder is written, and no link in it is followed.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tarfile
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path, PurePosixPath
from typing import BinaryIO, cast

from client.errors import IntegrityError, InvalidInput
from client.transfer import CHUNK_BYTES, FileDigest

MAX_MEMBERS = 64
"""As many entries as the server accepts in an uploaded bundle."""
_TAR_ERRORS = (tarfile.TarError, EOFError, ValueError, OverflowError, RecursionError)


def bundle_folder(dest: Path) -> Path:
    """The folder a bundle downloaded for ``dest`` goes into: ``dest`` itself when it is a
    folder already, else ``dest`` without its ``.onnx`` suffix."""
    if dest.is_dir() and not dest.is_symlink():
        return dest
    return dest.with_suffix("") if dest.suffix.lower() == ".onnx" else dest


def save_bundle(chunks: Iterable[bytes], dest: Path, expected: FileDigest | None = None) -> Path:
    """Unpack the bundle streamed as ``chunks`` into :func:`bundle_folder` of ``dest`` and
    return the path of its ``.onnx`` there. With ``expected`` (the server's size and SHA-256 of
    the bundle), :class:`IntegrityError` leaves the folder untouched if the bytes differ."""
    folder = bundle_folder(dest)
    if folder.is_symlink() or (folder.exists() and not folder.is_dir()):
        raise InvalidInput(
            f"{folder} exists and is not a folder; the hardened model comes as a bundle (its"
            " .onnx and data file) and is unpacked into a folder of that name: choose another"
            " output path"
        )
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".part", dir=folder.parent))
    try:
        reader = _HashingReader(chunks)
        names = _unpack_stream(reader, staging)
        reader.drain()
        if expected is not None:
            _check_digest(reader, expected, folder.name)
        model = _top_level_model(names)
        _move_into(staging, folder, names)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return folder / model


class _HashingReader:
    """The downloaded chunks as a file tarfile reads, hashed and counted as they arrive. A read
    returns at most what is left of the current chunk (short reads are allowed; tarfile asks
    again), the chunk itself when it is read whole, so bytes are not copied on the way."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks: Iterator[bytes] = iter(chunks)
        self._chunk = b""
        self._start = 0
        self.digest = hashlib.sha256()
        self.size = 0

    def read(self, size: int = -1) -> bytes:
        if self._start >= len(self._chunk):
            chunk = next(self._chunks, None)
            if chunk is None:
                return b""
            self.digest.update(chunk)
            self.size += len(chunk)
            self._chunk, self._start = chunk, 0
        left = len(self._chunk) - self._start
        if size < 0 or size >= left:
            data = self._chunk if self._start == 0 else self._chunk[self._start :]
            self._chunk, self._start = b"", 0
            return data
        data = self._chunk[self._start : self._start + size]
        self._start += size
        return data

    def drain(self) -> None:
        """Read what tarfile left (the end-of-archive blocks), so that the digest covers all."""
        self._chunk, self._start = b"", 0
        for chunk in self._chunks:
            self.digest.update(chunk)
            self.size += len(chunk)


def _unpack_stream(reader: _HashingReader, staging: Path) -> list[str]:
    names: list[str] = []
    try:
        with tarfile.open(
            fileobj=cast(BinaryIO, reader), mode="r|", bufsize=CHUNK_BYTES
        ) as archive:
            for member in archive:
                if len(names) >= MAX_MEMBERS:
                    raise IntegrityError(f"the model's bundle holds over {MAX_MEMBERS} entries")
                name = _checked_name(member.name)
                target = staging.joinpath(*name.split("/"))
                if member.isdir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                if not member.isreg():
                    raise IntegrityError(
                        f"the model's bundle holds {name!r}, which is not a regular file"
                    )
                _write_member(archive, member, target, name)
                names.append(name)
    except _TAR_ERRORS as exc:
        raise IntegrityError(f"the model's bundle is not a readable tar archive: {exc}") from exc
    return names


def _write_member(
    archive: tarfile.TarFile, member: tarfile.TarInfo, target: Path, name: str
) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(target, flags, 0o644)
    except FileExistsError:
        raise IntegrityError(f"the model's bundle holds {name!r} twice") from None
    source = archive.extractfile(member)
    assert source is not None
    with os.fdopen(fd, "wb") as out:
        left = member.size
        while left:
            chunk = source.read(min(left, CHUNK_BYTES))
            if not chunk:
                raise IntegrityError(f"the model's bundle ends inside {name!r} (truncated)")
            out.write(chunk)
            left -= len(chunk)


def _checked_name(raw: str) -> str:
    """A member's name as a relative POSIX path inside the bundle, or IntegrityError."""
    parts = [p for p in PurePosixPath(raw).parts if p != "."]
    if (
        not parts
        or raw.startswith("/")
        or "\\" in raw
        or ".." in parts
        or any(ord(c) < 32 for c in raw)
        or (len(raw) > 1 and raw[1] == ":")
    ):
        raise IntegrityError(
            f"the model's bundle holds a file named {raw[:200]!r}, which is not a relative path"
            " inside it; nothing was written"
        )
    return "/".join(parts)


def _check_digest(reader: _HashingReader, expected: FileDigest, name: str) -> None:
    if reader.size != expected.size_bytes:
        raise IntegrityError(
            f"the download of {name} is {reader.size} bytes long but the server announced"
            f" {expected.size_bytes}"
        )
    if reader.digest.hexdigest() != expected.sha256.lower():
        raise IntegrityError(
            f"the download of {name} has SHA-256 {reader.digest.hexdigest()} but the server"
            f" announced {expected.sha256}"
        )


def _top_level_model(names: list[str]) -> str:
    models = [n for n in names if "/" not in n and n.lower().endswith(".onnx")]
    if len(models) != 1:
        raise IntegrityError(
            f"the model's bundle must hold exactly one .onnx at its top level; it holds"
            f" {len(models)}"
        )
    return models[0]


def _move_into(staging: Path, folder: Path, names: list[str]) -> None:
    """Move the unpacked files into ``folder``: the whole staging folder when ``folder`` is
    new, else file by file, replacing files of the same names (a link among them is replaced,
    not followed) and creating subfolders only where no link leads elsewhere."""
    if not folder.exists():
        os.rename(staging, folder)
        return
    for name in names:
        parts = name.split("/")
        current = folder
        for part in parts[:-1]:
            current = current / part
            if current.is_symlink():
                raise InvalidInput(
                    f"{current} is a symbolic link; the bundle's files go inside {folder} only"
                )
            current.mkdir(exist_ok=True)
        os.replace(staging.joinpath(*parts), current / parts[-1])
