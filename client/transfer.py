"""Moving files over the API's chunked streams: hashing and chunking uploads, and writing
downloads so that a file appears at its destination only once its SHA-256 has been checked."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from client.errors import IntegrityError

CHUNK_BYTES = 1 << 20


@dataclass(frozen=True)
class FileDigest:
    size_bytes: int
    sha256: str


def digest_file(path: Path) -> FileDigest:
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK_BYTES):
            digest.update(chunk)
            size += len(chunk)
    return FileDigest(size, digest.hexdigest())


def read_chunks(path: Path, chunk_bytes: int = CHUNK_BYTES) -> Iterator[bytes]:
    with path.open("rb") as handle:
        while chunk := handle.read(chunk_bytes):
            yield chunk


def write_verified(chunks: Iterable[bytes], dest: Path, expected: FileDigest) -> Path:
    """Write ``chunks`` to ``dest`` through a temporary file beside it; raise
    :class:`IntegrityError` (leaving ``dest`` untouched) if size or SHA-256 differ."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.with_name(f".{dest.name}.part")
    digest = hashlib.sha256()
    size = 0
    try:
        with partial.open("wb") as handle:
            for chunk in chunks:
                handle.write(chunk)
                digest.update(chunk)
                size += len(chunk)
        actual = FileDigest(size, digest.hexdigest())
        if actual.size_bytes != expected.size_bytes:
            raise IntegrityError(
                f"the download of {dest.name} is {actual.size_bytes} bytes long but the server"
                f" announced {expected.size_bytes}"
            )
        if actual.sha256 != expected.sha256.lower():
            raise IntegrityError(
                f"the download of {dest.name} has SHA-256 {actual.sha256} but the server"
                f" announced {expected.sha256}"
            )
        os.replace(partial, dest)
    finally:
        partial.unlink(missing_ok=True)
    return dest
