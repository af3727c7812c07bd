"""The reconciler: a loop in the server process that makes sure every accepted job ends.

Every few seconds it reads the queued and running jobs from the job store (the durable
record) and compares them with the broker and the workers' leases:

- a RUNNING job whose lease has expired has no live worker (killed, machine lost, cut off):
  it goes back to QUEUED and its message is sent again; the next worker resumes it from its
  last checkpoint. After ``max_attempts`` starts it FAILS instead (a job that kills its worker
  every time, e.g. by running out of memory, is not retried forever), and a job whose cancel
  was requested ends CANCELLED;
- a QUEUED job whose message is in no broker queue and not delivered to any worker (Redis
  restarted with an empty memory, a message lost with its worker) is sent again, once it was
  found missing on two scans in a row (a message being handed to a worker is briefly in
  neither place) and its last dispatch is older than a grace period.

Sending a job twice is harmless: a worker claims a job only with a conditional update
(:mod:`service.store.leases`), so a duplicate finds it running or finished and is dropped. Several
servers may reconcile at once; each change is a compare-and-set, so only one of them sends.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

import sqlalchemy as sa

from service.core.domain import JobState, utcnow
from service.core.errors import Unavailable
from service.core.periodic import Periodic
from service.core.settings import Settings
from service.store.checkpoints import CheckpointStore
from service.store.leases import ActiveJob, Leases

log = logging.getLogger(__name__)

REDIS_PRIORITY_SEPARATOR = "\x06\x16"
REDIS_PRIORITY_STEPS = (3, 6, 9)
"""kombu's Redis transport keeps priorities other than 0 in lists named ``queue\\x06\\x16N``."""
REDIS_UNACKED_KEY = "unacked"


class Dispatcher(Protocol):
    def enqueue(self, job_id: str) -> None:
        """Send the job's message; raise Unavailable when the broker cannot take it."""
        ...


class BrokerInspector(Protocol):
    def pending_job_ids(self) -> set[str]:
        """Ids of the jobs whose message waits in the queue or is delivered but not yet
        acknowledged. Raises when the broker cannot be read."""
        ...


@dataclass
class ReconcileReport:
    taken_back: list[str]
    sent_again: list[str]
    ended: list[str]


