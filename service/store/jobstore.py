"""Durable job records: the one place where a job's state lives.

Every state transition is one conditional ``UPDATE ... WHERE state IN (...)``, so the server
(cancelling) and a worker (starting, finishing) never overwrite each other's decision, on
SQLite and PostgreSQL alike. Every change bumps ``version``, which watchers poll.
"""

from __future__ import annotations

import contextlib
import dataclasses
import threading
import uuid
from collections import OrderedDict
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Row
from sqlalchemy.exc import IntegrityError

from service.core.domain import (
    Job,
    JobPage,
    JobQuery,
    JobSpec,
    JobState,
    NewJob,
    OutputFile,
    OutputKind,
    Progress,
    ResultSummary,
    utcnow,
)
from service.core.errors import AlreadyExists, FailedPrecondition, NotFound
from service.core.limits import quoted
from service.core.tenancy import DEFAULT_TENANT
from service.store.db import Database, as_utc
from service.store.leases import Leases
from service.store.tenant_lock import TenantLock
from service.store.webhook_schema import delivery_rows

PARSED_JOBS = 4096
"""Parsed jobs kept (:class:`ParsedJobs`): a few MiB, and every page a busy server lists."""

_ACTIVE = (JobState.QUEUED.value, JobState.RUNNING.value)


@dataclasses.dataclass(frozen=True)
class DeletedJob:
    """What :meth:`JobStore.delete_finished` removed: the job's outputs, whose blobs may now be
    unreferenced, or nothing when the tenant had deleted the job before."""

    job_id: str
    outputs: tuple[OutputFile, ...] = ()
    already_deleted: bool = False


