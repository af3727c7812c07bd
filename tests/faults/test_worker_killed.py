"""A worker killed with SIGKILL in the middle of training: its lease runs out, the server's
reconciler queues the job again, another worker takes it up and resumes it from the last
epoch checkpoint instead of starting over, and the job ends with a working artifact."""

from __future__ import annotations

import json
import time

import onnxruntime as ort
import pytest
from faults_support import (
    LEASE_TIMEOUT,
    FaultStack,
    download,
    get,
    spec,
    submit,
    wait_progress,
    wait_state,
)
from tempering.v1 import hardening_pb2 as pb

from tests.shared_support import digits_arrays

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

EPOCHS = 20


def test_a_job_whose_worker_is_killed_resumes_from_its_checkpoint(
    healthy: FaultStack, digits_inputs: tuple[str, str]
) -> None:
    stack = healthy
    job_id = submit(stack, spec(*digits_inputs, method="pgd", epochs=EPOCHS))
    wait_progress(stack, job_id, lambda p: p.stage == "training" and p.epoch >= 2)
    running = get(stack, job_id)
    assert running.state == pb.JOB_STATE_RUNNING
    checkpoint = stack.artifact_dir / "checkpoints" / job_id / "checkpoint.pt"
    assert checkpoint.is_file(), "no checkpoint after the first epoch"

    for worker in stack.live_workers():
        worker.kill()
    killed_at = time.monotonic()
    stack.start_worker()

    final = wait_state(stack, job_id, {pb.JOB_STATE_SUCCEEDED, pb.JOB_STATE_FAILED}, 180)
    assert final.state == pb.JOB_STATE_SUCCEEDED, f"{final.reason}\n{stack.logs()}"
    assert final.attempts == 2
    # taken back once the lease ran out, not after Redis's visibility timeout (hours)
    assert time.monotonic() - killed_at < LEASE_TIMEOUT + 90

    _, report_bytes = download(stack, job_id, pb.ARTIFACT_KIND_REPORT)
    training = json.loads(report_bytes)["training"]
    assert training["resumed_from_epoch"] >= 1
    assert [r["epoch"] for r in training["history"]] == list(range(1, EPOCHS + 1))
    assert any("resumed from a checkpoint" in note for note in training["notes"])

    _, model_bytes = download(stack, job_id, pb.ARTIFACT_KIND_HARDENED_MODEL)
    session = ort.InferenceSession(model_bytes, providers=["CPUExecutionProvider"])
    x, _ = digits_arrays()
    (scores,) = session.run(None, {session.get_inputs()[0].name: x[:5]})
    assert scores.shape == (5, 10)
    assert not checkpoint.parent.exists(), "checkpoints are deleted when the job ends"
