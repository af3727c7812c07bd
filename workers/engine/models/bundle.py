"""ONNX bundles: an uncompressed tar of one ``.onnx`` and the external data files it references
(docs/model-bundles.md). Torch-free: the server's submit-time checker unpacks a bundle too.

A bundle is unpacked into a private folder under strict rules, every header read and checked
before any member's bytes are: regular files (and folders) only, no links, devices or sparse
files; relative names that stay inside the bundle, each name once; at most
:data:`MAX_BUNDLE_MEMBERS` entries; every member's declared size inside the archive, and the
whole unpacked size no larger than the archive itself (uncompressed: nothing can expand);
nothing but the tar end marker after the last member; exactly one ``.onnx`` at the top level.
The engine's external-data reader then confines every location to that folder.
"""

from __future__ import annotations

import contextlib
import os
import tarfile
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO, cast

from workers.engine.errors import InvalidModel

MAX_BUNDLE_MEMBERS = 64
"""Entries (files and folders) a bundle may hold: a model and its data files, not a dataset."""
MAX_NAME_CHARS = 1000
MAX_HEADER_BYTES = 1 << 20
"""Largest single read while listing: a header block, or an extended header's records."""
TAR_BLOCK = 512
_COPY_BYTES = 16 << 20
_FILE_TYPES = (tarfile.REGTYPE, tarfile.AREGTYPE)
_KINDS = {
    tarfile.SYMTYPE: "a symbolic link",
    tarfile.LNKTYPE: "a hard link",
    tarfile.CHRTYPE: "a character device",
    tarfile.BLKTYPE: "a block device",
    tarfile.FIFOTYPE: "a named pipe",
    tarfile.CONTTYPE: "a contiguous file",
    tarfile.GNUTYPE_SPARSE: "a sparse file",
}
_UNREADABLE = (tarfile.TarError, RecursionError, ValueError, OverflowError, EOFError)
"""What tarfile raises on a malformed archive (a chain of extended headers recurses)."""
BUNDLE_HELP = (
    "an ONNX bundle is an uncompressed tar holding one .onnx at its top level and the"
    " external data files it references (temper harden and HardeningClient.upload_model"
    " make one from a model.onnx with its .data files; docs/model-bundles.md)"
)


@dataclass(frozen=True)
class BundleEntry:
    name: str
    """Relative POSIX name inside the bundle, without a leading ``./``."""
    member: tarfile.TarInfo

    @property
    def is_file(self) -> bool:
        return self.member.type in _FILE_TYPES


def is_tar_header(block: bytes) -> bool:
    """Whether ``block`` (a file's first 512 bytes) is a POSIX or GNU tar header with a valid
    checksum. V7 tars, which carry no magic, are not recognised."""
    if len(block) < TAR_BLOCK or block[257:262] != b"ustar":
        return False
    try:
        tarfile.TarInfo.frombuf(block[:TAR_BLOCK], "utf-8", "surrogateescape")
    except tarfile.HeaderError:
        return False
    return True


def list_bundle(archive: Path, *, max_members: int = MAX_BUNDLE_MEMBERS) -> list[BundleEntry]:
    """Every entry of the bundle, checked (see the module's rules) without reading any member's
    bytes. Raises :class:`InvalidModel` naming the first problem and the member it is in."""
    size = archive.stat().st_size
    try:
        with (
            archive.open("rb") as raw,
            tarfile.open(fileobj=cast(BinaryIO, _HeaderReads(raw)), mode="r:") as tar,
        ):
            entries = _checked_entries(tar, size, max_members)
            end = tar.offset
    except _UNREADABLE as exc:
        raise InvalidModel(
            f"the bundle is not a readable tar archive ({exc or type(exc).__name__}); {BUNDLE_HELP}"
        ) from exc
    _check_end_marker(archive, end, size)
    _check_layout(entries, size)
    return entries


