"""The job store's lease columns (see :mod:`service.store.leases` for what they mean).

- ``lease_owner``: the worker attempt that runs the job (host:pid:random), NULL when none;
- ``lease_expires_at``: until when that worker is presumed alive; it renews this every
  heartbeat while the job runs;
- ``dispatched_at``: when the job's broker message was last sent again by the reconciler;
- ``run_seconds``: how long the job has run, over all its attempts, as of the last heartbeat
  (its time limit counts this total, so a resumed job gets only what is left).

:func:`upgrade` adds them to a jobs table created before them (they are all nullable, so an
``ALTER TABLE ... ADD COLUMN`` works on SQLite and PostgreSQL alike).
"""

from __future__ import annotations

import logging

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.schema import SchemaItem

log = logging.getLogger(__name__)

LEASE_COLUMNS = ("lease_owner", "lease_expires_at", "dispatched_at", "run_seconds")


def job_columns() -> list[SchemaItem]:
    """What leases add to the jobs table."""
    return [
        sa.Column("lease_owner", sa.String(200)),
        sa.Column("lease_expires_at", sa.DateTime(timezone=True)),
        sa.Column("dispatched_at", sa.DateTime(timezone=True)),
        sa.Column("run_seconds", sa.Float),
    ]


def upgrade(engine: Engine, jobs: sa.Table) -> None:
    """Add the lease columns a jobs table lacks (no-op on a current schema)."""
    present = _columns(engine, jobs.name)
    for name in LEASE_COLUMNS:
        if name in present:
            continue
        kind = jobs.c[name].type.compile(dialect=engine.dialect)
        try:
            with engine.begin() as conn:
                conn.execute(sa.text(f"ALTER TABLE {jobs.name} ADD COLUMN {name} {kind}"))
            log.warning("added the lease column %s to the job store %s", name, jobs.name)
        except SQLAlchemyError:
            if name not in _columns(engine, jobs.name):
                raise  # not a race with another process doing the same


def _columns(engine: Engine, table: str) -> set[str]:
    return {column["name"] for column in sa.inspect(engine).get_columns(table)}
