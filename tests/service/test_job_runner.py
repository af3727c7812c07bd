"""The worker-side job runner with a stand-in engine: what it records for each way a job ends.
(The real engine runs in the end-to-end tests.)"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import pytest

from service.core.domain import Job, JobSpec, JobState, NewJob, OutputKind
from service.core.tenancy import DEFAULT_TENANT
from service.jobs.jobs import Jobs
from service.store.artifacts import LocalArtifactStore
from service.store.catalog import UploadCatalog
from service.store.db import Database
from service.store.jobstore import JobStore
from tests.runner_support import StandInOutcome, record_inputs, write_outputs
from workers.engine.errors import InvalidModel
from workers.engine.progress import ProgressEvent, Reporter
from workers.engine.spec import HardeningRequest, Method, ThreatModel, TrainingConfig
from workers.runner import JobObserver, JobRunner, ProgressRecorder, RunnerConfig

REPORT = {
    "schema_version": 1,
    "original": {
        "clean_accuracy": {"value": 0.9, "low": 0.85, "high": 0.93},
        "robust_accuracy": {"value": 0.1, "low": 0.05, "high": 0.2},
    },
    "hardened": {
        "clean_accuracy": {"value": 0.8, "low": 0.75, "high": 0.85},
        "robust_accuracy": {"value": 0.5, "low": 0.4, "high": 0.6},
    },
}


def finishing(request: HardeningRequest, output_dir: Path, reporter: Reporter) -> StandInOutcome:
    assert request.model.path.name == "model.onnx"
    assert request.train_data.read_bytes() == b"npz bytes"
    reporter.emit(ProgressEvent(stage="training", epoch=1, epochs=1, step=1, steps=1))
    return write_outputs(output_dir, REPORT)


def looping_until_stopped(
    request: HardeningRequest, output_dir: Path, reporter: Reporter
) -> StandInOutcome:
    while True:
        reporter.check()


@dataclass
class Rig:
    store: JobStore
    runner_for: Callable[..., JobRunner]
    job_id: str


@pytest.fixture
def rig(tmp_path: Path) -> Rig:
    database = Database.open(f"sqlite:///{tmp_path / 'jobs.sqlite'}", "t_")
    store, catalog = JobStore(database), UploadCatalog(database)
    artifacts = LocalArtifactStore(tmp_path / "artifacts")
    inputs = record_inputs(artifacts, catalog)
    spec = JobSpec(
        model_id=inputs.model_id,
        train_dataset_id=inputs.dataset_id,
        training=TrainingConfig(method=Method.FGSM),
        threat=ThreatModel(eps=0.1),
        time_limit_seconds=60,
    )
    job, _ = store.create(NewJob(spec))
    config = RunnerConfig(
        work_dir=tmp_path / "work",
        max_attempts=2,
        allow_trusted_formats=False,
        cancel_poll_interval=0.01,
    )

    def runner_for(harden: Callable[..., Any], observer: JobObserver | None = None) -> JobRunner:
        return JobRunner(store, catalog, artifacts, config, harden=harden, observer=observer)

    return Rig(store, runner_for, job.id)


def test_success_records_outputs_and_headline_scores(rig: Rig) -> None:
    state = rig.runner_for(finishing).run(rig.job_id)

    job = rig.store.get(rig.job_id)
    assert state is JobState.SUCCEEDED
    assert job.state is JobState.SUCCEEDED
    assert {o.kind for o in job.outputs} == set(OutputKind) - {
        OutputKind.TOKENIZER,
        OutputKind.FEATURE_SCHEMA,
    }
    assert job.result is not None
    assert job.result.headline["hardened"]["robust_accuracy"]["value"] == 0.5
    assert job.progress is not None
    assert job.progress.stage == "training"


def test_an_observer_sees_the_progress_and_the_end_of_the_job(rig: Rig) -> None:
    seen: list[object] = []

    class Recording:
        def progress(self, job: Job, event: ProgressEvent) -> None:
            seen.append((job.id, event.stage))

        def finished(self, job: Job, state: JobState) -> None:
            seen.append((job.id, state))

    rig.runner_for(finishing, Recording()).run(rig.job_id)

    assert seen == [(rig.job_id, "training"), (rig.job_id, JobState.SUCCEEDED)]


def test_engine_error_fails_the_job_with_its_message(rig: Rig) -> None:
    def invalid(*_: object) -> StandInOutcome:
        raise InvalidModel("the model has two inputs")

    assert rig.runner_for(invalid).run(rig.job_id) is JobState.FAILED
    assert rig.store.get(rig.job_id).reason == "the model has two inputs"


def test_unexpected_error_fails_the_job_without_internals(rig: Rig) -> None:
    def buggy(*_: object) -> StandInOutcome:
        raise KeyError("internal detail")

    rig.runner_for(buggy).run(rig.job_id)

    reason = rig.store.get(rig.job_id).reason
    assert "internal error in the worker (KeyError)" in reason
    assert "internal detail" not in reason


def test_cancel_flag_stops_the_engine_and_cancels_the_job(rig: Rig) -> None:
    def cancel_then_loop(
        request: HardeningRequest, output_dir: Path, reporter: Reporter
    ) -> StandInOutcome:
        rig.store.request_cancel(rig.job_id)
        return looping_until_stopped(request, output_dir, reporter)

    assert rig.runner_for(cancel_then_loop).run(rig.job_id) is JobState.CANCELLED
    assert rig.store.get(rig.job_id).state is JobState.CANCELLED


def test_time_limit_fails_the_job_saying_so(rig: Rig) -> None:
    def slow(request: HardeningRequest, output_dir: Path, reporter: Reporter) -> StandInOutcome:
        assert reporter.time_limit_seconds == 60
        reporter.time_limit_seconds = 1e-9
        return looping_until_stopped(request, output_dir, reporter)

    assert rig.runner_for(slow).run(rig.job_id) is JobState.FAILED
    assert rig.store.get(rig.job_id).reason.startswith("time limit")


def test_a_redelivered_finished_job_is_left_alone(rig: Rig) -> None:
    rig.runner_for(finishing).run(rig.job_id)
    before = rig.store.get(rig.job_id)

    def must_not_run(*_: object) -> StandInOutcome:
        raise AssertionError("ran twice")

    assert rig.runner_for(must_not_run).run(rig.job_id) is JobState.SUCCEEDED
    assert rig.store.get(rig.job_id) == before


def test_a_job_whose_worker_keeps_dying_fails_after_max_attempts(rig: Rig) -> None:
    rig.store.claim(rig.job_id, max_attempts=2)
    rig.store.claim(rig.job_id, max_attempts=2)

    assert rig.runner_for(finishing).run(rig.job_id) is JobState.FAILED
    assert "worker was lost" in rig.store.get(rig.job_id).reason


def test_progress_is_throttled_but_milestones_always_pass(rig: Rig) -> None:
    writes: list[ProgressEvent] = []
    now = [0.0]

    class Recording(JobStore):
        def __init__(self) -> None:
            pass

        def record_progress(self, job_id: str, progress: Any) -> bool:
            writes.append(progress)
            return True

    recorder = ProgressRecorder(Recording(), "job", interval=0.5, clock=lambda: now[0])
    for step in range(1, 11):
        now[0] += 0.1
        recorder(ProgressEvent(stage="training", epoch=1, epochs=2, step=step, steps=20))
    recorder(ProgressEvent(stage="evaluating"))
    recorder.flush()

    steps = [(w.stage, w.step) for w in writes]
    assert steps == [("training", 1), ("training", 6), ("evaluating", 0)]


EVALUATION_LINES = [
    ProgressEvent(stage="evaluating", steps=8, message="hardened: evaluating 1000 samples"),
    ProgressEvent(stage="evaluating", step=1, steps=8, message="hardened: fgsm: 950/1000"),
    ProgressEvent(stage="evaluating", step=1, steps=8, message="hardened: apgd-ce on 950, 20 s"),
    ProgressEvent(stage="evaluating", step=2, steps=8, message="hardened: apgd-ce: 931/1000"),
    ProgressEvent(stage="evaluating", step=3, steps=8, message="hardened: apgd-t: 926/1000"),
]


def test_each_evaluation_line_is_recorded_however_quickly_it_follows() -> None:
    writes: list[Any] = []

    class Recording(JobStore):
        def __init__(self) -> None:
            pass

        def record_progress(self, job_id: str, progress: Any) -> bool:
            writes.append(progress)
            return True

    recorder = ProgressRecorder(Recording(), "job", interval=0.5, clock=lambda: 0.0)
    for event in EVALUATION_LINES:
        recorder(event)

    assert [w.message for w in writes] == [e.message for e in EVALUATION_LINES]
    assert [s.number for s in writes[-1].recent] == [1, 2, 3, 4, 5]


def test_a_watcher_sees_evaluation_lines_recorded_between_two_polls(rig: Rig) -> None:
    rig.store.claim(rig.job_id, max_attempts=2)
    jobs = Jobs(
        rig.store, cast(Any, None), cast(Any, None), cast(Any, None),
        job_time_limit=60, allow_trusted_formats=False, watch_poll_seconds=0.0,
    )  # fmt: skip
    polls = iter(range(20))
    events = jobs.watch(rig.job_id, lambda: next(polls, None) is not None, tenant=DEFAULT_TENANT)
    next(events)
    recorder = ProgressRecorder(rig.store, rig.job_id, interval=0.5)
    recorder(EVALUATION_LINES[0])
    first = next(events)
    for event in EVALUATION_LINES[1:]:
        recorder(event)

    seen = [first, *events]

    assert [e.progress.message for e in seen if e.progress] == [e.message for e in EVALUATION_LINES]
    assert [e.progress.step for e in seen if e.progress] == [e.step for e in EVALUATION_LINES]


def test_a_model_returned_as_a_bundle_is_recorded_as_one(rig: Rig) -> None:
    def bundling(request: HardeningRequest, output_dir: Path, reporter: Reporter) -> StandInOutcome:
        outcome = write_outputs(output_dir, REPORT)
        bundle = outcome.model_path.with_name("hardened.onnx.tar")
        outcome.model_path.rename(bundle)
        return dataclasses.replace(outcome, model_path=bundle, model_is_bundle=True)

    rig.runner_for(bundling).run(rig.job_id)

    job = rig.store.get(rig.job_id)
    model = job.output(OutputKind.HARDENED_MODEL)
    assert model is not None
    assert model.bundle
    assert not any(o.bundle for o in job.outputs if o.kind is not OutputKind.HARDENED_MODEL)
