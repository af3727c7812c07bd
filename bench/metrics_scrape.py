"""Cost of one scrape of the server's job metrics against a job store of many jobs.

Fills a fresh job store (a SQLite file in a temporary directory, or ``--database-url`` with a
unique table prefix, dropped afterwards) with ``--jobs`` jobs over the four methods, most of
them finished with a run time, then times ``--scrapes`` collections of
:class:`service.job_metrics.JobStoreCollector` (the two GROUP BY queries a Prometheus scrape
runs) and prints the median and the worst.

    python bench/metrics_scrape.py                        # 100 000 jobs on SQLite
    python bench/metrics_scrape.py --jobs 20000 \\
        --database-url postgresql+psycopg://postgres@127.0.0.1:5432/test
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest

from service.api.job_metrics import JobStoreCollector
from service.core.domain import JobSpec, JobState, utcnow
from service.store.db import Database
from workers.engine.spec import Method, ThreatModel, TrainingConfig

STATES = [JobState.SUCCEEDED] * 7 + [JobState.FAILED, JobState.CANCELLED, JobState.QUEUED]


def fill(database: Database, jobs: int, seed: int = 0) -> None:
    rng = random.Random(seed)
    table = database.tables.jobs
    now = utcnow()
    rows: list[dict[str, Any]] = []
    for _ in range(jobs):
        method = rng.choice(list(Method))
        state = rng.choice(STATES)
        started = now - timedelta(seconds=rng.uniform(0, 86_400 * 30))
        spec = JobSpec(
            model_id="m",
            train_dataset_id="d",
            training=TrainingConfig(method=method),
            threat=ThreatModel(eps=0.1),
        )
        rows.append(
            {
                "id": uuid.uuid4().hex,
                "tenant": "default",
                "state": state.value,
                "spec": spec.to_json(),
                "method": method.value,
                "labels": {},
                "created_at": started,
                "updated_at": started,
                "started_at": None if state is JobState.QUEUED else started,
                "finished_at": (
                    None
                    if state is JobState.QUEUED
                    else started + timedelta(seconds=rng.lognormvariate(6, 1.5))
                ),
                "version": 1,
                "reason": "",
                "cancel_requested": False,
                "attempts": 1,
                "outputs": [],
            }
        )
    with database.engine.begin() as conn:
        for start in range(0, len(rows), 5_000):
            conn.execute(table.insert(), rows[start : start + 5_000])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--scrapes", type=int, default=20)
    parser.add_argument("--database-url", help="default: a SQLite file in a temporary directory")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        url = args.database_url or f"sqlite:///{Path(tmp) / 'jobs.sqlite'}"
        database = Database.open(url, f"bench{uuid.uuid4().hex[:8]}_")
        try:
            started = time.perf_counter()
            fill(database, args.jobs)
            print(f"{args.jobs} jobs written in {time.perf_counter() - started:.1f} s")
            registry = CollectorRegistry()
            registry.register(JobStoreCollector(database))
            seconds = []
            for _ in range(args.scrapes):
                started = time.perf_counter()
                body = generate_latest(registry)
                seconds.append(time.perf_counter() - started)
            print(
                f"scrape of {len(body)} bytes on {database.engine.dialect.name}:"
                f" median {statistics.median(seconds) * 1000:.1f} ms,"
                f" worst {max(seconds) * 1000:.1f} ms over {args.scrapes} scrapes"
            )
        finally:
            database.drop()
            database.close()


if __name__ == "__main__":
    main()
