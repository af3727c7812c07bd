"""Content-addressed storage of uploads and results.

Blobs are named by the SHA-256 of their bytes. A blob is written to a temporary file, hashed on
the way, flushed to disk and then renamed into place, so a reader never sees half a blob. The
:class:`ArtifactStore` protocol is what an S3-compatible store would implement: the engine needs
local paths, so :meth:`ArtifactStore.local_path` may download to a temporary file there.

Every blob's name is its SHA-256, recorded again with the upload or output that refers to it,
and it is checked whenever the bytes leave the store: :func:`verified_chunks` hashes a blob
before a download sends anything (and again while it streams), :func:`check_sha256` before a
worker uses an input. Bytes that changed on disk raise :class:`~service.core.errors.DataLoss`.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol

from service.core.errors import ChecksumMismatch, DataLoss, IncompleteUpload, NotFound
from workers.engine.files import CHUNK_BYTES, fsync_directory, sha256_file, sha256_of

log = logging.getLogger(__name__)

PARTIAL_BLOB_IDLE_SECONDS = 3600.0
"""A partial blob nobody wrote to for this long belongs to no live upload (a server killed
during an upload left it) and is swept (:meth:`LocalArtifactStore.sweep_partial_blobs`)."""


@dataclass(frozen=True)
class StoredBlob:
    sha256: str
    size_bytes: int


class BlobWriter(Protocol):
    @property
    def size_bytes(self) -> int: ...

    def write(self, chunk: bytes) -> None: ...

    def commit(self, expected_sha256: str | None = None) -> StoredBlob:
        """Make the blob visible. Raises ChecksumMismatch (and keeps nothing) if the bytes do
        not hash to ``expected_sha256``."""
        ...


class ArtifactStore(Protocol):
    def new_blob(self) -> contextlib.AbstractContextManager[BlobWriter]:
        """A writer whose bytes are discarded unless ``commit`` is called inside the block."""
        ...

    def put_file(self, path: Path) -> StoredBlob: ...

    def open(self, sha256: str) -> BinaryIO: ...

    def exists(self, sha256: str) -> bool: ...

    def local_path(self, sha256: str) -> contextlib.AbstractContextManager[Path]: ...

    def delete(self, sha256: str) -> bool:
        """Remove the blob; False when it was not there. The caller checks that nothing refers
        to it any more (blobs are shared by content)."""
        ...


class HashingWriter:
    """The part every store's writer shares: spool bytes to a local file while hashing them,
    and check the declared checksum before anything is made visible."""

    def __init__(self, file: BinaryIO) -> None:
        self._file = file
        self._hash = hashlib.sha256()
        self._size = 0
        self.committed: StoredBlob | None = None

    @property
    def size_bytes(self) -> int:
        return self._size

    def write(self, chunk: bytes) -> None:
        self._file.write(chunk)
        self._hash.update(chunk)
        self._size += len(chunk)

    def _verified_digest(self, expected_sha256: str | None) -> str:
        digest = self._hash.hexdigest()
        if expected_sha256 is not None and digest != expected_sha256.lower():
            raise ChecksumMismatch(
                f"the {self._size} bytes received hash to SHA-256 {digest}, not"
                f" {expected_sha256} as declared; the data changed on the way or the client"
                " hashed other bytes. Upload again"
            )
        return digest


class _LocalBlobWriter(HashingWriter):
    def __init__(self, store: LocalArtifactStore, file: BinaryIO, temp_path: Path) -> None:
        super().__init__(file)
        self._store = store
        self._temp_path = temp_path

    def write(self, chunk: bytes) -> None:
        """Every chunk reaches the file at once, and so its mtime, which the sweep reads."""
        super().write(chunk)
        self._file.flush()

    def commit(self, expected_sha256: str | None = None) -> StoredBlob:
        digest = self._verified_digest(expected_sha256)
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        final = self._store.blob_path(digest)
        final.parent.mkdir(parents=True, exist_ok=True)
        if _holds(final, digest):
            self._temp_path.unlink(missing_ok=True)
            self.committed = StoredBlob(digest, self._size)
            return self.committed
        try:
            os.chmod(self._temp_path, 0o444)
            os.replace(self._temp_path, final)
        except FileNotFoundError:
            raise IncompleteUpload(
                f"the upload was idle for more than {PARTIAL_BLOB_IDLE_SECONDS:.0f} s and its"
                " partial file was swept; upload the file again"
            ) from None
        fsync_directory(final.parent)
        self.committed = StoredBlob(digest, self._size)
        return self.committed

    def discard(self) -> None:
        if self.committed is None:
            self._file.close()
            self._temp_path.unlink(missing_ok=True)


class LocalArtifactStore:
    """Blobs under ``root/blobs/<aa>/<bb>/<sha256>``; partial writes live in ``root/tmp``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._blobs = root / "blobs"
        self._tmp = root / "tmp"
        self._blobs.mkdir(parents=True, exist_ok=True)
        self._tmp.mkdir(parents=True, exist_ok=True)
        self._live: set[Path] = set()
        self._live_lock = threading.Lock()

    def blob_path(self, sha256: str) -> Path:
        if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
            raise NotFound(f"{sha256!r} is not a SHA-256 of a stored blob")
        return self._blobs / sha256[:2] / sha256[2:4] / sha256

    @contextlib.contextmanager
    def new_blob(self) -> Iterator[BlobWriter]:
        fd, name = tempfile.mkstemp(dir=self._tmp, prefix="blob-", suffix=".part")
        temp_path = Path(name)
        writer = _LocalBlobWriter(self, os.fdopen(fd, "wb"), temp_path)
        with self._live_lock:
            self._live.add(temp_path)
        try:
            yield writer
        finally:
            writer.discard()
            with self._live_lock:
                self._live.discard(temp_path)

    def sweep_partial_blobs(self, idle_seconds: float = PARTIAL_BLOB_IDLE_SECONDS) -> int:
        """Delete the ``tmp/blob-*.part`` files that no writer of this process holds and that
        nobody wrote to for ``idle_seconds`` (another server sharing the directory writes each
        chunk as it comes): what a server killed during an upload left. Returns how many."""
        cutoff = time.time() - idle_seconds
        with self._live_lock:
            live = set(self._live)
        swept = 0
        for path in self._tmp.glob("blob-*.part"):
            try:
                if path in live or path.stat().st_mtime > cutoff:
                    continue
                path.unlink()
            except FileNotFoundError:
                continue
            swept += 1
        if swept:
            log.info("swept %d partial upload file(s) older than %.0f s", swept, idle_seconds)
        return swept

    def put_file(self, path: Path) -> StoredBlob:
        return write_file(self.new_blob(), path)

    def open(self, sha256: str) -> BinaryIO:
        try:
            return self.blob_path(sha256).open("rb")
        except FileNotFoundError:
            raise NotFound(f"blob {sha256} is not in the artifact store") from None

    def exists(self, sha256: str) -> bool:
        return self.blob_path(sha256).is_file()

    @contextlib.contextmanager
    def local_path(self, sha256: str) -> Iterator[Path]:
        path = self.blob_path(sha256)
        if not path.is_file():
            raise NotFound(f"blob {sha256} is not in the artifact store")
        yield path

    def delete(self, sha256: str) -> bool:
        path = self.blob_path(sha256)
        try:
            path.unlink()
        except FileNotFoundError:
            return False
        fsync_directory(path.parent)
        return True


