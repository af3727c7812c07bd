"""Jobs as Prometheus sees them: read from the job store when scraped, not counted in memory.

The job store is the one place where a job's state lives, and workers, not the server, move jobs
along; so the figures come from aggregate queries at scrape time and stay true across server
replicas and restarts. Each scrape runs two GROUP BY queries whose answers are bounded by
states x methods (x buckets), whatever the number of jobs. Both read only the jobs table's
``method`` column and its index on ``(state, method, started_at, finished_at)``
(:mod:`service.store.method_schema`), never the spec JSON: a scrape reads an index, not every row.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy.exc import SQLAlchemyError

from service.core.domain import TERMINAL_STATES, JobState
from service.store.db import Database
from workers.engine.spec import Method

log = logging.getLogger(__name__)

DURATION_BUCKETS: tuple[float, ...] = (
    10, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 14400, 28800, 86400,
)  # fmt: skip
"""Seconds: hardening jobs last from seconds (a digits model) to a day (a large GPU model)."""
UNKNOWN = "unknown"
"""The method label of a job whose row has none."""


@dataclass(frozen=True)
class DurationCounts:
    """Finished jobs of one method and final state: how many, their total run time, and how
    many ran at most each bucket's bound (cumulative, as Prometheus buckets are)."""

    method: str
    state: str
    count: int
    total_seconds: float
    at_most: tuple[int, ...]


def count_jobs(database: Database) -> dict[tuple[str, str], int]:
    """Jobs by (state, method)."""
    jobs = database.tables.jobs
    query = sa.select(jobs.c.state, jobs.c.method, sa.func.count()).group_by(
        jobs.c.state, jobs.c.method
    )
    with database.engine.connect() as conn:
        return {(state, name or UNKNOWN): int(n) for state, name, n in conn.execute(query)}


def finished_durations(
    database: Database, buckets: Sequence[float] = DURATION_BUCKETS
) -> list[DurationCounts]:
    """Run time (first start to finish) of the finished jobs that started, by method and
    final state."""
    jobs = database.tables.jobs
    ran = (
        sa.select(
            jobs.c.method,
            jobs.c.state,
            _seconds_between(database, jobs.c.started_at, jobs.c.finished_at).label("seconds"),
        )
        .where(
            jobs.c.state.in_(sorted(s.value for s in TERMINAL_STATES)),
            jobs.c.started_at.is_not(None),
            jobs.c.finished_at.is_not(None),
        )
        .subquery()
    )
    bucket_counts = [
        sa.func.sum(sa.case((ran.c.seconds <= bound, 1), else_=0)) for bound in buckets
    ]
    query = sa.select(
        ran.c.method, ran.c.state, sa.func.count(), sa.func.sum(ran.c.seconds), *bucket_counts
    ).group_by(ran.c.method, ran.c.state)
    with database.engine.connect() as conn:
        rows = conn.execute(query).all()
    return [
        DurationCounts(
            method=row[0] or UNKNOWN,
            state=row[1],
            count=int(row[2]),
            total_seconds=float(row[3] or 0.0),
            at_most=tuple(int(n or 0) for n in row[4:]),
        )
        for row in rows
    ]


def _seconds_between(database: Database, start: Any, end: Any) -> Any:
    dialect = database.engine.dialect.name
    if dialect == "sqlite":
        return (sa.func.julianday(end) - sa.func.julianday(start)) * 86400.0
    if dialect == "postgresql":
        return sa.extract("epoch", end - start)
    raise NotImplementedError(f"job durations are not computed on {dialect}")


class JobStoreCollector(Collector):
    """``tempering_jobs``, ``tempering_queue_depth`` and ``tempering_job_duration_seconds``,
    plus ``tempering_job_store_up`` (0 when the store could not be read for this scrape)."""

    def __init__(self, database: Database, buckets: Sequence[float] = DURATION_BUCKETS) -> None:
        self._database = database
        self._buckets = tuple(buckets)

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily(
            "tempering_job_store_up", "1 when this scrape could read the job store, else 0"
        )
        try:
            counts = count_jobs(self._database)
            durations = finished_durations(self._database, self._buckets)
        except SQLAlchemyError:
            log.warning("metrics: could not read the job store", exc_info=True)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield from self._jobs(counts)
        yield self._durations(durations)

    @staticmethod
    def _jobs(counts: dict[tuple[str, str], int]) -> Iterator[Metric]:
        jobs = GaugeMetricFamily(
            "tempering_jobs", "Jobs in the store by state and method", labels=("state", "method")
        )
        methods = sorted({m.value for m in Method} | {method for _, method in counts})
        for state in JobState:
            for method in methods:
                jobs.add_metric([state.value, method], counts.get((state.value, method), 0))
        yield jobs
        queued = sum(n for (state, _), n in counts.items() if state == JobState.QUEUED.value)
        yield GaugeMetricFamily(
            "tempering_queue_depth", "Jobs waiting for a worker (QUEUED in the store)", value=queued
        )

    def _durations(self, durations: list[DurationCounts]) -> Metric:
        family = HistogramMetricFamily(
            "tempering_job_duration_seconds",
            "Run time of finished jobs, from first start to finish, by method and final state",
            labels=["method", "state"],
        )
        for entry in durations:
            bounds = zip(self._buckets, entry.at_most, strict=True)
            buckets = [(_bound(bound), float(n)) for bound, n in bounds]
            family.add_metric(
                [entry.method, entry.state],
                buckets=[*buckets, ("+Inf", float(entry.count))],
                sum_value=entry.total_seconds,
            )
        return family


def _bound(seconds: float) -> str:
    return repr(float(seconds))