class JobStore:
    def __init__(self, database: Database) -> None:
        self._engine = database.engine
        self._jobs = database.tables.jobs
        self._labels = database.tables.job_labels
        self._deliveries = database.tables.webhook_deliveries
        self._deleted = database.tables.deleted_jobs
        self._uploads = database.tables.uploads
        self._tenant_lock = TenantLock(self._engine, database.tables.tenant_locks)
        self._parsed = ParsedJobs(PARSED_JOBS)
        jobs = self._jobs
        by_id = sa.select(jobs).where(jobs.c.id == sa.bindparam("job_id"))
        self._get_any = by_id
        self._get_tenants = by_id.where(jobs.c.tenant == sa.bindparam("tenant"))
        """GetJob's reads, built once: building the expression cost more than running it."""

    @property
    def leases(self) -> Leases:
        """Claiming, renewing and taking back jobs (:mod:`service.store.leases`)."""
        return Leases(self._engine, self._jobs, self.get)

    def create(
        self,
        new: NewJob,
        admit: Callable[[int], None] | None = None,
        *,
        webhook_urls: Sequence[str] = (),
    ) -> tuple[Job, bool]:
        """Record a QUEUED job. Returns the job and whether it is new: a known idempotency key
        returns the job it created, and refuses different parameters.

        ``admit``, when given, is called with the tenant's count of queued and running jobs
        under the tenant's lock (:mod:`service.store.tenant_lock`), in the transaction that inserts
        the job; raising refuses it. Concurrent calls of one tenant therefore cannot pass a
        limit together.

        Each of ``webhook_urls`` gets a row in the webhook outbox
        (:mod:`service.webhooks.notifier`), in the same transaction: an accepted job is always
        announced when it ends."""
        if new.idempotency_key and (known := self.find_by_key(new.idempotency_key, new.tenant)):
            return self.same_request(known, new), False
        job_id = uuid.uuid4().hex
        now = utcnow()
        try:
            with self._transaction(new.tenant, locked=admit is not None) as conn:
                if admit is not None:
                    if new.idempotency_key and (
                        known := self._by_key(conn, new.idempotency_key, new.tenant)
                    ):
                        return self.same_request(known, new), False
                    admit(self._count_unfinished(conn, new.tenant))
                conn.execute(
                    self._jobs.insert().values(
                        id=job_id,
                        tenant=new.tenant,
                        state=JobState.QUEUED.value,
                        spec=new.spec.to_json(),
                        method=new.spec.training.method.value,
                        labels=dict(new.labels),
                        idempotency_key=new.idempotency_key or None,
                        created_at=now,
                        updated_at=now,
                        version=1,
                        reason="",
                        cancel_requested=False,
                        attempts=0,
                        outputs=[],
                    )
                )
                if new.labels:
                    conn.execute(
                        self._labels.insert(),
                        [{"job_id": job_id, "key": k, "value": v} for k, v in new.labels.items()],
                    )
                if webhook_urls:
                    conn.execute(
                        self._deliveries.insert(), delivery_rows(job_id, webhook_urls, now)
                    )
        except IntegrityError:
            if new.idempotency_key and (known := self.find_by_key(new.idempotency_key, new.tenant)):
                return self.same_request(known, new), False
            raise
        return self.get(job_id), True

    def get(self, job_id: str, tenant: str | None = None) -> Job:
        """The job; with ``tenant``, only if it is that tenant's (another tenant's job is
        NotFound exactly like a job that does not exist). Without, any job (workers)."""
        if tenant is None:
            statement, params = self._get_any, {"job_id": job_id}
        else:
            statement, params = self._get_tenants, {"job_id": job_id, "tenant": tenant}
        with self._engine.connect() as conn:
            row = conn.execute(statement, params).first()
        if row is None:
            raise NotFound(
                f"no job with id {quoted(job_id)}; ListJobs shows the jobs this server knows"
            )
        return self._parsed.parse(row)

    def versions(self, job_ids: Collection[str]) -> dict[str, int]:
        """The version of each of these jobs that exists, in one read."""
        jobs = self._jobs
        with self._engine.connect() as conn:
            rows = conn.execute(sa.select(jobs.c.id, jobs.c.version).where(jobs.c.id.in_(job_ids)))
            return {row.id: row.version for row in rows}

    def list_jobs(self, query: JobQuery, tenant: str | None = None) -> JobPage:
        """A page of jobs, newest first. Reads which jobs and versions are on the page first,
        then the rows of those it has not parsed at that version yet: a page of fifty jobs that
        mostly did not change costs one narrow read, not fifty JSON documents decoded."""
        jobs = self._jobs
        stmt = (
            sa.select(jobs.c.seq, jobs.c.id, jobs.c.version)
            .order_by(jobs.c.seq.desc())
            .limit(query.page_size + 1)
        )
        if tenant is not None:
            stmt = stmt.where(jobs.c.tenant == tenant)
        if query.after_seq is not None:
            stmt = stmt.where(jobs.c.seq < query.after_seq)
        if query.states:
            stmt = stmt.where(jobs.c.state.in_(sorted(s.value for s in query.states)))
        for key, value in query.labels.items():
            tagged = sa.select(self._labels.c.job_id).where(
                self._labels.c.key == key, self._labels.c.value == value
            )
            stmt = stmt.where(jobs.c.id.in_(tagged))
        with self._engine.connect() as conn:
            listed = conn.execute(stmt).all()
            page = listed[: query.page_size]
            found: dict[str, Job] = {}
            for listed_row in page:
                known = self._parsed.get(listed_row.id, listed_row.version)
                if known is not None:
                    found[listed_row.id] = known
            missing = [r.id for r in page if r.id not in found]
            if missing:
                rows = conn.execute(sa.select(jobs).where(jobs.c.id.in_(missing))).all()
                found.update((row.id, self._parsed.parse(row)) for row in rows)
        more = len(listed) > query.page_size
        kept = [r for r in page if r.id in found]  # a job deleted between the two reads is left out
        return JobPage(
            jobs=tuple(found[r.id] for r in kept),
            next_after_seq=page[-1].seq if more else None,
            seqs=tuple(r.seq for r in kept),
        )

    def delete(self, job_id: str) -> None:
        with self._engine.begin() as conn:
            conn.execute(self._labels.delete().where(self._labels.c.job_id == job_id))
            conn.execute(self._jobs.delete().where(self._jobs.c.id == job_id))

    def delete_finished(self, job_id: str, tenant: str) -> DeletedJob:
        """Delete the tenant's finished job with its labels and webhook outbox rows (a pending
        notification would announce a job that no longer exists), and record the deletion.
        A job this tenant deleted before gives ``already_deleted``; another tenant's job, or an
        unknown id, NotFound; a queued or running job FailedPrecondition, changing nothing."""
        jobs = self._jobs
        with self._engine.begin() as conn:
            row = conn.execute(
                sa.select(jobs).where(self._scoped(jobs.c.id == job_id, tenant))
            ).first()
            if row is None:
                if self._was_deleted(conn, job_id, tenant):
                    return DeletedJob(job_id, already_deleted=True)
                raise NotFound(
                    f"no job with id {quoted(job_id)}; ListJobs shows the jobs this server knows"
                )
            job = _job_from_row(row)
            conn.execute(self._labels.delete().where(self._labels.c.job_id == job_id))
            conn.execute(self._deliveries.delete().where(self._deliveries.c.job_id == job_id))
            gone = conn.execute(
                jobs.delete().where(jobs.c.id == job_id, jobs.c.state.not_in(_ACTIVE))
            ).rowcount
            if not gone:
                if self._was_deleted(conn, job_id, tenant):
                    return DeletedJob(job_id, already_deleted=True)
                raise FailedPrecondition(
                    f"job {job_id} is {job.state.value}; cancel it before deleting it"
                )
            conn.execute(
                self._deleted.insert().values(id=job_id, tenant=tenant, deleted_at=utcnow())
            )
        return DeletedJob(job_id, outputs=job.outputs)

    def referenced_blobs(self, sha256s: Iterable[str]) -> set[str]:
        """Those of ``sha256s`` that a job's outputs or an upload still refers to."""
        wanted = set(sha256s)
        if not wanted:
            return set()
        with self._engine.connect() as conn:
            found = set(
                conn.execute(
                    sa.select(self._uploads.c.sha256).where(self._uploads.c.sha256.in_(wanted))
                ).scalars()
            )
            for sha256 in wanted - found:
                mentioned = sa.cast(self._jobs.c.outputs, sa.Text).contains(sha256)
                if conn.execute(sa.select(self._jobs.c.id).where(mentioned).limit(1)).first():
                    found.add(sha256)
        return found

    def _was_deleted(self, conn: Connection, job_id: str, tenant: str) -> bool:
        deleted = self._deleted
        where = sa.and_(deleted.c.id == job_id, deleted.c.tenant == tenant)
        return conn.execute(sa.select(deleted.c.id).where(where)).first() is not None

    def claim(self, job_id: str, max_attempts: int) -> Job | None:
        """Move a QUEUED job (or a RUNNING one whose worker was lost) to RUNNING and count the
        attempt. None when the job is finished, being cancelled, or out of attempts."""
        jobs = self._jobs
        now = utcnow()
        changed = self._update(
            sa.and_(
                jobs.c.id == job_id,
                jobs.c.state.in_(_ACTIVE),
                jobs.c.attempts < max_attempts,
                sa.not_(jobs.c.cancel_requested),
            ),
            state=JobState.RUNNING.value,
            attempts=jobs.c.attempts + 1,
            started_at=sa.func.coalesce(jobs.c.started_at, now),
            updated_at=now,
        )
        return self.get(job_id) if changed else None

    def record_progress(self, job_id: str, progress: Progress, owner: str | None = None) -> bool:
        """Write the latest progress; with ``owner``, only while that worker holds the lease."""
        now = utcnow()
        stamped = dataclasses.replace(progress, updated_at=now)
        return self._update(
            _held_by(
                self._jobs,
                owner,
                sa.and_(self._jobs.c.id == job_id, self._jobs.c.state == JobState.RUNNING.value),
            ),
            progress=stamped.to_json(),
            updated_at=now,
        )

    def request_cancel(self, job_id: str, tenant: str | None = None) -> Job:
        """Cancel a QUEUED job at once; flag a RUNNING one for its worker to stop. With
        ``tenant``, only that tenant's job (NotFound otherwise, changing nothing)."""
        jobs = self._jobs
        now = utcnow()
        queued = sa.and_(jobs.c.id == job_id, jobs.c.state == JobState.QUEUED.value)
        cancelled = self._update(
            self._scoped(queued, tenant),
            state=JobState.CANCELLED.value,
            reason="cancelled before it started",
            cancel_requested=True,
            finished_at=now,
            updated_at=now,
        )
        if not cancelled:
            self._update(
                self._scoped(
                    sa.and_(
                        jobs.c.id == job_id,
                        jobs.c.state == JobState.RUNNING.value,
                        sa.not_(jobs.c.cancel_requested),
                    ),
                    tenant,
                ),
                cancel_requested=True,
                updated_at=now,
            )
        job = self.get(job_id, tenant)
        if job.state in (JobState.SUCCEEDED, JobState.FAILED):
            raise FailedPrecondition(
                f"job {job_id} already {job.state.value}; only queued or running jobs can be"
                " cancelled"
            )
        return job

    def is_cancel_requested(self, job_id: str) -> bool:
        with self._engine.connect() as conn:
            flag = conn.execute(
                sa.select(self._jobs.c.cancel_requested).where(self._jobs.c.id == job_id)
            ).scalar()
        return bool(flag)

    def finish(
        self,
        job_id: str,
        state: JobState,
        *,
        reason: str = "",
        outputs: Iterable[OutputFile] = (),
        result: ResultSummary | None = None,
        owner: str | None = None,
    ) -> bool:
        """Record a terminal state. False when the job had already finished (or, with
        ``owner``, when that worker no longer holds its lease)."""
        if not state.is_terminal:
            raise ValueError(f"{state} is not a terminal state")
        now = utcnow()
        return self._update(
            _held_by(
                self._jobs,
                owner,
                sa.and_(self._jobs.c.id == job_id, self._jobs.c.state.in_(_ACTIVE)),
            ),
            state=state.value,
            reason=reason,
            outputs=[_output_to_json(o) for o in outputs],
            result=result.to_json() if result else None,
            lease_owner=None,
            lease_expires_at=None,
            finished_at=now,
            updated_at=now,
        )

    def requeue_interrupted(self) -> list[str]:
        """Put RUNNING jobs whose lease has expired back to QUEUED and return every queued
        job's id, oldest first.

        For a server that owns the only worker, at start-up (the single-machine default). A
        job whose lease is still live may be running in a worker that outlived a killed
        server; the reconciler takes it back once that lease expires."""
        jobs = self._jobs
        now = utcnow()
        self._update(
            sa.and_(
                jobs.c.state == JobState.RUNNING.value,
                sa.or_(jobs.c.lease_expires_at.is_(None), jobs.c.lease_expires_at <= now),
            ),
            state=JobState.QUEUED.value,
            lease_owner=None,
            lease_expires_at=None,
            dispatched_at=now,
        )
        with self._engine.connect() as conn:
            rows = conn.execute(
                sa.select(jobs.c.id)
                .where(jobs.c.state == JobState.QUEUED.value)
                .order_by(jobs.c.seq)
            ).all()
        return [r.id for r in rows]

    def find_by_key(self, key: str, tenant: str = DEFAULT_TENANT) -> Job | None:
        """The tenant's job recorded with this idempotency key (keys are per tenant)."""
        with self._engine.connect() as conn:
            return self._by_key(conn, key, tenant)

    def count_unfinished(self, tenant: str) -> int:
        """The tenant's jobs that are queued or running (its queued-jobs quota counts these)."""
        with self._engine.connect() as conn:
            return self._count_unfinished(conn, tenant)

    def _by_key(self, conn: Connection, key: str, tenant: str) -> Job | None:
        jobs = self._jobs
        row = conn.execute(
            sa.select(jobs).where(jobs.c.idempotency_key == key, jobs.c.tenant == tenant)
        ).first()
        return _job_from_row(row) if row else None

    def _count_unfinished(self, conn: Connection, tenant: str) -> int:
        jobs = self._jobs
        count = conn.execute(
            sa.select(sa.func.count())
            .select_from(jobs)
            .where(jobs.c.tenant == tenant, jobs.c.state.in_(_ACTIVE))
        ).scalar()
        return int(count or 0)

    def _transaction(
        self, tenant: str, *, locked: bool
    ) -> contextlib.AbstractContextManager[Connection]:
        return self._tenant_lock.hold(tenant) if locked else self._engine.begin()

    def _scoped(self, where: Any, tenant: str | None) -> Any:
        return where if tenant is None else sa.and_(where, self._jobs.c.tenant == tenant)

    @staticmethod
    def same_request(known: Job, new: NewJob) -> Job:
        if known.spec != new.spec or dict(known.labels) != dict(new.labels):
            raise AlreadyExists(
                f"idempotency key {new.idempotency_key!r} was used for job {known.id} with"
                " different parameters; use a new key for a different job"
            )
        return known

    def _update(self, where: Any, **values: Any) -> bool:
        values["version"] = self._jobs.c.version + 1
        with self._engine.begin() as conn:
            result = conn.execute(self._jobs.update().where(where).values(**values))
        return result.rowcount > 0


