"""Restarts around running jobs: the server killed and started again (jobs keep their true
state and progress, running ones go on in their workers), and Redis restarted with an empty
memory (the reconciler sends the lost messages again; every queued or running job ends)."""

from __future__ import annotations

import pytest
from faults_support import (
    TERMINAL,
    FaultStack,
    RedisServer,
    get,
    spec,
    submit,
    wait_progress,
    wait_state,
    wait_until,
)
from tempering.v1 import hardening_pb2 as pb

from service.jobs.reconciler import REDIS_UNACKED_KEY

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def _listed(stack: FaultStack, *job_ids: str) -> dict[str, pb.Job]:
    page = stack.stub.ListJobs(pb.ListJobsRequest(page_size=500), timeout=30)
    return {job.id: job for job in page.jobs if job.id in job_ids}


def test_a_server_restart_loses_no_job_and_running_jobs_go_on(
    single_worker: FaultStack, digits_inputs: tuple[str, str]
) -> None:
    stack = single_worker
    running_id = submit(stack, spec(*digits_inputs, method="pgd", epochs=40))
    queued_id = submit(stack, spec(*digits_inputs))
    seen = wait_progress(stack, running_id, lambda p: p.stage == "training" and p.epoch >= 2)
    before = _listed(stack, running_id, queued_id)
    assert before[running_id].state == pb.JOB_STATE_RUNNING
    assert before[queued_id].state == pb.JOB_STATE_QUEUED

    stack.kill_server()
    stack.start_server()

    after = _listed(stack, running_id, queued_id)
    assert set(after) == {running_id, queued_id}
    running = after[running_id]
    assert running.spec == before[running_id].spec
    if running.state == pb.JOB_STATE_RUNNING:
        assert running.progress.stage in ("training", "evaluating", "exporting", "done")
        assert running.progress.stage != "training" or running.progress.epoch >= seen.epoch
    else:
        assert running.state == pb.JOB_STATE_SUCCEEDED
    assert after[queued_id].state in (pb.JOB_STATE_QUEUED, pb.JOB_STATE_RUNNING)

    first = wait_state(stack, running_id, TERMINAL)
    second = wait_state(stack, queued_id, TERMINAL)
    assert first.state == pb.JOB_STATE_SUCCEEDED, first.reason
    assert second.state == pb.JOB_STATE_SUCCEEDED, second.reason
    # the running job went on in its worker: never taken back, never started again
    assert first.attempts == 1
    assert second.attempts == 1


def test_redis_restarted_empty_loses_neither_queued_nor_running_jobs(
    single_worker: FaultStack, digits_inputs: tuple[str, str], redis_server: RedisServer
) -> None:
    stack = single_worker
    running_id = submit(stack, spec(*digits_inputs, method="pgd", epochs=40))
    wait_progress(stack, running_id, lambda p: p.stage == "training")
    queued_id = submit(stack, spec(*digits_inputs))
    assert get(stack, queued_id).state == pb.JOB_STATE_QUEUED
    queue = stack.env["TEMPERING_QUEUE"]
    wait_until(lambda: redis_server.client().llen(queue) == 1, 10, "the queued message")

    redis_server.restart_empty()
    # Workers reconnect at once and may recreate kombu's binding keys, so "empty" is checked
    # where it matters: no queued and no unacknowledged message survived.
    assert redis_server.client().llen(queue) == 0
    assert redis_server.client().hlen(REDIS_UNACKED_KEY) == 0

    first = wait_state(stack, running_id, TERMINAL, timeout=180)
    second = wait_state(stack, queued_id, TERMINAL, timeout=180)
    assert first.state == pb.JOB_STATE_SUCCEEDED, f"{first.reason}\n{stack.logs()}"
    assert second.state == pb.JOB_STATE_SUCCEEDED, f"{second.reason}\n{stack.logs()}"
    assert first.attempts == 1, "the running job went on; Redis losing its message changed nothing"
    assert second.attempts == 1
