"""The artifact store in an S3-compatible bucket (AWS S3, MinIO, Ceph, ...), for workers on
other machines.

It keeps the local store's guarantees (:mod:`service.store.artifacts`):

- **complete or not at all**: a blob is spooled to a local temporary file while it is hashed,
  and only then sent, under its SHA-256, with one PUT or one multipart upload; S3 makes the
  object visible when the PUT (or ``CompleteMultipartUpload``) succeeds, never before. A failed
  multipart upload is aborted; a blob abandoned before ``commit`` is never sent.
- **SHA-256 recorded and checked**: the object carries its SHA-256 in its metadata
  (``x-amz-meta-sha256``) as well as in its key. Reading (``open``, ``local_path``) hashes the
  bytes as they arrive and raises :class:`~service.core.errors.DataLoss` when they do not hash to
  the key, or when the recorded SHA-256 is missing or different (an object replaced behind
  the service's back).
- **streaming**: reads come in chunks from the response body; nothing holds a blob in memory.
- **idempotent**: the same bytes always go to the same key with the same metadata; sending
  them again overwrites the object with identical bytes (which also repairs a damaged one).

boto3 is imported only when a store is built (``pip install 'tempering[s3]'``); credentials
come from the standard AWS variables, config files or instance roles, never from Tempering's
settings.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

from service.core.errors import DataLoss, NotFound
from service.core.setting_values import parse_s3_url
from service.store.artifacts import (
    CHUNK_BYTES,
    BlobWriter,
    HashingWriter,
    StoredBlob,
    _damaged,
    write_file,
)
from service.store.checkpoints import CHECKPOINT_FILE, CheckpointFiles, checked_job_id

log = logging.getLogger(__name__)

SHA256_METADATA = "sha256"
_MISSING_CODES = frozenset({"NoSuchKey", "404", "NotFound"})


def _check_name(sha256: str) -> None:
    if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
        raise NotFound(f"{sha256!r} is not a SHA-256 of a stored blob")


def _is_missing(exc: Exception) -> bool:
    response = getattr(exc, "response", None)
    if not isinstance(response, dict):
        return False
    return str(response.get("Error", {}).get("Code", "")) in _MISSING_CODES


class _S3BlobWriter(HashingWriter):
    def __init__(self, store: S3ArtifactStore, spool: BinaryIO) -> None:
        super().__init__(spool)
        self._store = store

    def commit(self, expected_sha256: str | None = None) -> StoredBlob:
        digest = self._verified_digest(expected_sha256)
        self._file.flush()
        self._file.seek(0)
        self._store._upload(self._file, digest)
        self.committed = StoredBlob(digest, self._size)
        return self.committed


class _VerifyingBody(io.RawIOBase):
    """An S3 response body that hashes what it yields and raises DataLoss at the end when the
    bytes do not hash to the blob's name."""

    def __init__(self, body: Any, sha256: str) -> None:
        self._body = body
        self._sha256 = sha256
        self._hash = hashlib.sha256()
        self._verified = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        chunk = self._body.read(len(view))
        if not chunk:
            if not self._verified:
                if self._hash.hexdigest() != self._sha256:
                    raise DataLoss(_damaged(self._sha256, self._hash.hexdigest()))
                self._verified = True
            return 0
        self._hash.update(chunk)
        view[: len(chunk)] = chunk
        return len(chunk)

    def close(self) -> None:
        if not self.closed:
            with contextlib.suppress(Exception):
                self._body.close()
        super().close()


