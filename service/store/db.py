"""Database connection and schema of the job store (SQLAlchemy Core).

SQLite is the single-machine default: WAL mode lets the server read while a worker process
writes progress, and a busy timeout makes concurrent writers wait instead of failing.
PostgreSQL is used by URL for anything spread over several machines.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from service.store import (
    deletion_schema,
    lease_schema,
    method_schema,
    tenancy_schema,
    webhook_schema,
)
from service.store.tenant_lock import tenant_locks_table

log = logging.getLogger(__name__)

SQLITE_BUSY_TIMEOUT_MS = 30_000
POOL_SIZE = 16
"""Connections kept open. SQLAlchemy's default of 5 made a busy server open and close a
connection (with its pragmas) for most reads beyond the fifth at once."""
POOL_OVERFLOW = 8


def as_utc(value: datetime | None) -> datetime | None:
    """SQLite hands back naive datetimes; every stored time is UTC."""
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def create_db_engine(url: str) -> Engine:
    """A pooled engine. Connections to a database server are pinged when taken from the pool
    (one that was terminated is replaced, not handed out); a SQLite file cannot go away."""
    parsed = sa.engine.make_url(url)
    sqlite = parsed.get_backend_name() == "sqlite"
    in_memory = sqlite and parsed.database in (None, "", ":memory:")
    pooling = {} if in_memory else {"pool_size": POOL_SIZE, "max_overflow": POOL_OVERFLOW}
    engine = sa.create_engine(url, pool_pre_ping=not sqlite, **pooling)
    if sqlite:
        sa.event.listen(engine, "connect", _configure_sqlite)
    return engine


def _configure_sqlite(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA journal_mode = WAL")
    cursor.execute("PRAGMA synchronous = NORMAL")
    cursor.execute("PRAGMA foreign_keys = ON")
    cursor.close()


@dataclass(frozen=True)
class Tables:
    metadata: sa.MetaData
    jobs: sa.Table
    job_labels: sa.Table
    uploads: sa.Table
    upload_owners: sa.Table
    """Which tenant holds which upload (see :mod:`service.store.tenancy_schema`)."""
    tenant_locks: sa.Table
    """One row per tenant, locked while a limit is checked (:mod:`service.store.tenant_lock`)."""
    webhook_deliveries: sa.Table
    """The webhook outbox (see :mod:`service.store.webhook_schema`)."""
    deleted_jobs: sa.Table
    """Which tenant deleted which job (see :mod:`service.store.deletion_schema`)."""


def define_tables(prefix: str) -> Tables:
    """The schema, with every table name starting with ``prefix`` (tests use a unique one)."""
    metadata = sa.MetaData()
    jobs = sa.Table(
        f"{prefix}jobs",
        metadata,
        sa.Column(
            "seq",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        sa.Column("id", sa.String(64), nullable=False, unique=True),
        sa.Column("state", sa.String(16), nullable=False, index=True),
        sa.Column("spec", sa.JSON, nullable=False),
        sa.Column("labels", sa.JSON, nullable=False),
        sa.Column("idempotency_key", sa.String(200)),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True)),
        sa.Column("finished_at", sa.DateTime(timezone=True)),
        sa.Column("version", sa.Integer, nullable=False, default=1),
        sa.Column("progress", sa.JSON),
        sa.Column("reason", sa.Text, nullable=False, default=""),
        sa.Column("cancel_requested", sa.Boolean, nullable=False, default=False),
        sa.Column("attempts", sa.Integer, nullable=False, default=0),
        sa.Column("outputs", sa.JSON, nullable=False),
        sa.Column("result", sa.JSON),
        *tenancy_schema.job_columns(prefix),
        *lease_schema.job_columns(),
        *method_schema.job_columns(prefix),
    )
    job_labels = sa.Table(
        f"{prefix}job_labels",
        metadata,
        sa.Column(
            "job_id",
            sa.String(64),
            sa.ForeignKey(f"{prefix}jobs.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("key", sa.String(100), primary_key=True),
        sa.Column("value", sa.String(300), nullable=False),
        sa.Index(f"{prefix}job_labels_key_value", "key", "value"),
    )
    uploads = sa.Table(
        f"{prefix}uploads",
        metadata,
        sa.Column("id", sa.String(80), primary_key=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("format", sa.String(32), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("size_bytes", sa.BigInteger, nullable=False),
        sa.Column("name", sa.String(300), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    upload_owners = tenancy_schema.upload_owners_table(prefix, metadata, uploads)
    tenant_locks = tenant_locks_table(prefix, metadata)
    deliveries = webhook_schema.deliveries_table(prefix, metadata)
    deleted_jobs = deletion_schema.deleted_jobs_table(prefix, metadata)
    return Tables(
        metadata, jobs, job_labels, uploads, upload_owners, tenant_locks, deliveries, deleted_jobs
    )


def create_schema(engine: Engine, tables: Tables) -> None:
    """Create missing tables. The server and a worker may race here; the loser retries once
    and then finds the tables in place."""
    try:
        tables.metadata.create_all(engine)
    except SQLAlchemyError:
        log.info("creating the job store schema raced another process; checking again")
        tables.metadata.create_all(engine)
    tenancy_schema.upgrade(engine, tables.jobs)
    lease_schema.upgrade(engine, tables.jobs)
    method_schema.upgrade(engine, tables.jobs)


@dataclass(frozen=True)
class Database:
    """An engine and the tables it holds, shared by the job store and the upload catalog."""

    engine: Engine
    tables: Tables

    @classmethod
    def open(cls, url: str, table_prefix: str) -> Database:
        database = cls(create_db_engine(url), define_tables(table_prefix))
        create_schema(database.engine, database.tables)
        return database

    def drop(self) -> None:
        """Remove every table (tests clean up with this)."""
        self.tables.metadata.drop_all(self.engine)

    def close(self) -> None:
        self.engine.dispose()
