"""The worker's job runner with stand-in engines: it hands the engine a checkpoint path and
deletes the checkpoints when the job ends, a worker whose lease was taken over stops and
records nothing, a duplicate message for a job running elsewhere is dropped, running out of
memory fails the job plainly, and a damaged input is refused before the engine sees it."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from service.core.domain import JobSpec, JobState, NewJob, utcnow
from service.store.artifacts import LocalArtifactStore
from service.store.catalog import UploadCatalog
from service.store.checkpoints import CheckpointFiles
from service.store.db import Database
from service.store.jobstore import JobStore
from tests.runner_support import StandInOutcome, record_inputs, write_outputs
from workers.engine.progress import Reporter
from workers.engine.spec import HardeningRequest, Method, ThreatModel, TrainingConfig
from workers.runner import JobRunner, RunnerConfig

REPORT = {
    "original": {
        "clean_accuracy": {"value": 0.9, "low": 0.85, "high": 0.93},
        "robust_accuracy": {"value": 0.1, "low": 0.05, "high": 0.2},
    },
    "hardened": {
        "clean_accuracy": {"value": 0.8, "low": 0.75, "high": 0.85},
        "robust_accuracy": {"value": 0.5, "low": 0.4, "high": 0.6},
    },
}


@dataclass
class Rig:
    store: JobStore
    artifacts: LocalArtifactStore
    runner_for: Callable[[Callable[..., Any]], JobRunner]
    job_id: str
    checkpoints: Path
    dataset_sha: str


@pytest.fixture
def rig(tmp_path: Path) -> Rig:
    database = Database.open(f"sqlite:///{tmp_path / 'jobs.sqlite'}", "r_")
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
    checkpoints = tmp_path / "checkpoints"
    config = RunnerConfig(
        work_dir=tmp_path / "work",
        max_attempts=3,
        allow_trusted_formats=False,
        cancel_poll_interval=0.01,
        lease_timeout=3.0,
        heartbeat_interval=0.05,
        checkpoints=CheckpointFiles(checkpoints),
    )

    def runner_for(harden: Callable[..., Any]) -> JobRunner:
        return JobRunner(store, catalog, artifacts, config, harden=harden)

    return Rig(store, artifacts, runner_for, job.id, checkpoints, inputs.dataset_sha256)


def test_the_engine_gets_a_checkpoint_path_deleted_when_the_job_ends(rig: Rig) -> None:
    given: list[Path] = []

    def saving(
        request: HardeningRequest,
        output_dir: Path,
        reporter: Reporter,
        *,
        checkpoint_path: Path,
        **_: Any,
    ) -> StandInOutcome:
        given.append(checkpoint_path)
        checkpoint_path.parent.mkdir(parents=True)
        checkpoint_path.write_bytes(b"epoch 1")
        return write_outputs(output_dir, REPORT)

    assert rig.runner_for(saving).run(rig.job_id) is JobState.SUCCEEDED
    assert given == [rig.checkpoints / rig.job_id / "checkpoint.pt"]
    assert not (rig.checkpoints / rig.job_id).exists()
    job = rig.store.get(rig.job_id)
    assert job.attempts == 1


def test_a_worker_whose_lease_is_taken_over_stops_and_records_nothing(rig: Rig) -> None:
    started = threading.Event()

    def looping(request: HardeningRequest, output_dir: Path, reporter: Reporter, **_: Any) -> Any:
        started.set()
        while True:
            reporter.check()
            time.sleep(0.01)

    result: list[JobState] = []
    worker = threading.Thread(target=lambda: result.append(rig.runner_for(looping).run(rig.job_id)))
    worker.start()
    assert started.wait(10)
    # the reconciler decided this worker was gone and another worker claimed the job
    later = utcnow() + timedelta(seconds=10)
    seen = rig.store.leases.read(rig.job_id)
    assert seen is not None
    assert rig.store.leases.take_back(seen, later)
    assert rig.store.leases.claim(rig.job_id, "other", max_attempts=3, lease_seconds=60)
    worker.join(10)

    assert not worker.is_alive(), "the worker did not stop after losing its lease"
    assert result == [JobState.RUNNING]
    job = rig.store.get(rig.job_id)
    assert (job.state, job.attempts, job.reason) == (JobState.RUNNING, 2, "")


def test_a_duplicate_message_for_a_job_running_elsewhere_is_dropped(rig: Rig) -> None:
    rig.store.leases.claim(rig.job_id, "other", max_attempts=3, lease_seconds=60)

    def must_not_run(*_: object, **__: object) -> StandInOutcome:
        raise AssertionError("ran a job another worker holds")

    assert rig.runner_for(must_not_run).run(rig.job_id) is JobState.RUNNING
    assert rig.store.get(rig.job_id).attempts == 1


def test_running_out_of_memory_fails_the_job_plainly(rig: Rig) -> None:
    def hungry(*_: object, **__: object) -> StandInOutcome:
        raise MemoryError

    assert rig.runner_for(hungry).run(rig.job_id) is JobState.FAILED
    assert "ran out of memory" in rig.store.get(rig.job_id).reason


def test_a_damaged_input_fails_the_job_before_the_engine_runs(rig: Rig) -> None:
    blob = rig.artifacts.blob_path(rig.dataset_sha)
    os.chmod(blob, 0o644)
    blob.write_bytes(b"npz bytez")

    def must_not_run(*_: object, **__: object) -> StandInOutcome:
        raise AssertionError("the engine got damaged input")

    assert rig.runner_for(must_not_run).run(rig.job_id) is JobState.FAILED
    assert "damaged" in rig.store.get(rig.job_id).reason
