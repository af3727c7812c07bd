"""The job store's ``method`` column: each job's hardening method, copied from its spec.

The spec JSON already holds the method; the column is there so that the job figures of a
Prometheus scrape (:mod:`service.api.job_metrics`) read an index and not every row's spec. The
index on ``(state, method, started_at, finished_at)`` covers both of their queries.

:func:`upgrade` adds the column to a jobs table created before it, fills it from the stored
specs, then creates the index. The index comes last so that its presence means the upgrade is
done: a start-up interrupted after adding the column fills it at the next one.
"""

from __future__ import annotations

import logging
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.schema import SchemaItem

log = logging.getLogger(__name__)

MAX_METHOD_CHARS = 32


def job_columns(prefix: str) -> list[SchemaItem]:
    """What the method adds to the jobs table."""
    return [
        sa.Column("method", sa.String(MAX_METHOD_CHARS)),
        sa.Index(_index_name(prefix), "state", "method", "started_at", "finished_at"),
    ]


def spec_method(spec: Any) -> Any:
    """The method as the stored spec JSON holds it (NULL when it has none)."""
    return spec[("training", "method")].as_string()


def upgrade(engine: Engine, jobs: sa.Table) -> None:
    """Add, fill and index the method column of a jobs table created before it (no-op on a
    current schema)."""
    prefix = jobs.name.removesuffix("jobs")
    if _index_name(prefix) in _indexes(engine, jobs.name):
        return
    if "method" not in _columns(engine, jobs.name):
        _add_column(engine, jobs)
    try:
        with engine.begin() as conn:
            filled = conn.execute(
                jobs.update().where(jobs.c.method.is_(None)).values(method=spec_method(jobs.c.spec))
            )
            conn.execute(
                sa.text(
                    f"CREATE INDEX IF NOT EXISTS {_index_name(prefix)} ON {jobs.name}"
                    " (state, method, started_at, finished_at)"
                )
            )
    except SQLAlchemyError:
        if _index_name(prefix) not in _indexes(engine, jobs.name):
            raise
        return  # another process upgraded it meanwhile
    log.warning(
        "filled the method column of %d jobs in the job store %s", filled.rowcount, jobs.name
    )


def _add_column(engine: Engine, jobs: sa.Table) -> None:
    kind = jobs.c.method.type.compile(dialect=engine.dialect)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text(f"ALTER TABLE {jobs.name} ADD COLUMN method {kind}"))
        log.warning("added the method column to the job store %s", jobs.name)
    except SQLAlchemyError:
        if "method" not in _columns(engine, jobs.name):
            raise  # not a race with another process doing the same


def _index_name(prefix: str) -> str:
    return f"{prefix}jobs_state_method"


def _indexes(engine: Engine, table: str) -> set[str]:
    return {str(index["name"]) for index in sa.inspect(engine).get_indexes(table)}


def _columns(engine: Engine, table: str) -> set[str]:
    return {column["name"] for column in sa.inspect(engine).get_columns(table)}