def _held_by(jobs: sa.Table, owner: str | None, where: Any) -> Any:
    return where if owner is None else sa.and_(where, jobs.c.lease_owner == owner)


def _output_to_json(output: OutputFile) -> dict[str, Any]:
    data = {"kind": output.kind.value, "sha256": output.sha256, "size_bytes": output.size_bytes}
    if output.bundle:
        data["bundle"] = True
    return data


class ParsedJobs:
    """Jobs parsed from their rows, by id and version: every change to a field a :class:`Job`
    carries bumps its version (the lease's renewals and re-dispatches, which do not, touch only
    columns it leaves out), so a job read again at the same version is the same job. Least
    recently used go first."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._jobs: OrderedDict[tuple[str, int], Job] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, job_id: str, version: int) -> Job | None:
        with self._lock:
            job = self._jobs.get((job_id, version))
            if job is not None:
                self._jobs.move_to_end((job_id, version))
            return job

    def parse(self, row: Row[Any]) -> Job:
        job = self.get(row.id, row.version) or _job_from_row(row)
        with self._lock:
            self._jobs[(job.id, job.version)] = job
            while len(self._jobs) > self._size:
                self._jobs.popitem(last=False)
        return job


def _output_from_json(data: Mapping[str, Any]) -> OutputFile:
    """Rows written before bundles came back have no ``bundle`` key: one ``.onnx`` each."""
    return OutputFile(
        OutputKind(data["kind"]),
        data["sha256"],
        int(data["size_bytes"]),
        bundle=bool(data.get("bundle", False)),
    )


def _job_from_row(row: Row[Any]) -> Job:
    created = as_utc(row.created_at)
    updated = as_utc(row.updated_at)
    assert created is not None
    assert updated is not None
    return Job(
        id=row.id,
        state=JobState(row.state),
        spec=JobSpec.from_json(row.spec),
        labels=dict(row.labels or {}),
        created_at=created,
        updated_at=updated,
        version=row.version,
        idempotency_key=row.idempotency_key,
        started_at=as_utc(row.started_at),
        finished_at=as_utc(row.finished_at),
        progress=Progress.from_json(row.progress),
        reason=row.reason or "",
        cancel_requested=bool(row.cancel_requested),
        attempts=row.attempts,
        outputs=tuple(_output_from_json(o) for o in row.outputs or ()),
        result=ResultSummary.from_json(row.result),
        tenant=row.tenant,
    )
