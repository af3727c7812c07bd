"""A per-tenant lock in the job store, so that checking a tenant's limit and recording what
counts against it are one step.

A limit check reads the tenant's usage (a count of its unfinished jobs, a sum of its uploads)
and then inserts a row. Two calls of one tenant that both read before either inserts would both
pass, so :meth:`TenantLock.hold` first *writes* the tenant's row of ``<prefix>tenant_locks``
and then hands over the transaction for the read and the insert:

- on PostgreSQL the ``UPDATE`` locks that row until the transaction ends, so a second caller
  of the same tenant waits at its own ``UPDATE``; under READ COMMITTED its next statement then
  sees what the first committed. Other tenants are not held up.
- on SQLite the ``UPDATE`` is the transaction's first statement, so it takes the database's
  write lock before anything is read (what ``BEGIN IMMEDIATE`` does); a second caller waits
  for it in the busy timeout, and then reads a fresh snapshot.

The same statements work on both, with no dialect-specific SQL. A conditional
``INSERT ... SELECT ... WHERE count < limit`` alone would not do on PostgreSQL: two concurrent
transactions each count without seeing the other's uncommitted row, and both insert.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError

from service.core.domain import utcnow
from service.core.tenancy import MAX_TENANT_CHARS


def tenant_locks_table(prefix: str, metadata: sa.MetaData) -> sa.Table:
    return sa.Table(
        f"{prefix}tenant_locks",
        metadata,
        sa.Column("tenant", sa.String(MAX_TENANT_CHARS), primary_key=True),
        sa.Column("locked_at", sa.DateTime(timezone=True), nullable=False),
    )


class TenantLock:
    def __init__(self, engine: Engine, locks: sa.Table) -> None:
        self._engine = engine
        self._locks = locks

    @contextlib.contextmanager
    def hold(self, tenant: str) -> Iterator[Connection]:
        """A transaction that holds ``tenant``'s lock until it commits or rolls back."""
        self._ensure_row(tenant)
        locks = self._locks
        with self._engine.begin() as conn:
            conn.execute(locks.update().where(locks.c.tenant == tenant).values(locked_at=utcnow()))
            yield conn

    def _ensure_row(self, tenant: str) -> None:
        """Rows are never deleted, so this inserts once per tenant (racing callers: one wins)."""
        locks = self._locks
        with self._engine.connect() as conn:
            if conn.execute(sa.select(locks.c.tenant).where(locks.c.tenant == tenant)).first():
                return
        with contextlib.suppress(IntegrityError), self._engine.begin() as conn:
            conn.execute(locks.insert().values(tenant=tenant, locked_at=utcnow()))