class _HeaderReads:
    """The archive as tarfile reads it while listing: headers only. Member data is skipped by
    seeking, so any read larger than :data:`MAX_HEADER_BYTES` is an extended (pax or GNU long
    name) header claiming that size, which tarfile would hold in memory whole: refused."""

    def __init__(self, raw: BinaryIO) -> None:
        self._raw = raw
        self.mode = "rb"

    def read(self, size: int = -1) -> bytes:
        if size < 0 or size > MAX_HEADER_BYTES:
            raise InvalidModel(
                f"the bundle has an extended tar header over {MAX_HEADER_BYTES} bytes; names and"
                " attributes of a bundle's members are short"
            )
        return self._raw.read(size)

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        return self._raw.seek(offset, whence)

    def tell(self) -> int:
        return self._raw.tell()


def unpack_bundle(archive: Path, folder: Path, *, max_members: int = MAX_BUNDLE_MEMBERS) -> Path:
    """Check the bundle, write its files into the empty ``folder`` and return the path of its
    ``.onnx`` there. Nothing outside ``folder`` is created or followed."""
    entries = list_bundle(archive, max_members=max_members)
    try:
        with archive.open("rb") as source:
            for entry in entries:
                _write(source.fileno(), entry, folder)
    except OSError as exc:
        raise InvalidModel(f"the bundle cannot be unpacked: {exc.strerror or exc}") from exc
    return folder / next(e.name for e in entries if _is_top_level_model(e))


@contextlib.contextmanager
def unpacked_bundle(archive: Path) -> Iterator[Path]:
    """The bundle's ``.onnx``, unpacked with its data files into a private temporary folder
    that is removed on leaving."""
    with tempfile.TemporaryDirectory(prefix="tempering-bundle-") as folder:
        yield unpack_bundle(archive, Path(folder))


def _checked_entries(
    tar: tarfile.TarFile, archive_size: int, max_members: int
) -> list[BundleEntry]:
    entries: list[BundleEntry] = []
    seen: set[str] = set()
    total = 0
    while (member := tar.next()) is not None:
        if len(entries) >= max_members:
            raise InvalidModel(
                f"the bundle holds more than {max_members} entries; {BUNDLE_HELP}, not a"
                " collection of files"
            )
        name = _checked_name(member.name)
        if name == "." and member.type != tarfile.DIRTYPE:
            raise InvalidModel(f"bundle member {_shown(member.name)} is a file without a name")
        if member.type not in (*_FILE_TYPES, tarfile.DIRTYPE):
            kind = _KINDS.get(member.type, f"an entry of tar type {member.type!r}")
            raise InvalidModel(
                f"bundle member {_shown(member.name)} is {kind}; a bundle holds regular files only"
            )
        if name in seen:
            raise InvalidModel(f"bundle member {_shown(name)} appears twice")
        seen.add(name)
        if member.type in _FILE_TYPES:
            end = member.offset_data + member.size
            if end > archive_size:
                raise InvalidModel(
                    f"bundle member {_shown(name)} declares {member.size} bytes but the archive"
                    f" ends {end - archive_size} bytes before them (truncated or corrupt)"
                )
            total += member.size
        if name != ".":
            entries.append(BundleEntry(name, member))
    if total > archive_size:  # cannot happen for the types admitted; kept as the stated rule
        raise InvalidModel("the bundle's members add up to more bytes than the bundle holds")
    return entries


def _checked_name(raw: str) -> str:
    if not raw or len(raw) > MAX_NAME_CHARS or "\x00" in raw or "\\" in raw:
        raise InvalidModel(
            f"bundle member {_shown(raw)} has an empty, overlong or malformed name (names are"
            " relative paths with '/' between folders)"
        )
    if raw.startswith("/") or (len(raw) > 1 and raw[1] == ":"):
        raise InvalidModel(
            f"bundle member {_shown(raw)} has an absolute path; every name in a bundle is"
            " relative to the bundle"
        )
    parts = [p for p in PurePosixPath(raw).parts if p != "."]
    if ".." in parts:
        raise InvalidModel(f"bundle member {_shown(raw)} points outside the bundle ('..')")
    if any(ord(c) < 32 for c in raw):
        raise InvalidModel(f"bundle member {_shown(raw)} has control characters in its name")
    return "/".join(parts) or "."


