"""Leases in the job store (SQLite and the real PostgreSQL): one live lease per job, claims
that race have one winner, and a worker that lost its lease can no longer write anything."""

from __future__ import annotations

import threading
from datetime import timedelta

from service.core.domain import JobSpec, JobState, NewJob, Progress, utcnow
from service.store.db import Database
from service.store.jobstore import JobStore
from service.store.leases import LeaseKeeper
from workers.engine.spec import Method, ThreatModel, TrainingConfig

LEASE = 30.0


def _job(store: JobStore) -> str:
    spec = JobSpec(
        model_id="model-x",
        train_dataset_id="dataset-y",
        training=TrainingConfig(method=Method.FGSM),
        threat=ThreatModel(eps=0.1),
    )
    job, _ = store.create(NewJob(spec))
    return job.id


def test_a_live_lease_keeps_other_workers_out_until_it_expires(database: Database) -> None:
    store = JobStore(database)
    leases = store.leases
    job_id = _job(store)

    first = leases.claim(job_id, "a", max_attempts=3, lease_seconds=LEASE)
    second = leases.claim(job_id, "b", max_attempts=3, lease_seconds=LEASE)
    later = utcnow() + timedelta(seconds=LEASE + 1)
    taken_over = leases.claim(job_id, "b", max_attempts=3, lease_seconds=LEASE, now=later)

    assert first is not None
    assert (first.state, first.attempts) == (JobState.RUNNING, 1)
    assert second is None
    assert taken_over is not None
    assert taken_over.attempts == 2
    assert taken_over.started_at == first.started_at


def test_concurrent_claims_have_exactly_one_winner(database: Database) -> None:
    store = JobStore(database)
    job_id = _job(store)
    barrier = threading.Barrier(6)
    won: list[str] = []

    def claim(owner: str) -> None:
        barrier.wait()
        if store.leases.claim(job_id, owner, max_attempts=3, lease_seconds=LEASE):
            won.append(owner)

    threads = [threading.Thread(target=claim, args=(f"w{i}",)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(won) == 1
    assert store.get(job_id).attempts == 1


def test_only_the_owner_renews_records_progress_and_finishes(database: Database) -> None:
    store = JobStore(database)
    job_id = _job(store)
    store.leases.claim(job_id, "a", max_attempts=3, lease_seconds=LEASE)

    assert store.leases.renew(job_id, "a", LEASE)
    assert not store.leases.renew(job_id, "b", LEASE)
    assert not store.record_progress(job_id, Progress(stage="training"), owner="b")
    assert store.record_progress(job_id, Progress(stage="training"), owner="a")
    assert not store.finish(job_id, JobState.SUCCEEDED, owner="b")
    assert store.finish(job_id, JobState.SUCCEEDED, owner="a")
    assert not store.leases.renew(job_id, "a", LEASE), "a finished job has no lease"


def test_a_job_taken_back_is_lost_to_its_old_worker(database: Database) -> None:
    store = JobStore(database)
    job_id = _job(store)
    leases = store.leases
    leases.claim(job_id, "a", max_attempts=3, lease_seconds=LEASE)
    seen = leases.read(job_id)
    assert seen is not None
    later = utcnow() + timedelta(seconds=LEASE + 1)

    assert not leases.take_back(seen), "the lease is still live"
    assert leases.take_back(seen, later)
    assert not leases.take_back(seen, later), "a second reconciler finds it changed"
    job = store.get(job_id)
    assert job.state is JobState.QUEUED
    assert not leases.renew(job_id, "a", LEASE)
    assert not store.finish(job_id, JobState.SUCCEEDED, owner="a")


def test_renewal_heartbeats_are_invisible_to_watchers(database: Database) -> None:
    store = JobStore(database)
    job_id = _job(store)
    store.leases.claim(job_id, "a", max_attempts=3, lease_seconds=LEASE)
    version = store.get(job_id).version

    store.leases.renew(job_id, "a", LEASE)

    assert store.get(job_id).version == version


def test_requeue_at_start_up_leaves_jobs_with_a_live_lease(database: Database) -> None:
    store = JobStore(database)
    live, dead = _job(store), _job(store)
    store.leases.claim(live, "a", max_attempts=3, lease_seconds=LEASE)
    store.leases.claim(dead, "b", max_attempts=3, lease_seconds=-1)

    assert store.requeue_interrupted() == [dead]
    assert store.get(live).state is JobState.RUNNING


def test_the_keeper_notices_a_lost_lease(database: Database) -> None:
    store = JobStore(database)
    job_id = _job(store)
    leases = store.leases
    leases.claim(job_id, "a", max_attempts=3, lease_seconds=LEASE)
    keeper = LeaseKeeper(leases, job_id, "a", interval=0.05, timeout=LEASE)

    with keeper:
        keeper.renew_now()
        assert not keeper.lost
        seen = leases.read(job_id)
        assert seen is not None
        leases.take_back(seen, utcnow() + timedelta(seconds=LEASE + 1))
        keeper.renew_now()

    assert keeper.lost


def test_a_worker_cut_off_from_the_database_gives_up_its_job() -> None:
    from sqlalchemy.exc import OperationalError

    class Unreachable:
        def renew(self, *_: object) -> bool:
            raise OperationalError("renew", {}, Exception("connection refused"))

    now = [0.0]
    keeper = LeaseKeeper(
        Unreachable(),  # type: ignore[arg-type]
        "job",
        "a",
        interval=2.0,
        timeout=10.0,
        clock=lambda: now[0],
    )
    now[0] = 5.0
    keeper.renew_now()
    assert not keeper.lost
    now[0] = 8.5
    keeper.renew_now()
    assert keeper.lost, "after timeout - interval without renewal, the reconciler may act"
