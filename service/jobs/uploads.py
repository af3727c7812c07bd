"""Receiving uploads: stream to the artifact store, enforce the size limit, verify the hash.

A tokenizer is small (:data:`~workers.engine.text.tokenizer.MAX_TOKENIZER_BYTES` at most) and
is checked before it is kept: its bytes are copied aside as they arrive and handed, once all are
in, to ``check_tokenizer`` (the submit-time checker's process, memory-capped and timed), so a
file that is not JSON or not a tokenizer is refused at upload and never stored. A feature schema
(:data:`~service.core.limits.MAX_SCHEMA_BYTES` at most) is copied aside and checked the same way,
by ``check_schema``, with the engine's schema reader.
"""

from __future__ import annotations

import contextlib
import re
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

from service.core.domain import (
    SCHEMA_FORMAT,
    TOKENIZER_FORMAT,
    DatasetFormat,
    UploadHeader,
    UploadKind,
    UploadResult,
)
from service.core.errors import IncompleteUpload, InvalidRequest, UploadTooLarge
from service.core.limits import MAX_CHARS, MAX_SCHEMA_BYTES
from service.jobs.quotas import UNLIMITED, QuotaPolicy
from service.store.artifacts import ArtifactStore
from service.store.catalog import UploadCatalog
from workers.engine.errors import InvalidData, UntrustedFormat
from workers.engine.spec import ModelFormat
from workers.engine.text.tokenizer import MAX_TOKENIZER_BYTES, tokenizer_too_large

_SHA256 = re.compile(r"[0-9a-f]{64}")
MAX_NAME_CHARS = MAX_CHARS["ModelUploadHeader.name"]
TOKENIZER_NAME = "tokenizer.json"
"""The name a tokenizer upload is checked under, so that the engine's messages name it so."""

SCHEMA_NAME = "schema.json"
"""The name a schema upload is checked under."""

TokenizerCheck = Callable[[Path, str], None]
"""``(path, tenant)``: raise the engine's InvalidModel if the file is not a usable tokenizer."""
SchemaCheck = Callable[[Path, str], None]
"""``(path, tenant)``: raise the engine's InvalidData, naming the feature, if the file is not a
feature schema the engine can read."""


