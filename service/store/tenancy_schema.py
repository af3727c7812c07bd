"""The job store's tenancy: a ``tenant`` column on jobs and the ``upload_owners`` table.

- Every job row names its tenant; idempotency keys are unique per tenant, not globally.
- Uploads stay content-addressed (``model-<sha256>``, one blob and one ``uploads`` row for the
  same bytes), but a tenant may use an upload only if ``upload_owners`` has a row for it and
  that tenant. The same bytes uploaded by two tenants give two owner rows, each with the format
  and name that tenant gave; neither tenant learns that the other uploaded them.

:func:`upgrade` brings a database made before tenancy up to date at start-up: it adds the
``tenant`` column (every existing job belongs to :data:`DEFAULT_TENANT`), gives the default
tenant every existing upload, and on PostgreSQL replaces the global unique constraint on
idempotency keys by the per-tenant one. SQLite cannot drop that constraint without rebuilding
the table, so an old SQLite store keeps idempotency keys unique across tenants (stricter, and
harmless for a single-machine store).
"""

from __future__ import annotations

import logging

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.schema import SchemaItem

from service.core.tenancy import DEFAULT_TENANT, MAX_TENANT_CHARS

log = logging.getLogger(__name__)


def job_columns(prefix: str) -> list[SchemaItem]:
    """What tenancy adds to the jobs table."""
    return [
        sa.Column(
            "tenant",
            sa.String(MAX_TENANT_CHARS),
            nullable=False,
            default=DEFAULT_TENANT,
            server_default=DEFAULT_TENANT,
        ),
        sa.UniqueConstraint("tenant", "idempotency_key", name=_idempotency_name(prefix)),
        sa.Index(f"{prefix}jobs_tenant_seq", "tenant", "seq"),
    ]


def upload_owners_table(prefix: str, metadata: sa.MetaData, uploads: sa.Table) -> sa.Table:
    return sa.Table(
        f"{prefix}upload_owners",
        metadata,
        sa.Column("tenant", sa.String(MAX_TENANT_CHARS), primary_key=True),
        sa.Column(
            "upload_id",
            sa.String(80),
            sa.ForeignKey(uploads.c.id, ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("format", sa.String(32), nullable=False),
        sa.Column("name", sa.String(300), nullable=False),
        # copied from the upload, so that a tenant's stored bytes are one indexed sum
        sa.Column("size_bytes", sa.BigInteger, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )


def _idempotency_name(prefix: str) -> str:
    return f"{prefix}jobs_tenant_idempotency"


def upgrade(engine: Engine, jobs: sa.Table) -> None:
    """Add tenancy to a jobs table created before it (no-op on a current schema)."""
    if "tenant" in _columns(engine, jobs.name):
        return
    log.warning(
        "adding tenancy to the job store %s (existing jobs and uploads go to %r)",
        jobs.name,
        DEFAULT_TENANT,
    )
    prefix = jobs.name.removesuffix("jobs")
    try:
        with engine.begin() as conn:
            conn.execute(
                sa.text(
                    f"ALTER TABLE {jobs.name} ADD COLUMN tenant VARCHAR({MAX_TENANT_CHARS})"
                    f" NOT NULL DEFAULT '{DEFAULT_TENANT}'"
                )
            )
    except SQLAlchemyError:
        if "tenant" not in _columns(engine, jobs.name):
            raise
        return  # another process upgraded it meanwhile
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(
                sa.text(
                    f"ALTER TABLE {jobs.name} DROP CONSTRAINT IF EXISTS"
                    f" {jobs.name}_idempotency_key_key"
                )
            )
        else:
            log.warning(
                "this SQLite job store was created before tenancy: idempotency keys stay unique"
                " across tenants (create a new store to make them per tenant)"
            )
        conn.execute(
            sa.text(
                f"CREATE UNIQUE INDEX IF NOT EXISTS {_idempotency_name(prefix)}"
                f" ON {jobs.name} (tenant, idempotency_key)"
            )
        )
        conn.execute(
            sa.text(
                f"CREATE INDEX IF NOT EXISTS {prefix}jobs_tenant_seq ON {jobs.name} (tenant, seq)"
            )
        )
        conn.execute(
            sa.text(
                f"INSERT INTO {prefix}upload_owners"
                " (tenant, upload_id, format, name, size_bytes, created_at)"
                f" SELECT :tenant, id, format, name, size_bytes, created_at FROM {prefix}uploads"
                f" WHERE id NOT IN (SELECT upload_id FROM {prefix}upload_owners)"
            ),
            {"tenant": DEFAULT_TENANT},
        )


def _columns(engine: Engine, table: str) -> set[str]:
    return {column["name"] for column in sa.inspect(engine).get_columns(table)}
