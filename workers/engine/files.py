"""File helpers shared by the engine and the service's stores. Torch-free: the gRPC server
imports this module."""

from __future__ import annotations

import contextlib
import hashlib
import os
from pathlib import Path
from typing import BinaryIO

CHUNK_BYTES = 1 << 20


def sha256_of(handle: BinaryIO) -> str:
    """Hex SHA-256 of everything left to read in ``handle``, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    while chunk := handle.read(CHUNK_BYTES):
        digest.update(chunk)
    return digest.hexdigest()


def sha256_file(path: Path) -> str:
    with path.open("rb") as handle:
        return sha256_of(handle)


def fsync_directory(folder: Path) -> None:
    """Make a rename inside ``folder`` durable (POSIX); a no-op where directories cannot be
    opened."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
