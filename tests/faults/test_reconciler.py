"""The reconciler's decisions, one pass at a time, on a real job store; and the broker
inspectors against a real Redis and the SQLite broker with messages Celery really sent."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from faults_support import RedisServer

from service.core.domain import JobSpec, JobState, NewJob, utcnow
from service.core.errors import Unavailable
from service.core.settings import Settings
from service.jobs.queue import CeleryJobQueue
from service.jobs.reconciler import Reconciler, RedisInspector, SqlAlchemyInspector
from service.store.checkpoints import CheckpointFiles
from service.store.db import Database
from service.store.jobstore import JobStore
from workers.celery_app import create_app
from workers.engine.spec import Method, ThreatModel, TrainingConfig

LEASE = 10.0


class Dispatcher:
    def __init__(self) -> None:
        self.sent: list[str] = []
        self.down = False

    def enqueue(self, job_id: str) -> None:
        if self.down:
            raise Unavailable("broker down")
        self.sent.append(job_id)


class Broker:
    def __init__(self) -> None:
        self.pending: set[str] = set()

    def pending_job_ids(self) -> set[str]:
        return set(self.pending)


class Clock:
    def __init__(self) -> None:
        self.now = utcnow()

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def _job(store: JobStore) -> str:
    spec = JobSpec(
        model_id="model-x",
        train_dataset_id="dataset-y",
        training=TrainingConfig(method=Method.FGSM),
        threat=ThreatModel(eps=0.1),
    )
    job, _ = store.create(NewJob(spec))
    return job.id


@pytest.fixture
def rig(database: Database, tmp_path: Path) -> tuple[JobStore, Dispatcher, Broker, Clock, Path]:
    return JobStore(database), Dispatcher(), Broker(), Clock(), tmp_path / "checkpoints"


def _reconciler(rig: tuple[JobStore, Dispatcher, Broker, Clock, Path], **kw: object) -> Reconciler:
    store, dispatcher, broker, clock, folder = rig
    options: dict[str, object] = {
        "max_attempts": 3,
        "lease_timeout": LEASE,
        "interval": 1.0,
        "grace": 2.0,
        "checkpoints": CheckpointFiles(folder),
        "clock": clock,
    }
    options.update(kw)
    return Reconciler(store.leases, dispatcher, broker, **options)  # type: ignore[arg-type]


def test_a_running_job_with_a_live_lease_is_left_alone(rig) -> None:  # type: ignore[no-untyped-def]
    store, dispatcher, _, clock, _ = rig
    job_id = _job(store)
    store.leases.claim(job_id, "w", max_attempts=3, lease_seconds=LEASE, now=clock())

    clock.advance(LEASE - 1)
    report = _reconciler(rig).run_once()

    assert report.taken_back == []
    assert dispatcher.sent == []
    assert store.get(job_id).state is JobState.RUNNING


def test_a_running_job_whose_lease_expired_is_queued_and_sent_again(rig) -> None:  # type: ignore[no-untyped-def]
    store, dispatcher, _, clock, _ = rig
    job_id = _job(store)
    store.leases.claim(job_id, "w", max_attempts=3, lease_seconds=LEASE, now=clock())
    clock.advance(LEASE + 1)

    first = _reconciler(rig).run_once()
    second = _reconciler(rig).run_once()

    assert first.taken_back == [job_id]
    assert second.taken_back == []
    assert dispatcher.sent == [job_id]
    job = store.get(job_id)
    assert (job.state, job.attempts) == (JobState.QUEUED, 1)


def test_a_job_that_keeps_losing_its_worker_fails_and_its_checkpoints_go(rig) -> None:  # type: ignore[no-untyped-def]
    store, dispatcher, _, clock, folder = rig
    job_id = _job(store)
    checkpoints = CheckpointFiles(folder)
    checkpoints.path(job_id).parent.mkdir(parents=True)
    checkpoints.path(job_id).write_bytes(b"state")
    for _ in range(3):
        clock.advance(LEASE + 1)
        assert store.leases.claim(job_id, "w", max_attempts=3, lease_seconds=LEASE, now=clock())
    clock.advance(LEASE + 1)

    report = _reconciler(rig).run_once()

    job = store.get(job_id)
    assert report.ended == [job_id]
    assert job.state is JobState.FAILED
    assert "started 3 times and its worker was lost each time" in job.reason
    assert dispatcher.sent == []
    assert not checkpoints.path(job_id).parent.exists()


def test_a_cancelled_job_whose_worker_died_ends_cancelled(rig) -> None:  # type: ignore[no-untyped-def]
    store, dispatcher, _, clock, _ = rig
    job_id = _job(store)
    store.leases.claim(job_id, "w", max_attempts=3, lease_seconds=LEASE, now=clock())
    store.request_cancel(job_id)
    clock.advance(LEASE + 1)

    _reconciler(rig).run_once()

    assert store.get(job_id).state is JobState.CANCELLED
    assert dispatcher.sent == []


def test_a_queued_job_missing_from_the_broker_is_sent_again_after_two_passes(rig) -> None:  # type: ignore[no-untyped-def]
    store, dispatcher, broker, clock, _ = rig
    present, lost = _job(store), _job(store)
    broker.pending = {present}
    reconciler = _reconciler(rig)

    reconciler.run_once()  # within the grace period after submission
    clock.advance(3)
    first = reconciler.run_once()  # missing once: could be on its way to a worker
    clock.advance(1)
    second = reconciler.run_once()
    clock.advance(1)
    third = reconciler.run_once()  # just sent: within the grace period again

    assert first.sent_again == []
    assert second.sent_again == [lost]
    assert third.sent_again == []
    assert dispatcher.sent == [lost]


def test_a_message_that_reappears_is_not_sent_twice(rig) -> None:  # type: ignore[no-untyped-def]
    store, dispatcher, broker, clock, _ = rig
    job_id = _job(store)
    reconciler = _reconciler(rig)
    clock.advance(3)
    reconciler.run_once()
    broker.pending = {job_id}  # it was only being handed to a worker
    clock.advance(1)
    reconciler.run_once()
    broker.pending = set()
    clock.advance(1)
    reconciler.run_once()

    assert dispatcher.sent == []


def test_of_two_servers_sending_a_lost_job_only_one_does(rig) -> None:  # type: ignore[no-untyped-def]
    store, _, _, clock, _ = rig
    job_id = _job(store)
    clock.advance(3)
    seen = store.leases.read(job_id)  # both servers read the job before either sends it
    assert seen is not None

    assert store.leases.mark_dispatched(seen, clock())
    assert not store.leases.mark_dispatched(seen, clock())


def test_an_unreachable_broker_leaves_the_job_for_a_later_pass(rig) -> None:  # type: ignore[no-untyped-def]
    store, dispatcher, _, clock, _ = rig
    job_id = _job(store)
    store.leases.claim(job_id, "w", max_attempts=3, lease_seconds=LEASE, now=clock())
    clock.advance(LEASE + 1)
    dispatcher.down = True
    reconciler = _reconciler(rig)

    reconciler.run_once()  # taken back, but the message could not be sent
    dispatcher.down = False
    for _ in range(3):
        clock.advance(2)
        reconciler.run_once()

    assert dispatcher.sent == [job_id]
    assert store.get(job_id).state is JobState.QUEUED


# --- inspectors on real brokers ---------------------------------------------------------------


def _settings(tmp_path: Path, broker_url: str, queue: str) -> Settings:
    return Settings(
        state_dir=tmp_path,
        artifact_dir=tmp_path / "artifacts",
        database_url=f"sqlite:///{tmp_path / 'jobs.sqlite'}",
        broker_url=broker_url,
        queue=queue,
    )


def test_the_redis_inspector_sees_queued_and_delivered_messages(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    queue = f"tempering.inspect-{uuid.uuid4().hex[:8]}"
    app = create_app(_settings(tmp_path, redis_server.url, queue))
    sender = CeleryJobQueue(app, queue)
    inspector = RedisInspector(redis_server.url, queue)
    waiting, delivered = uuid.uuid4().hex, uuid.uuid4().hex
    sender.enqueue(waiting)
    sender.enqueue(delivered)

    assert {waiting, delivered} <= inspector.pending_job_ids()

    with app.connection_for_read() as connection:
        consumer_queue = connection.SimpleQueue(queue, no_ack=False)
        message = consumer_queue.get(timeout=5)  # delivered, not acknowledged: in `unacked`
        assert {waiting, delivered} <= inspector.pending_job_ids()
        message.ack()
        assert len(inspector.pending_job_ids() & {waiting, delivered}) == 1
        consumer_queue.close()
    inspector.close()


def test_the_sqlite_broker_inspector_sees_waiting_messages(tmp_path: Path) -> None:
    queue = f"tempering.inspect-{uuid.uuid4().hex[:8]}"
    url = f"sqla+sqlite:///{tmp_path / 'broker.sqlite'}"
    sender = CeleryJobQueue(create_app(_settings(tmp_path, url, queue)), queue)
    inspector = SqlAlchemyInspector(url.removeprefix("sqla+"), queue)
    assert inspector.pending_job_ids() == set()
    job_id = uuid.uuid4().hex

    sender.enqueue(job_id)

    assert inspector.pending_job_ids() == {job_id}
    inspector.close()