def write_file(new_blob: contextlib.AbstractContextManager[BlobWriter], path: Path) -> StoredBlob:
    """Stream the file at ``path`` into a new blob of a store and commit it."""
    with new_blob as blob, path.open("rb") as source:
        while chunk := source.read(CHUNK_BYTES):
            blob.write(chunk)
        return blob.commit()


def read_chunks(file: BinaryIO, chunk_bytes: int = CHUNK_BYTES) -> Iterator[bytes]:
    """Yield a file's bytes in chunks and close it at the end (or when the consumer stops)."""
    with file:
        while chunk := file.read(chunk_bytes):
            yield chunk


def _holds(path: Path, sha256: str) -> bool:
    """Whether the blob is there with its bytes intact. The same bytes uploaded again then leave
    the file as it is: its identity is what the submit-time check remembers refusals by
    (service/jobs/validation_pool.py), so replacing it would let a tenant re-upload a model the
    check refused and have it checked again. A damaged blob is replaced, which heals it."""
    try:
        return sha256_file(path) == sha256
    except FileNotFoundError:
        return False


def check_sha256(path: Path, expected: str) -> None:
    """Raise DataLoss unless the file's bytes hash to ``expected``."""
    actual = sha256_file(path)
    if actual != expected:
        raise DataLoss(_damaged(expected, actual))


def verified_chunks(store: ArtifactStore, sha256: str) -> Iterator[bytes]:
    """The blob's bytes for a download, checked: hashed in full before this returns (so a
    damaged blob fails before anything is sent), and hashed again as it streams (a blob that
    changes meanwhile ends the stream with DataLoss instead of a clean end)."""
    with store.open(sha256) as handle:
        actual = sha256_of(handle)
    if actual != sha256:
        raise DataLoss(_damaged(sha256, actual))
    return _checked_stream(store.open(sha256), sha256)


def _checked_stream(file: BinaryIO, sha256: str) -> Iterator[bytes]:
    digest = hashlib.sha256()
    for chunk in read_chunks(file):
        digest.update(chunk)
        yield chunk
    if digest.hexdigest() != sha256:
        raise DataLoss(_damaged(sha256, digest.hexdigest()))


def _damaged(expected: str, actual: str) -> str:
    return (
        f"the stored artifact {expected} is damaged: its bytes now hash to {actual}; it is not"
        " served. The operator should restore it from a backup (or run the job again)"
    )
