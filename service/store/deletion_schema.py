"""The job store's record of deleted jobs: ``<prefix>deleted_jobs``, one row per job a tenant
deleted (its id, its tenant, when), so that deleting it again answers "already deleted" to that
tenant and NOT_FOUND, as for any unknown id, to every other one."""

from __future__ import annotations

import sqlalchemy as sa

from service.core.tenancy import MAX_TENANT_CHARS


def deleted_jobs_table(prefix: str, metadata: sa.MetaData) -> sa.Table:
    return sa.Table(
        f"{prefix}deleted_jobs",
        metadata,
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("tenant", sa.String(MAX_TENANT_CHARS), nullable=False),
        sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=False),
    )
