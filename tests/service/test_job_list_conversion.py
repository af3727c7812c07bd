"""A page of jobs to its message: each job as it is at the version listed."""

from __future__ import annotations

import dataclasses

from tempering.v1 import hardening_pb2 as pb

from service.api import convert
from service.core.domain import Job, JobPage, JobSpec, JobState, utcnow
from workers.engine.spec import Method, ThreatModel, TrainingConfig


def queued(job_id: str) -> Job:
    now = utcnow()
    spec = JobSpec(
        model_id="model-1",
        train_dataset_id="dataset-1",
        training=TrainingConfig(method=Method.PGD),
        threat=ThreatModel(eps=0.1),
    )
    return Job(
        id=job_id,
        state=JobState.QUEUED,
        spec=spec,
        labels={},
        created_at=now,
        updated_at=now,
        version=1,
    )


def page_of(*jobs: Job) -> JobPage:
    return JobPage(jobs=jobs, next_after_seq=None, seqs=tuple(range(len(jobs))))


def test_a_listed_job_is_the_job_at_the_version_listed() -> None:
    job = queued("job-listed-twice")
    convert.list_response(page_of(job))
    running = dataclasses.replace(job, state=JobState.RUNNING, version=2)

    listed = convert.list_response(page_of(running)).jobs[0]

    assert listed.state == pb.JOB_STATE_RUNNING
    assert listed == convert.job_to_pb(running)


def test_changing_one_response_leaves_the_next_alone() -> None:
    job = queued("job-changed-by-a-caller")
    first = convert.list_response(page_of(job))

    first.jobs[0].reason = "changed"

    assert convert.list_response(page_of(job)).jobs[0].reason == ""