class Reconciler:
    def __init__(
        self,
        leases: Leases,
        dispatcher: Dispatcher,
        inspector: BrokerInspector | None,
        *,
        max_attempts: int,
        lease_timeout: float,
        interval: float,
        grace: float | None = None,
        checkpoints: CheckpointStore | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._leases = leases
        self._dispatcher = dispatcher
        self._inspector = inspector
        self._max_attempts = max_attempts
        self._lease_timeout = timedelta(seconds=lease_timeout)
        self._grace = timedelta(seconds=grace if grace is not None else max(2 * interval, 2.0))
        self._checkpoints = checkpoints
        self._clock = clock
        self._missing: dict[str, datetime] = {}
        self._periodic = Periodic("reconciler", self.run_once, interval)

    # --- one pass ------------------------------------------------------------------------------

    def run_once(self) -> ReconcileReport:
        report = ReconcileReport([], [], [])
        active = self._leases.active_jobs()
        now = self._clock()
        pending = self._pending(active)
        missing: dict[str, datetime] = {}
        for job in active:
            if job.state is JobState.RUNNING:
                self._check_running(job, now, report)
            elif pending is not None and job.id not in pending:
                self._check_queued(job, now, missing, report)
        self._missing = missing
        return report

    def _pending(self, active: Iterable[ActiveJob]) -> set[str] | None:
        if self._inspector is None or not any(j.state is JobState.QUEUED for j in active):
            return None
        try:
            return self._inspector.pending_job_ids()
        except Exception as exc:
            log.warning("reconciler: cannot read the broker (%s); will try again", exc)
            return None

    def _check_running(self, job: ActiveJob, now: datetime, report: ReconcileReport) -> None:
        if job.lease_live(now):
            return
        if job.lease_expires_at is None and now - job.updated_at < self._lease_timeout:
            return  # claimed without a lease (an older worker): give it one lease timeout
        if job.cancel_requested:
            self._end(job, JobState.CANCELLED, "the job was cancelled", now, report)
        elif job.attempts >= self._max_attempts:
            reason = (
                f"the job was started {job.attempts} times and its worker was lost each time"
                " (often: out of memory); try a smaller batch size or model"
            )
            self._end(job, JobState.FAILED, reason, now, report)
        elif self._leases.take_back(job, now):
            log.warning(
                "job %s: its worker (%s) stopped renewing its lease; queued again (attempt %d"
                " of %d done)",
                job.id,
                job.lease_owner or "unknown",
                job.attempts,
                self._max_attempts,
            )
            report.taken_back.append(job.id)
            self._send(job.id)

    def _check_queued(
        self,
        job: ActiveJob,
        now: datetime,
        missing: dict[str, datetime],
        report: ReconcileReport,
    ) -> None:
        if now - job.last_dispatch < self._grace:
            return
        if self._missing.get(job.id) != job.last_dispatch:
            missing[job.id] = job.last_dispatch  # first time seen missing: look again next pass
            return
        if self._leases.mark_dispatched(job, now):
            log.warning(
                "job %s: queued but its message is gone from the broker; sent again", job.id
            )
            report.sent_again.append(job.id)
            self._send(job.id)

    def _end(
        self, job: ActiveJob, state: JobState, reason: str, now: datetime, report: ReconcileReport
    ) -> None:
        if self._leases.end_abandoned(job, state, reason, now):
            log.warning("job %s: %s (%s)", job.id, state.value, reason)
            report.ended.append(job.id)
            if self._checkpoints is not None:
                self._checkpoints.discard(job.id)

    def _send(self, job_id: str) -> None:
        try:
            self._dispatcher.enqueue(job_id)
        except Unavailable as exc:
            # the job stays QUEUED in the store; a later pass finds its message missing
            log.warning("job %s could not be queued again: %s", job_id, exc)

    # --- the loop ------------------------------------------------------------------------------

    def start(self) -> Reconciler:
        self._periodic.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self._periodic.stop(timeout)
        close = getattr(self._inspector, "close", None)
        if callable(close):
            close()


# --- looking into brokers ---------------------------------------------------------------------


class RedisInspector:
    """Reads kombu's Redis layout: the queue is a list (one per priority step) of JSON
    messages, delivered but unacknowledged messages are the values of the ``unacked`` hash."""

    def __init__(self, url: str, queue: str, timeout: float = 5.0) -> None:
        import redis

        self._client = redis.Redis.from_url(
            url, socket_timeout=timeout, socket_connect_timeout=timeout
        )
        self._queue = queue

    def pending_job_ids(self) -> set[str]:
        keys = [self._queue] + [
            f"{self._queue}{REDIS_PRIORITY_SEPARATOR}{step}" for step in REDIS_PRIORITY_STEPS
        ]
        with self._client.pipeline(transaction=True) as pipe:
            for key in keys:
                pipe.lrange(key, 0, -1)
            pipe.hvals(REDIS_UNACKED_KEY)
            *queued, unacked = pipe.execute()
        ids = {_task_id(json.loads(raw)) for messages in queued for raw in messages}
        for raw in unacked:  # of every queue on this database; other ids are harmless
            ids.add(_task_id(json.loads(raw)[0]))
        ids.discard("")
        return ids

    def close(self) -> None:
        self._client.close()


class SqlAlchemyInspector:
    """Reads kombu's SQLAlchemy transport (the single-machine SQLite broker): a message waits
    while its row is visible. Delivered rows are hidden whether acknowledged or not, so a
    message lost with its worker counts as missing, which is what the reconciler needs."""

    def __init__(self, url: str, queue: str) -> None:
        self._engine = sa.create_engine(url, connect_args=_connect_args(url))
        self._queue = queue

    def pending_job_ids(self) -> set[str]:
        tables = sa.inspect(self._engine).get_table_names()
        if "kombu_message" not in tables or "kombu_queue" not in tables:
            return set()
        query = sa.text(
            "SELECT m.payload FROM kombu_message m JOIN kombu_queue q ON m.queue_id = q.id"
            " WHERE q.name = :queue AND m.visible"
        )
        with self._engine.connect() as conn:
            payloads = conn.execute(query, {"queue": self._queue}).scalars().all()
        ids = {_task_id(json.loads(payload)) for payload in payloads}
        ids.discard("")
        return ids

    def close(self) -> None:
        self._engine.dispose()


def inspector_for(broker_url: str, queue: str) -> BrokerInspector | None:
    """An inspector for the brokers whose layout we know; None for others (then only expired
    leases are reconciled, not lost messages of queued jobs)."""
    if broker_url.startswith(("redis://", "rediss://", "unix://")):
        return RedisInspector(broker_url, queue)
    if broker_url.startswith("sqla+"):
        return SqlAlchemyInspector(broker_url.removeprefix("sqla+"), queue)
    return None


def _connect_args(url: str) -> dict[str, Any]:
    return {"timeout": 30} if url.startswith("sqlite") else {}


def _task_id(message: Any) -> str:
    """The Celery task id (our job id) of a kombu message, protocol 2 or 1."""
    if not isinstance(message, dict):
        return ""
    headers = message.get("headers") or {}
    properties = message.get("properties") or {}
    return str(headers.get("id") or properties.get("correlation_id") or "")


def start_reconciler(
    settings: Settings, leases: Leases, dispatcher: Dispatcher, checkpoints: CheckpointStore
) -> Reconciler | None:
    """The server's reconciler thread, running; None when ``reconcile_interval`` is 0."""
    if settings.reconcile_interval <= 0:
        return None
    return Reconciler(
        leases,
        dispatcher,
        inspector_for(settings.broker_url, settings.queue),
        max_attempts=settings.max_attempts,
        lease_timeout=settings.lease_timeout,
        interval=settings.reconcile_interval,
        checkpoints=checkpoints,
    ).start()
