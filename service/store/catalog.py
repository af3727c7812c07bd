"""Records of uploaded models and datasets, keyed by content.

An upload's id is its kind and the SHA-256 of its bytes, so the same bytes uploaded twice get
the same id and are stored once. Uploads belong to tenants: a tenant reaches an upload only
through its own row in ``upload_owners`` (see :mod:`service.store.tenancy_schema`), so the same
bytes uploaded by two tenants share a blob but neither can tell nor use the other's upload.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Row
from sqlalchemy.exc import IntegrityError

from service.core.domain import UploadedArtifact, UploadKind, utcnow
from service.core.errors import AlreadyExists, NotFound
from service.core.limits import quoted
from service.core.tenancy import DEFAULT_TENANT
from service.store.db import Database, as_utc
from service.store.tenant_lock import TenantLock

_UPLOAD_RPC = {
    UploadKind.MODEL: "UploadModel",
    UploadKind.DATASET: "UploadDataset",
    UploadKind.TOKENIZER: "UploadTokenizer",
    UploadKind.SCHEMA: "UploadSchema",
}


def upload_id(kind: UploadKind, sha256: str) -> str:
    return f"{kind.value}-{sha256}"


class UploadCatalog:
    def __init__(self, database: Database) -> None:
        self._engine = database.engine
        self._uploads = database.tables.uploads
        self._owners = database.tables.upload_owners
        self._tenant_lock = TenantLock(self._engine, database.tables.tenant_locks)
        uploads, owners = self._uploads, self._owners
        self._find_shared = sa.select(uploads).where(uploads.c.id == sa.bindparam("upload_id"))
        self._find_owned = (
            sa.select(
                uploads.c.id,
                uploads.c.kind,
                owners.c.format,
                uploads.c.sha256,
                uploads.c.size_bytes,
                owners.c.name,
                owners.c.created_at,
            )
            .join(owners, owners.c.upload_id == uploads.c.id)
            .where(
                uploads.c.id == sa.bindparam("upload_id"), owners.c.tenant == sa.bindparam("tenant")
            )
        )

    def record(
        self,
        kind: UploadKind,
        fmt: str,
        sha256: str,
        size_bytes: int,
        name: str,
        tenant: str = DEFAULT_TENANT,
        admit: Callable[[int], None] | None = None,
    ) -> tuple[UploadedArtifact, bool]:
        """Record an upload of ``tenant``; returns it and whether this tenant had uploaded the
        same bytes before (what other tenants uploaded is never told).

        ``admit``, when given, is called with the bytes the tenant stores, under the tenant's
        lock (:mod:`service.store.tenant_lock`) and in the transaction that records the upload for
        it; raising refuses the upload. Bytes the tenant holds already are never refused."""
        artifact_id = upload_id(kind, sha256)
        self._ensure_blob_row(artifact_id, kind, fmt, sha256, size_bytes, name)
        known = self._find(artifact_id, tenant)
        if known is None:
            if self._add_owner(artifact_id, fmt, name, size_bytes, tenant, admit):
                return self.get(artifact_id, kind, tenant), False
            known = self._find(artifact_id, tenant)
            assert known is not None
        if known.format != fmt:
            raise AlreadyExists(
                f"these bytes were uploaded before as a {known.format} {kind.value}"
                f" ({artifact_id}); they cannot also be {fmt}"
            )
        return known, True

    def get(
        self, artifact_id: str, kind: UploadKind, tenant: str | None = None
    ) -> UploadedArtifact:
        """The upload as ``tenant`` recorded it; another tenant's upload is NotFound exactly
        like an id nobody uploaded. Without a tenant, the shared record (format and name of
        the first upload of these bytes)."""
        found = self._find(artifact_id, tenant)
        if found is None or found.kind is not kind:
            raise NotFound(
                f"no {kind.value} with id {quoted(artifact_id)}; upload it with {_UPLOAD_RPC[kind]}"
                " and use the id it returns"
            )
        return found

    def owns(self, tenant: str, kind: UploadKind, sha256: str) -> bool:
        return self._find(upload_id(kind, sha256), tenant) is not None

    def stored_bytes(self, tenant: str) -> int:
        """Bytes of every upload the tenant holds (what its stored-bytes quota counts)."""
        with self._engine.connect() as conn:
            return self._stored_bytes(conn, tenant)

    def _stored_bytes(self, conn: Connection, tenant: str) -> int:
        owners = self._owners
        total = conn.execute(
            sa.select(sa.func.coalesce(sa.func.sum(owners.c.size_bytes), 0)).where(
                owners.c.tenant == tenant
            )
        ).scalar()
        return int(total or 0)

    def _add_owner(
        self,
        artifact_id: str,
        fmt: str,
        name: str,
        size_bytes: int,
        tenant: str,
        admit: Callable[[int], None] | None,
    ) -> bool:
        """Give ``tenant`` the upload; False when it had it already (a concurrent upload of
        the same bytes got there first)."""
        owners = self._owners
        held = owners.c.tenant == tenant, owners.c.upload_id == artifact_id
        transaction: contextlib.AbstractContextManager[Connection] = (
            self._engine.begin() if admit is None else self._tenant_lock.hold(tenant)
        )
        try:
            with transaction as conn:
                if admit is not None:
                    if conn.execute(sa.select(owners.c.tenant).where(*held)).first():
                        return False
                    admit(self._stored_bytes(conn, tenant))
                conn.execute(
                    owners.insert().values(
                        tenant=tenant,
                        upload_id=artifact_id,
                        format=fmt,
                        name=name,
                        size_bytes=size_bytes,
                        created_at=utcnow(),
                    )
                )
        except IntegrityError:
            if self._find(artifact_id, tenant) is None:
                raise
            return False
        return True

    def _ensure_blob_row(
        self, artifact_id: str, kind: UploadKind, fmt: str, sha256: str, size: int, name: str
    ) -> None:
        if self._find(artifact_id) is not None:
            return
        try:
            with self._engine.begin() as conn:
                conn.execute(
                    self._uploads.insert().values(
                        id=artifact_id,
                        kind=kind.value,
                        format=fmt,
                        sha256=sha256,
                        size_bytes=size,
                        name=name,
                        created_at=utcnow(),
                    )
                )
        except IntegrityError:
            if self._find(artifact_id) is None:
                raise

    def _find(self, artifact_id: str, tenant: str | None = None) -> UploadedArtifact | None:
        """Statements built once: uploads are frequent, and building a select costs more than
        running it on SQLite."""
        with self._engine.connect() as conn:
            if tenant is None:
                row = conn.execute(self._find_shared, {"upload_id": artifact_id}).first()
            else:
                params = {"upload_id": artifact_id, "tenant": tenant}
                row = conn.execute(self._find_owned, params).first()
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
