"""A job's time limit counts over all its attempts: heartbeats record the time a job has run,
a job resumed after its worker was lost gets only what is left of its budget, and a job whose
budget is spent ends FAILED with the time-limit reason without running again."""

from __future__ import annotations

import time
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
from service.store.leases import Leases
from tests.runner_support import StandInOutcome, record_inputs, write_outputs
from workers.engine.progress import Reporter
from workers.engine.spec import HardeningRequest, Method, ThreatModel, TrainingConfig
from workers.runner import JobRunner, RunnerConfig

LIMIT = 60.0
REPORT = {
    side: {
        "clean_accuracy": {"value": 0.9, "low": 0.8, "high": 0.95},
        "robust_accuracy": {"value": 0.5, "low": 0.4, "high": 0.6},
    }
    for side in ("original", "hardened")
}


@dataclass
class Rig:
    store: JobStore
    runner: JobRunner
    job_id: str
    checkpoints: Path
    engine_calls: list[Reporter]
    engine: list[Any]
    """What the stand-in engine does with its reporter and output folder (default: succeed)."""

    @property
    def leases(self) -> Leases:
        return self.store.leases

    def lose_an_attempt_after(self, run_seconds: float) -> None:
        """An earlier attempt ran this long, then its worker was lost and the reconciler put
        the job back in the queue."""
        assert self.leases.claim(self.job_id, "lost-worker", max_attempts=3, lease_seconds=30)
        assert self.leases.renew(self.job_id, "lost-worker", 30, run_seconds)
        seen = self.leases.read(self.job_id)
        assert seen is not None
        assert self.leases.take_back(seen, now=utcnow() + timedelta(seconds=60))


@pytest.fixture
def rig(database: Database, tmp_path: Path) -> Rig:
    store, catalog = JobStore(database), UploadCatalog(database)
    artifacts = LocalArtifactStore(tmp_path / "artifacts")
    inputs = record_inputs(artifacts, catalog)
    spec = JobSpec(
        model_id=inputs.model_id,
        train_dataset_id=inputs.dataset_id,
        training=TrainingConfig(method=Method.FGSM),
        threat=ThreatModel(eps=0.1),
        time_limit_seconds=LIMIT,
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
    calls: list[Reporter] = []
    engine: list[Any] = [lambda reporter, output_dir: write_outputs(output_dir, REPORT)]

    def stand_in(
        request: HardeningRequest, output_dir: Path, reporter: Reporter, **_: Any
    ) -> StandInOutcome:
        calls.append(reporter)
        return engine[0](reporter, output_dir)  # type: ignore[no-any-return]

    runner = JobRunner(store, catalog, artifacts, config, harden=stand_in)
    return Rig(store, runner, job.id, checkpoints, calls, engine)


def test_heartbeats_record_how_long_the_job_has_run(rig: Rig) -> None:
    recorded: list[float] = []

    def until_recorded(reporter: Reporter, output_dir: Path) -> StandInOutcome:
        recorded.append(rig.leases.run_seconds(rig.job_id))
        deadline = time.monotonic() + 10
        while rig.leases.run_seconds(rig.job_id) == 0.0 and time.monotonic() < deadline:
            reporter.check()
            time.sleep(0.01)
        recorded.append(rig.leases.run_seconds(rig.job_id))
        return write_outputs(output_dir, REPORT)

    rig.engine[0] = until_recorded
    assert rig.runner.run(rig.job_id) is JobState.SUCCEEDED
    assert recorded[0] == 0.0
    assert recorded[1] > 0.0


def test_a_resumed_job_gets_only_what_is_left_of_its_time_limit(rig: Rig) -> None:
    rig.lose_an_attempt_after(45.0)

    assert rig.runner.run(rig.job_id) is JobState.SUCCEEDED
    assert [r.time_limit_seconds for r in rig.engine_calls] == [pytest.approx(LIMIT - 45.0)]


def test_a_resumed_job_that_runs_over_the_rest_fails_naming_its_whole_limit(rig: Rig) -> None:
    rig.lose_an_attempt_after(LIMIT - 0.05)

    def forever(reporter: Reporter, output_dir: Path) -> StandInOutcome:
        while True:
            reporter.check()

    rig.engine[0] = forever
    assert rig.runner.run(rig.job_id) is JobState.FAILED
    job = rig.store.get(rig.job_id)
    assert job.reason == (
        "time limit: the job ran over its time limit of 60 s, counted over 2 attempts"
    )


def test_a_job_whose_time_is_spent_fails_without_running_again(rig: Rig) -> None:
    rig.lose_an_attempt_after(LIMIT + 1.0)
    (rig.checkpoints / rig.job_id).mkdir(parents=True)
    (rig.checkpoints / rig.job_id / "checkpoint.pt").write_bytes(b"epoch 3")

    assert rig.runner.run(rig.job_id) is JobState.FAILED
    job = rig.store.get(rig.job_id)
    assert job.reason == (
        "time limit: the job ran over its time limit of 60 s, counted over 1 attempt"
    )
    assert rig.engine_calls == []
    assert not (rig.checkpoints / rig.job_id).exists()