class Uploads:
    def __init__(
        self,
        artifacts: ArtifactStore,
        catalog: UploadCatalog,
        *,
        max_bytes: int,
        allow_trusted_formats: bool,
        quotas: QuotaPolicy = UNLIMITED,
        count_received: Callable[[UploadKind, int], None] | None = None,
        check_tokenizer: TokenizerCheck | None = None,
        check_schema: SchemaCheck | None = None,
    ) -> None:
        self._artifacts = artifacts
        self._catalog = catalog
        self._max_bytes = max_bytes
        self._allow_trusted_formats = allow_trusted_formats
        self._quotas = quotas
        self._count_received = count_received
        self._checks: dict[UploadKind, tuple[Callable[[Path, str], None], str]] = {}
        if check_tokenizer is not None:
            self._checks[UploadKind.TOKENIZER] = (check_tokenizer, TOKENIZER_NAME)
        if check_schema is not None:
            self._checks[UploadKind.SCHEMA] = (check_schema, SCHEMA_NAME)

    def receive(
        self, header: UploadHeader, chunks: Iterable[bytes], *, tenant: str
    ) -> UploadResult:
        """Store the stream for ``tenant`` if it matches its header. Stops reading as soon as
        the stream runs past the size limit or the declared size; nothing partial is ever
        kept. The tenant's stored-bytes quota is checked before any byte is read, and again,
        atomically with recording the upload, once the bytes are in (see docs/security.md)."""
        self._check_header(header)
        self._check_quota(tenant, header)
        with self._artifacts.new_blob() as blob, self._copy_aside(header) as aside:
            for chunk in chunks:
                blob.write(chunk)
                if aside is not None:
                    aside.write(chunk)
                if blob.size_bytes > self._max_bytes:
                    raise UploadTooLarge(
                        self._too_large(f"the stream passed {blob.size_bytes} bytes")
                    )
                if header.kind is UploadKind.TOKENIZER and blob.size_bytes > MAX_TOKENIZER_BYTES:
                    raise tokenizer_too_large(TOKENIZER_NAME, blob.size_bytes)
                if header.kind is UploadKind.SCHEMA and blob.size_bytes > MAX_SCHEMA_BYTES:
                    raise schema_too_large(blob.size_bytes)
                if blob.size_bytes > header.size_bytes:
                    raise IncompleteUpload(
                        f"the stream carried more than the {header.size_bytes} bytes its header"
                        " declared; send the file's exact size in the header"
                    )
            if blob.size_bytes < header.size_bytes:
                raise IncompleteUpload(
                    f"the stream ended after {blob.size_bytes} of the {header.size_bytes} bytes"
                    " its header declared; upload the whole file again"
                )
            self._check_quota(tenant, header)  # again: another upload may have ended meanwhile
            if aside is not None:
                self._check_aside(header.kind, aside, tenant)
            stored = blob.commit(expected_sha256=header.sha256)
        artifact, already_present = self._catalog.record(
            header.kind,
            header.format,
            stored.sha256,
            stored.size_bytes,
            header.name,
            tenant,
            admit=self._admission(tenant, stored.size_bytes),
        )
        if self._count_received is not None:
            self._count_received(header.kind, stored.size_bytes)
        return UploadResult(artifact, already_present)

    @contextlib.contextmanager
    def _copy_aside(self, header: UploadHeader) -> Iterator[BinaryIO | None]:
        """Where a tokenizer's or a schema's bytes are copied for its check; None for other
        uploads."""
        if header.kind not in self._checks:
            yield None
            return
        _, name = self._checks[header.kind]
        with (
            tempfile.TemporaryDirectory(prefix=f"tempering-{header.kind.value}-") as folder,
            (Path(folder) / name).open("wb") as handle,
        ):
            yield handle

    def _check_aside(self, kind: UploadKind, aside: BinaryIO, tenant: str) -> None:
        check, _ = self._checks[kind]
        aside.flush()
        check(Path(aside.name), tenant)

    def _admission(self, tenant: str, size_bytes: int) -> Callable[[int], None] | None:
        if not self._quotas.limits_for(tenant).max_stored_bytes:
            return None
        return lambda stored_bytes: self._quotas.check_upload(tenant, stored_bytes, size_bytes)

    def _check_quota(self, tenant: str, header: UploadHeader) -> None:
        if not self._quotas.limits_for(tenant).max_stored_bytes:
            return
        if self._catalog.owns(tenant, header.kind, header.sha256):
            return  # the tenant holds these bytes already; storing them again costs nothing
        self._quotas.check_upload(tenant, self._catalog.stored_bytes(tenant), header.size_bytes)

    def _check_header(self, header: UploadHeader) -> None:
        if not _SHA256.fullmatch(header.sha256):
            raise InvalidRequest(
                "header.sha256 must be the lower-case hex SHA-256 of the whole file (64 characters)"
            )
        if header.size_bytes <= 0:
            raise InvalidRequest("header.size_bytes must be the file's size in bytes (> 0)")
        if header.size_bytes > self._max_bytes:
            raise UploadTooLarge(self._too_large(f"the upload is {header.size_bytes} bytes"))
        if len(header.name) > MAX_NAME_CHARS:
            raise InvalidRequest(f"header.name must be at most {MAX_NAME_CHARS} characters")
        if header.kind is UploadKind.MODEL:
            self._check_model_format(header.format)
        elif header.kind is UploadKind.TOKENIZER:
            if header.format != TOKENIZER_FORMAT:
                raise InvalidRequest(f"a tokenizer's format is {TOKENIZER_FORMAT}")
            if header.size_bytes > MAX_TOKENIZER_BYTES:
                raise tokenizer_too_large(TOKENIZER_NAME, header.size_bytes)
        elif header.kind is UploadKind.SCHEMA:
            if header.format != SCHEMA_FORMAT:
                raise InvalidRequest(f"a feature schema's format is {SCHEMA_FORMAT}")
            if header.size_bytes > MAX_SCHEMA_BYTES:
                raise schema_too_large(header.size_bytes)
        elif header.format not in {f.value for f in DatasetFormat}:
            raise InvalidRequest("header.format must be a dataset format: npz, jsonl or csv")

    def _check_model_format(self, value: str) -> None:
        try:
            fmt = ModelFormat(value)
        except ValueError:
            raise InvalidRequest(
                "header.format must be a model format: onnx, onnx_bundle, safetensors,"
                " torchscript or torch_export"
            ) from None
        if fmt.is_program and not self._allow_trusted_formats:
            raise UntrustedFormat(
                f"{fmt.value} models are programs that run code when loaded, and this server"
                " accepts them only when its operator turns trusted formats on"
                " (TEMPERING_ALLOW_TRUSTED_FORMATS); export the model to ONNX instead"
            )

    def _too_large(self, what: str) -> str:
        return (
            f"{what} but this server accepts at most {self._max_bytes} bytes"
            " (its operator sets TEMPERING_MAX_UPLOAD_BYTES)"
        )


def schema_too_large(size_bytes: int) -> InvalidData:
    return InvalidData(
        f"the feature schema is {size_bytes} bytes; a schema may have at most {MAX_SCHEMA_BYTES}"
        " (it describes the columns, it holds no data)"
    )
