"""Records of uploaded models and datasets, keyed by content.

An upload's id is its kind and the SHA-256 of its bytes, so the same bytes uploaded twice get
the same id and are stored once.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Row
from sqlalchemy.exc import IntegrityError

from service.db import Database, as_utc
from service.domain import UploadedArtifact, UploadKind, utcnow
from service.errors import AlreadyExists, NotFound

_UPLOAD_RPC = {UploadKind.MODEL: "UploadModel", UploadKind.DATASET: "UploadDataset"}


def upload_id(kind: UploadKind, sha256: str) -> str:
    return f"{kind.value}-{sha256}"


class UploadCatalog:
    def __init__(self, database: Database) -> None:
        self._engine = database.engine
        self._uploads = database.tables.uploads

    def record(
        self, kind: UploadKind, fmt: str, sha256: str, size_bytes: int, name: str
    ) -> tuple[UploadedArtifact, bool]:
        """Record an upload; returns it and whether the same bytes were recorded before."""
        artifact_id = upload_id(kind, sha256)
        known = self._find(artifact_id)
        if known is None:
            try:
                with self._engine.begin() as conn:
                    conn.execute(
                        self._uploads.insert().values(
                            id=artifact_id,
                            kind=kind.value,
                            format=fmt,
                            sha256=sha256,
                            size_bytes=size_bytes,
                            name=name,
                            created_at=utcnow(),
                        )
                    )
                return self.get(artifact_id, kind), False
            except IntegrityError:
                known = self._find(artifact_id)
                if known is None:
                    raise
        if known.format != fmt:
            raise AlreadyExists(
                f"these bytes were uploaded before as a {known.format} {kind.value}"
                f" ({artifact_id}); they cannot also be {fmt}"
            )
        return known, True

    def get(self, artifact_id: str, kind: UploadKind) -> UploadedArtifact:
        found = self._find(artifact_id)
        if found is None or found.kind is not kind:
            raise NotFound(
                f"no {kind.value} with id {artifact_id!r}; upload it with {_UPLOAD_RPC[kind]}"
                " and use the id it returns"
            )
        return found

    def _find(self, artifact_id: str) -> UploadedArtifact | None:
        with self._engine.connect() as conn:
            row = conn.execute(
                sa.select(self._uploads).where(self._uploads.c.id == artifact_id)
            ).first()
        return _upload_from_row(row) if row else None


def _upload_from_row(row: Row[Any]) -> UploadedArtifact:
    created = as_utc(row.created_at)
    assert created is not None
    return UploadedArtifact(
        id=row.id,
        kind=UploadKind(row.kind),
        format=row.format,
        sha256=row.sha256,
        size_bytes=row.size_bytes,
        name=row.name,
        created_at=created,
    )