class S3ArtifactStore:
    """Blobs at ``s3://<bucket>/<prefix>/blobs/<aa>/<bb>/<sha256>``; blobs being written are
    spooled to temporary files in ``spool_dir`` (the system's temporary directory if None)."""

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        endpoint_url: str | None = None,
        spool_dir: Path | None = None,
        client: Any = None,
        multipart_threshold: int = 64 * 1024 * 1024,
    ) -> None:
        try:
            import boto3
            from boto3.s3.transfer import TransferConfig
        except ImportError as exc:  # pragma: no cover - depends on the installation
            raise RuntimeError(
                "an s3:// artifact store needs boto3: pip install 'tempering[s3]'"
            ) from exc
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self._client = client or boto3.client("s3", endpoint_url=endpoint_url or None)
        self._transfer = TransferConfig(
            multipart_threshold=multipart_threshold,
            multipart_chunksize=max(multipart_threshold, 8 * 1024 * 1024),
        )
        self._spool_dir = spool_dir
        if spool_dir is not None:
            spool_dir.mkdir(parents=True, exist_ok=True)

    @classmethod
    def from_url(
        cls, url: str, *, endpoint_url: str | None = None, spool_dir: Path | None = None
    ) -> S3ArtifactStore:
        bucket, prefix = parse_s3_url(url)
        return cls(bucket, prefix, endpoint_url=endpoint_url, spool_dir=spool_dir)

    def checkpoints(self, local_root: Path) -> S3Checkpoints:
        """Job checkpoints in this bucket and prefix, with working copies under ``local_root``."""
        return S3Checkpoints(self._client, self.bucket, self.prefix, local_root)

    def key(self, sha256: str) -> str:
        _check_name(sha256)
        name = f"blobs/{sha256[:2]}/{sha256[2:4]}/{sha256}"
        return f"{self.prefix}/{name}" if self.prefix else name

    @contextlib.contextmanager
    def new_blob(self) -> Iterator[BlobWriter]:
        with tempfile.TemporaryFile(dir=self._spool_dir, prefix="blob-", suffix=".part") as f:
            yield _S3BlobWriter(self, f)

    def put_file(self, path: Path) -> StoredBlob:
        return write_file(self.new_blob(), path)

    def open(self, sha256: str) -> BinaryIO:
        key = self.key(sha256)
        try:
            response = self._client.get_object(Bucket=self.bucket, Key=key)
        except Exception as exc:
            if _is_missing(exc):
                raise NotFound(f"blob {sha256} is not in the artifact store") from None
            raise
        body = response["Body"]
        recorded = response.get("Metadata", {}).get(SHA256_METADATA)
        if recorded != sha256:
            body.close()
            raise DataLoss(
                f"the stored artifact {sha256} is damaged: its object records SHA-256"
                f" {recorded or 'none'}; it is not served. The operator should restore it from"
                " a backup (or run the job again)"
            )
        return io.BufferedReader(_VerifyingBody(body, sha256), CHUNK_BYTES)

    def exists(self, sha256: str) -> bool:
        try:
            self._client.head_object(Bucket=self.bucket, Key=self.key(sha256))
        except Exception as exc:
            if _is_missing(exc):
                return False
            raise
        return True

    @contextlib.contextmanager
    def local_path(self, sha256: str) -> Iterator[Path]:
        """Download the blob (checked) to a temporary file, deleted when the block ends."""
        fd, name = tempfile.mkstemp(dir=self._spool_dir, prefix="download-", suffix=".blob")
        path = Path(name)
        try:
            with os.fdopen(fd, "wb") as target, self.open(sha256) as source:
                while chunk := source.read(CHUNK_BYTES):
                    target.write(chunk)
            yield path
        finally:
            path.unlink(missing_ok=True)

    def delete(self, sha256: str) -> bool:
        if not self.exists(sha256):
            return False
        self._client.delete_object(Bucket=self.bucket, Key=self.key(sha256))
        return True

    def _upload(self, file: BinaryIO, sha256: str) -> None:
        self._client.upload_fileobj(
            file,
            self.bucket,
            self.key(sha256),
            ExtraArgs={
                "Metadata": {SHA256_METADATA: sha256},
                "ContentType": "application/octet-stream",
            },
            Config=self._transfer,
        )


class S3Checkpoints:
    """Checkpoints in an S3-compatible bucket, with a working copy under ``local_root``."""

    def __init__(self, client: Any, bucket: str, prefix: str, local_root: Path) -> None:
        self._client = client
        self._bucket = bucket
        self._prefix = prefix.strip("/")
        self._local = CheckpointFiles(local_root)

    def key(self, job_id: str) -> str:
        name = f"checkpoints/{checked_job_id(job_id)}/{CHECKPOINT_FILE}"
        return f"{self._prefix}/{name}" if self._prefix else name

    def path(self, job_id: str) -> Path:
        return self._local.path(job_id)

    def fetch(self, job_id: str) -> None:
        """Replace the working copy with the bucket's, or remove it when the bucket has none
        (a stale local file from an attempt whose push never happened must not win)."""
        target = self.path(job_id)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=target.parent, prefix=".fetch-", suffix=".tmp")
        temp = Path(name)
        try:
            with os.fdopen(fd, "wb") as handle:
                self._client.download_fileobj(self._bucket, self.key(job_id), handle)
        except Exception as exc:
            temp.unlink(missing_ok=True)
            if not _is_missing(exc):
                raise
            target.unlink(missing_ok=True)
            return
        os.replace(temp, target)
        log.info("job %s: fetched its checkpoint from the bucket", job_id)

    def push(self, job_id: str) -> None:
        self._client.upload_file(str(self.path(job_id)), self._bucket, self.key(job_id))

    def discard(self, job_id: str) -> None:
        self._local.discard(job_id)
        try:
            self._client.delete_object(Bucket=self._bucket, Key=self.key(job_id))
        except Exception:
            log.warning("could not delete the checkpoint of job %s from the bucket", job_id)
