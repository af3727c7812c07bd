"""Leases: which worker runs a job, for how much longer, and how another takes it over.

A worker that claims a job writes its own ``lease_owner`` and a ``lease_expires_at`` a lease
timeout ahead, and a :class:`LeaseKeeper` thread pushes that time forward every heartbeat
interval while the job runs. A lease that has expired means the worker is gone (killed, its
machine lost, cut off from the database): the server's reconciler
(:mod:`service.jobs.reconciler`) queues the job again, and the next worker resumes it from its last
checkpoint.

One job never runs twice at the same time because every step is one conditional ``UPDATE``:

- a claim succeeds only if nobody holds a live lease and ``attempts`` is still the value the
  claimer read (so of two concurrent claimers exactly one wins, and the attempt is counted);
- the reconciler takes a job back only if its lease is still expired and ``attempts`` and the
  owner are still what it read;
- a worker renews, records progress and finishes only while it is still the owner; a worker
  that cannot renew within the lease timeout (or finds another owner) stops at the next batch
  and leaves the job alone.

The columns are defined in :mod:`service.store.lease_schema`.

Times come from the clock of whichever process writes them, so the machines of a cluster must
keep their clocks in step (NTP); a lease timeout of many heartbeats absorbs small skews.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from service.core.domain import Job, JobState, utcnow
from service.store.db import as_utc

log = logging.getLogger(__name__)

_ACTIVE = (JobState.QUEUED.value, JobState.RUNNING.value)


def new_owner_id() -> str:
    """A name for one attempt of one worker process: host, pid and a random part."""
    return f"{socket.gethostname()[:120]}:{os.getpid()}:{uuid.uuid4().hex[:12]}"


@dataclass(frozen=True)
class ActiveJob:
    """What the reconciler reads about a queued or running job."""

    id: str
    state: JobState
    attempts: int
    cancel_requested: bool
    lease_owner: str | None
    lease_expires_at: datetime | None
    dispatched_at: datetime | None
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    time_limit_seconds: float

    def lease_live(self, now: datetime) -> bool:
        return self.lease_expires_at is not None and self.lease_expires_at > now

    @property
    def last_dispatch(self) -> datetime:
        return self.dispatched_at or self.created_at


class Leases:
    def __init__(self, engine: Engine, jobs: sa.Table, get: Callable[[str], Job]) -> None:
        self._engine = engine
        self._jobs = jobs
        self._get = get

    # --- the worker's side -------------------------------------------------------------------

    def claim(
        self,
        job_id: str,
        owner: str,
        *,
        max_attempts: int,
        lease_seconds: float,
        now: datetime | None = None,
    ) -> Job | None:
        """Move the job to RUNNING under ``owner``'s lease and count the attempt. None when it
        is finished, being cancelled, out of attempts, or held by a live lease."""
        now = now or utcnow()
        seen = self.read(job_id)
        if (
            seen is None
            or seen.cancel_requested
            or seen.attempts >= max_attempts
            or seen.lease_live(now)
        ):
            return None
        jobs = self._jobs
        changed = self._update(
            sa.and_(
                jobs.c.id == job_id,
                jobs.c.state.in_(_ACTIVE),
                jobs.c.attempts == seen.attempts,
                sa.not_(jobs.c.cancel_requested),
                _lease_free(jobs, now),
            ),
            bump=True,
            state=JobState.RUNNING.value,
            attempts=jobs.c.attempts + 1,
            lease_owner=owner,
            lease_expires_at=now + timedelta(seconds=lease_seconds),
            started_at=sa.func.coalesce(jobs.c.started_at, now),
            updated_at=now,
        )
        return self._get(job_id) if changed else None

    def renew(
        self, job_id: str, owner: str, lease_seconds: float, run_seconds: float | None = None
    ) -> bool:
        """Push the lease forward and, when given, record how long the job has run over all its
        attempts. False when ``owner`` no longer holds the job (another worker took it over,
        the reconciler queued it again, or it ended)."""
        jobs = self._jobs
        values: dict[str, Any] = {"lease_expires_at": utcnow() + timedelta(seconds=lease_seconds)}
        if run_seconds is not None:
            values["run_seconds"] = run_seconds
        return self._update(
            sa.and_(
                jobs.c.id == job_id,
                jobs.c.state == JobState.RUNNING.value,
                jobs.c.lease_owner == owner,
            ),
            bump=False,
            **values,
        )

    def run_seconds(self, job_id: str) -> float:
        """How long the job has run over its attempts, as of its last heartbeat."""
        with self._engine.connect() as conn:
            value = conn.execute(
                sa.select(self._jobs.c.run_seconds).where(self._jobs.c.id == job_id)
            ).scalar()
        return float(value or 0.0)

    # --- the reconciler's side ---------------------------------------------------------------

    def active_jobs(self) -> list[ActiveJob]:
        """Every queued or running job, oldest first."""
        stmt = self._select_active().order_by(self._jobs.c.seq)
        with self._engine.connect() as conn:
            return [_active(row) for row in conn.execute(stmt)]

    def read(self, job_id: str) -> ActiveJob | None:
        stmt = self._select_active().where(self._jobs.c.id == job_id)
        with self._engine.connect() as conn:
            row = conn.execute(stmt).first()
        return _active(row) if row is not None else None

    def _select_active(self) -> sa.Select[Any]:
        """The columns an :class:`ActiveJob` is made of, of queued and running jobs."""
        jobs = self._jobs
        return sa.select(
            jobs.c.id,
            jobs.c.state,
            jobs.c.attempts,
            jobs.c.cancel_requested,
            jobs.c.lease_owner,
            jobs.c.lease_expires_at,
            jobs.c.dispatched_at,
            jobs.c.created_at,
            jobs.c.updated_at,
            jobs.c.started_at,
            jobs.c.spec,
        ).where(jobs.c.state.in_(_ACTIVE))

    def take_back(self, seen: ActiveJob, now: datetime | None = None) -> bool:
        """RUNNING -> QUEUED for a job whose lease expired, if nothing changed since ``seen``
        was read. The caller then sends its message again."""
        now = now or utcnow()
        return self._update(
            self._unchanged_and_expired(seen, now),
            bump=True,
            state=JobState.QUEUED.value,
            lease_owner=None,
            lease_expires_at=None,
            dispatched_at=now,
            updated_at=now,
        )

    def end_abandoned(
        self, seen: ActiveJob, state: JobState, reason: str, now: datetime | None = None
    ) -> bool:
        """End a RUNNING job whose lease expired (out of attempts, or cancelled meanwhile)."""
        now = now or utcnow()
        return self._update(
            self._unchanged_and_expired(seen, now),
            bump=True,
            state=state.value,
            reason=reason,
            lease_owner=None,
            lease_expires_at=None,
            finished_at=now,
            updated_at=now,
        )

    def mark_dispatched(self, seen: ActiveJob, now: datetime | None = None) -> bool:
        """Record that a QUEUED job's message is sent again; False if another server did so
        since ``seen`` was read (then it must not be sent twice)."""
        now = now or utcnow()
        jobs = self._jobs
        same_dispatch = (
            jobs.c.dispatched_at.is_(None)
            if seen.dispatched_at is None
            else jobs.c.dispatched_at == seen.dispatched_at
        )
        return self._update(
            sa.and_(jobs.c.id == seen.id, jobs.c.state == JobState.QUEUED.value, same_dispatch),
            bump=False,
            dispatched_at=now,
        )

    def _unchanged_and_expired(self, seen: ActiveJob, now: datetime) -> Any:
        jobs = self._jobs
        same_owner = (
            jobs.c.lease_owner.is_(None)
            if seen.lease_owner is None
            else jobs.c.lease_owner == seen.lease_owner
        )
        return sa.and_(
            jobs.c.id == seen.id,
            jobs.c.state == JobState.RUNNING.value,
            jobs.c.attempts == seen.attempts,
            same_owner,
            _lease_free(jobs, now),
        )

    def _update(self, where: Any, *, bump: bool, **values: Any) -> bool:
        if bump:
            values["version"] = self._jobs.c.version + 1
        with self._engine.begin() as conn:
            result = conn.execute(self._jobs.update().where(where).values(**values))
        return result.rowcount > 0


def _lease_free(jobs: sa.Table, now: datetime) -> Any:
    return sa.or_(jobs.c.lease_expires_at.is_(None), jobs.c.lease_expires_at <= now)


def _active(row: Any) -> ActiveJob:
    created = as_utc(row.created_at)
    updated = as_utc(row.updated_at)
    assert created is not None
    assert updated is not None
    spec = row.spec or {}
    return ActiveJob(
        id=row.id,
        state=JobState(row.state),
        attempts=row.attempts,
        cancel_requested=bool(row.cancel_requested),
        lease_owner=row.lease_owner,
        lease_expires_at=as_utc(row.lease_expires_at),
        dispatched_at=as_utc(row.dispatched_at),
        created_at=created,
        updated_at=updated,
        started_at=as_utc(row.started_at),
        time_limit_seconds=float(spec.get("time_limit_seconds") or 0.0),
    )


class LeaseKeeper:
    """Renews a job's lease every ``interval`` seconds from a background thread while the job
    runs, and with it the job's run time: ``run_seconds_before`` (earlier attempts) plus the
    time since the keeper was made. ``lost`` turns true, and stays so, when the lease was taken
    away or could not be renewed for ``timeout`` seconds; the job must then stop without
    recording anything."""

    def __init__(
        self,
        leases: Leases,
        job_id: str,
        owner: str,
        *,
        interval: float,
        timeout: float,
        run_seconds_before: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._leases = leases
        self._job_id = job_id
        self._owner = owner
        self._interval = interval
        self._timeout = timeout
        self._clock = clock
        self._stop = threading.Event()
        self._lost = threading.Event()
        self._last_renewed = clock()
        self._run_seconds_before = run_seconds_before
        self._attempt_started = self._last_renewed
        self._thread = threading.Thread(target=self._run, name=f"lease-{job_id[:12]}", daemon=True)

    @property
    def lost(self) -> bool:
        return self._lost.is_set()

    def __enter__(self) -> LeaseKeeper:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    def renew_now(self) -> None:
        try:
            run_seconds = self._run_seconds_before + self._clock() - self._attempt_started
            renewed = self._leases.renew(self._job_id, self._owner, self._timeout, run_seconds)
        except SQLAlchemyError:
            if self._clock() - self._last_renewed >= self._timeout - self._interval:
                log.error(
                    "job %s: could not renew its lease for %.0f s; stopping it so that no other"
                    " worker runs it at the same time",
                    self._job_id,
                    self._clock() - self._last_renewed,
                )
                self._lost.set()
            else:
                log.warning("job %s: could not renew its lease", self._job_id, exc_info=True)
            return
        if renewed:
            self._last_renewed = self._clock()
        else:
            log.warning("job %s: its lease was taken over or ended; stopping", self._job_id)
            self._lost.set()

    def _run(self) -> None:
        while not self._stop.wait(self._interval) and not self.lost:
            self.renew_now()
