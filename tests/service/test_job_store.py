"""The job store on SQLite and on the real PostgreSQL (each test runs on both)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from service.core.domain import (
    JobQuery,
    JobSpec,
    JobState,
    NewJob,
    OutputFile,
    OutputKind,
    Progress,
)
from service.core.errors import AlreadyExists, FailedPrecondition, NotFound
from service.store.db import Database
from service.store.jobstore import JobStore, ParsedJobs
from workers.engine.spec import Method, ThreatModel, TrainingConfig


def spec(**training: object) -> JobSpec:
    return JobSpec(
        model_id="model-abc",
        train_dataset_id="dataset-def",
        training=TrainingConfig(method=Method.FGSM, **training),  # type: ignore[arg-type]
        threat=ThreatModel(eps=0.1),
    )


@pytest.fixture
def store(database: Database) -> JobStore:
    return JobStore(database)


def test_created_job_reads_back_queued_with_its_spec_and_labels(store: JobStore) -> None:
    job, created = store.create(NewJob(spec(epochs=3), labels={"team": "vision"}))

    assert created
    fetched = store.get(job.id)
    assert fetched.state is JobState.QUEUED
    assert fetched.spec == spec(epochs=3)
    assert fetched.labels == {"team": "vision"}
    assert fetched.created_at.tzinfo is not None
    assert fetched.attempts == 0


def test_a_spec_left_to_the_recipe_reads_back_with_its_fields_still_unset(
    store: JobStore,
) -> None:
    job, _ = store.create(NewJob(spec(eps_warmup_epochs=0.0)))

    training = store.get(job.id).spec.training
    assert (training.epochs, training.batch_size, training.validation_size) == (None, None, None)
    assert training.eps_warmup_epochs == 0.0


def test_unknown_job_is_not_found(store: JobStore) -> None:
    with pytest.raises(NotFound):
        store.get("missing")


def test_list_pages_newest_first_without_overlap(store: JobStore) -> None:
    ids = [store.create(NewJob(spec()))[0].id for _ in range(5)]

    first = store.list_jobs(JobQuery(page_size=2))
    second = store.list_jobs(JobQuery(page_size=2, after_seq=first.next_after_seq))
    third = store.list_jobs(JobQuery(page_size=2, after_seq=second.next_after_seq))

    listed = [j.id for page in (first, second, third) for j in page.jobs]
    assert listed == ids[::-1]
    assert third.next_after_seq is None


def test_list_filters_by_state_and_by_every_label(store: JobStore) -> None:
    a, _ = store.create(NewJob(spec(), labels={"team": "vision", "env": "prod"}))
    b, _ = store.create(NewJob(spec(), labels={"team": "vision", "env": "dev"}))
    store.create(NewJob(spec(), labels={"team": "audio"}))
    store.request_cancel(b.id)

    by_labels = store.list_jobs(JobQuery(labels={"team": "vision", "env": "prod"}))
    by_state = store.list_jobs(JobQuery(states=frozenset({JobState.CANCELLED})))
    by_both = store.list_jobs(
        JobQuery(states=frozenset({JobState.QUEUED}), labels={"team": "vision"})
    )

    assert [j.id for j in by_labels.jobs] == [a.id]
    assert [j.id for j in by_state.jobs] == [b.id]
    assert [j.id for j in by_both.jobs] == [a.id]


def test_a_listed_page_shows_a_change_another_server_made_since_it_was_last_listed(
    store: JobStore, database: Database
) -> None:
    job, _ = store.create(NewJob(spec()))
    assert [j.state for j in store.list_jobs(JobQuery()).jobs] == [JobState.QUEUED]

    JobStore(database).claim(job.id, max_attempts=3)

    listed = store.list_jobs(JobQuery()).jobs
    assert [j.state for j in listed] == [JobState.RUNNING]
    assert store.get(job.id) == listed[0]


def test_parsed_jobs_keep_only_the_most_recently_used() -> None:
    parsed = ParsedJobs(size=2)
    rows = [_Row(f"job-{i}") for i in range(3)]
    for row in rows[:2]:
        parsed.parse(row)  # type: ignore[arg-type]
    parsed.get("job-0", 1)

    parsed.parse(rows[2])  # type: ignore[arg-type]

    assert parsed.get("job-0", 1) is not None
    assert parsed.get("job-1", 1) is None
    assert parsed.get("job-2", 1) is not None
    assert parsed.get("job-2", 2) is None


class _Row:
    """The columns :func:`_job_from_row` reads, for a job just created."""

    def __init__(self, job_id: str) -> None:
        now = datetime.now(UTC)
        self.id, self.version, self.state, self.tenant = job_id, 1, "QUEUED", "default"
        self.spec = spec().to_json()
        self.created_at = self.updated_at = now
        self.labels = self.idempotency_key = self.started_at = self.finished_at = None
        self.progress = self.result = self.outputs = None
        self.reason, self.cancel_requested, self.attempts = "", False, 0


def test_progress_of_a_running_job_is_recorded_and_bumps_the_version(store: JobStore) -> None:
    job, _ = store.create(NewJob(spec()))
    claimed = store.claim(job.id, max_attempts=3)
    assert claimed is not None

    assert store.record_progress(job.id, Progress(stage="training", epoch=1, epochs=2, loss=0.5))

    after = store.get(job.id)
    assert after.progress is not None
    assert (after.progress.stage, after.progress.epoch, after.progress.loss) == ("training", 1, 0.5)
    assert after.progress.updated_at is not None
    assert after.version > claimed.version


def test_progress_of_a_job_that_is_not_running_is_ignored(store: JobStore) -> None:
    job, _ = store.create(NewJob(spec()))

    assert not store.record_progress(job.id, Progress(stage="training"))
    assert store.get(job.id).progress is None


def test_same_idempotency_key_returns_the_same_job(store: JobStore) -> None:
    first, created_first = store.create(NewJob(spec(), idempotency_key="key-1"))
    second, created_second = store.create(NewJob(spec(), idempotency_key="key-1"))

    assert created_first
    assert not created_second
    assert second.id == first.id
    assert len(store.list_jobs(JobQuery()).jobs) == 1


def test_idempotency_key_with_different_parameters_is_refused(store: JobStore) -> None:
    store.create(NewJob(spec(epochs=1), idempotency_key="key-1"))

    with pytest.raises(AlreadyExists, match="different parameters"):
        store.create(NewJob(spec(epochs=2), idempotency_key="key-1"))


def test_idempotency_key_for_recipe_epochs_then_a_given_count_is_refused(store: JobStore) -> None:
    store.create(NewJob(spec(), idempotency_key="key-1"))

    with pytest.raises(AlreadyExists, match="different parameters"):
        store.create(NewJob(spec(epochs=12), idempotency_key="key-1"))


def test_cancelling_a_queued_job_ends_it_at_once(store: JobStore) -> None:
    job, _ = store.create(NewJob(spec()))

    cancelled = store.request_cancel(job.id)

    assert cancelled.state is JobState.CANCELLED
    assert cancelled.finished_at is not None
    assert store.claim(job.id, max_attempts=3) is None


def test_cancelling_a_running_job_raises_its_flag(store: JobStore) -> None:
    job, _ = store.create(NewJob(spec()))
    store.claim(job.id, max_attempts=3)

    flagged = store.request_cancel(job.id)

    assert flagged.state is JobState.RUNNING
    assert flagged.cancel_requested
    assert store.is_cancel_requested(job.id)


def test_a_finished_job_cannot_be_cancelled_or_finished_again(store: JobStore) -> None:
    job, _ = store.create(NewJob(spec()))
    store.claim(job.id, max_attempts=3)
    output = OutputFile(OutputKind.REPORT, "a" * 64, 10)
    assert store.finish(job.id, JobState.SUCCEEDED, outputs=[output])

    assert not store.finish(job.id, JobState.FAILED, reason="late")
    with pytest.raises(FailedPrecondition):
        store.request_cancel(job.id)
    final = store.get(job.id)
    assert final.state is JobState.SUCCEEDED
    assert final.outputs == (output,)


def test_claim_counts_attempts_and_stops_at_the_limit(store: JobStore) -> None:
    job, _ = store.create(NewJob(spec()))

    first = store.claim(job.id, max_attempts=2)
    second = store.claim(job.id, max_attempts=2)

    assert first is not None
    assert second is not None
    assert (first.attempts, second.attempts) == (1, 2)
    assert second.started_at == first.started_at
    assert store.claim(job.id, max_attempts=2) is None


def test_requeue_interrupted_puts_running_jobs_back_in_order(store: JobStore) -> None:
    queued, _ = store.create(NewJob(spec()))
    running, _ = store.create(NewJob(spec()))
    done, _ = store.create(NewJob(spec()))
    store.claim(running.id, max_attempts=3)
    store.request_cancel(done.id)

    assert store.requeue_interrupted() == [queued.id, running.id]
    assert store.get(running.id).state is JobState.QUEUED


def finished(store: JobStore, outputs: list[OutputFile], **new: object) -> str:
    job, _ = store.create(NewJob(spec(), **new))  # type: ignore[arg-type]
    assert store.claim(job.id, max_attempts=3) is not None
    assert store.finish(job.id, JobState.SUCCEEDED, outputs=outputs)
    return job.id


def test_deleting_a_finished_job_drops_its_labels_and_pending_webhook_rows(
    store: JobStore, database: Database
) -> None:
    report = OutputFile(OutputKind.REPORT, "a" * 64, 10)
    job_id = finished(store, [report], labels={"team": "a"})
    hooked_job, _ = store.create(NewJob(spec()), webhook_urls=["https://example.org/h"])
    job_id_hooked = hooked_job.id
    assert store.claim(job_id_hooked, max_attempts=3) is not None
    store.finish(job_id_hooked, JobState.FAILED, reason="boom")
    deliveries = database.tables.webhook_deliveries

    deleted = store.delete_finished(job_id, "default")
    hooked = store.delete_finished(job_id_hooked, "default")

    assert deleted.outputs == (report,)
    assert not deleted.already_deleted
    assert not hooked.already_deleted
    assert not store.list_jobs(JobQuery(labels={"team": "a"})).jobs
    with database.engine.connect() as conn:
        assert conn.execute(deliveries.select()).first() is None
    with pytest.raises(NotFound):
        store.get(job_id)


def test_a_deleted_job_is_already_deleted_for_its_tenant_and_not_found_for_others(
    store: JobStore,
) -> None:
    job_id = finished(store, [])
    store.delete_finished(job_id, "default")

    assert store.delete_finished(job_id, "default").already_deleted
    with pytest.raises(NotFound):
        store.delete_finished(job_id, "someone-else")


def test_an_unfinished_job_is_not_deleted(store: JobStore) -> None:
    job, _ = store.create(NewJob(spec()))

    with pytest.raises(FailedPrecondition, match="QUEUED"):
        store.delete_finished(job.id, "default")
    assert store.get(job.id).state is JobState.QUEUED


def test_referenced_blobs_are_those_of_a_job_output_or_an_upload(
    store: JobStore, database: Database
) -> None:
    shared, alone, uploaded = "b" * 64, "c" * 64, "d" * 64
    finished(store, [OutputFile(OutputKind.REPORT, shared, 1)])
    with database.engine.begin() as conn:
        conn.execute(
            database.tables.uploads.insert().values(
                id="model-" + uploaded,
                kind="model",
                format="onnx",
                sha256=uploaded,
                size_bytes=1,
                name="m.onnx",
                created_at=datetime.now(UTC),
            )
        )

    assert store.referenced_blobs([shared, alone, uploaded]) == {shared, uploaded}
    assert store.referenced_blobs([]) == set()


def test_a_hardened_model_returned_as_a_bundle_reads_back_as_one(store: JobStore) -> None:
    bundle = OutputFile(OutputKind.HARDENED_MODEL, "e" * 64, 4096, bundle=True)

    job = store.get(finished(store, [bundle]))

    assert job.outputs == (bundle,)
    assert job.outputs[0].filename == "hardened.onnx.tar"
    assert job.outputs[0].media_type == "application/x-tar"


def test_an_output_recorded_before_bundles_came_back_is_one_onnx(
    store: JobStore, database: Database
) -> None:
    job_id = finished(store, [])
    old_row = [{"kind": "hardened_model", "sha256": "f" * 64, "size_bytes": 10}]
    jobs = database.tables.jobs
    with database.engine.begin() as conn:
        conn.execute(jobs.update().where(jobs.c.id == job_id).values(outputs=old_row, version=99))

    (output,) = store.get(job_id).outputs

    assert not output.bundle
    assert (output.filename, output.media_type) == ("hardened.onnx", "application/onnx")