def _check_end_marker(archive: Path, end: int, size: int) -> None:
    """After the last member a tar holds only zero blocks; anything else means a member's
    declared size does not match what follows it."""
    with archive.open("rb") as handle:
        handle.seek(end)
        while chunk := handle.read(_COPY_BYTES):
            if chunk.count(0) != len(chunk):
                raise InvalidModel(
                    "the bundle is truncated or corrupt: it has bytes after its last readable"
                    " member (a member's declared size does not match its bytes, or a header"
                    " is cut short)"
                )
    if end > size:
        raise InvalidModel("the bundle is truncated: its last member ends after the archive")


def _check_layout(entries: list[BundleEntry], archive_size: int) -> None:
    files = {e.name for e in entries if e.is_file}
    for name in files:
        parent = PurePosixPath(name).parent
        while str(parent) != ".":
            if str(parent) in files:
                raise InvalidModel(
                    f"bundle member {_shown(str(parent))} is a file and also the folder of"
                    f" {_shown(name)}"
                )
            parent = parent.parent
    models = sorted(e.name for e in entries if _is_top_level_model(e))
    if len(models) != 1:
        found = "none" if not models else ", ".join(_shown(m) for m in models)
        raise InvalidModel(
            f"a bundle must hold exactly one .onnx file at its top level; this one holds"
            f" {found}; {BUNDLE_HELP}"
        )


def _is_top_level_model(entry: BundleEntry) -> bool:
    return entry.is_file and "/" not in entry.name and entry.name.lower().endswith(".onnx")


def _write(source: int, entry: BundleEntry, folder: Path) -> None:
    """Write ``entry`` under ``folder``: a member's bytes are one checked range of the archive
    (uncompressed), copied by the kernel where it can."""
    target = folder.joinpath(*entry.name.split("/"))
    if not entry.is_file:
        target.mkdir(parents=True, exist_ok=True)
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(target, flags, 0o600)
    except FileExistsError:
        raise InvalidModel(f"bundle member {_shown(entry.name)} appears twice") from None
    try:
        offset, end = entry.member.offset_data, entry.member.offset_data + entry.member.size
        while offset < end:
            copied = _copy(source, fd, offset, min(end - offset, _COPY_BYTES))
            if not copied:
                raise InvalidModel(
                    f"bundle member {_shown(entry.name)} is shorter than it declares (truncated)"
                )
            offset += copied
    finally:
        os.close(fd)


def _copy(source: int, target: int, offset: int, count: int) -> int:
    if hasattr(os, "copy_file_range"):
        with contextlib.suppress(OSError):  # another file system, or no kernel support
            return os.copy_file_range(source, target, count, offset)
    data = os.pread(source, count, offset)
    view = memoryview(data)
    while view:
        view = view[os.write(target, view) :]
    return len(data)


def _shown(name: str) -> str:
    return repr(name if len(name) <= 200 else name[:200] + "...")


def pack_bundle(model: Path, data_files: list[str], archive: Path) -> None:
    """Write ``archive``: an uncompressed POSIX tar of ``model`` at its top level and each of
    ``data_files`` (locations relative to the model's folder, as the model references them),
    in the format uploads use, so that :func:`unpack_bundle` reads it. The bytes are the same
    for the same files (no times, owners or modes of this machine go in); each member's bytes
    are copied by the kernel where it can."""
    folder = model.parent.resolve()
    members = [(model.name, model)]
    for location in data_files:
        name = _checked_name(location)
        path = (folder / name).resolve()
        if name == "." or not path.is_relative_to(folder) or not path.is_file():
            raise InvalidModel(f"the model's data file {_shown(location)} is not in its folder")
        members.append((name, path))
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    fd = os.open(archive, flags, 0o644)
    try:
        for name, path in members:
            size = path.stat().st_size
            _write_all(fd, _member_header(name, size))
            with path.open("rb") as source:
                offset = 0
                while offset < size:
                    copied = _copy(source.fileno(), fd, offset, min(size - offset, _COPY_BYTES))
                    if not copied:
                        raise InvalidModel(f"{_shown(name)} shrank while it was being packed")
                    offset += copied
            _write_all(fd, b"\0" * (-size % TAR_BLOCK))
        _write_all(fd, b"\0" * (2 * TAR_BLOCK))
    except BaseException:
        os.close(fd)
        archive.unlink(missing_ok=True)
        raise
    os.close(fd)


def _member_header(name: str, size: int) -> bytes:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime, info.type = size, 0o644, 0, tarfile.REGTYPE
    return info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
