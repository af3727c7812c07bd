"""Faults of a job's own making, and damaged storage: a job whose loss turns NaN restarts its
training gentler inside its one attempt and says why, a job over its time budget or cancelled
stops within seconds and its worker takes the next job at once, and an artifact damaged on disk
is never served."""

from __future__ import annotations

import hashlib
import json
import os
import time

import grpc
import pytest
from faults_support import (
    RECONCILE,
    TERMINAL,
    FaultStack,
    download,
    get,
    spec,
    submit,
    wait_progress,
    wait_state,
)
from tempering.v1 import hardening_pb2 as pb

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

# seconds within which a stopped job must give its worker to the next one, on a loaded 2-core
# machine (the worker polls Redis at once; most of this is the next job's set-up)
HANDOVER = 10.0


def _seconds(timestamp: object) -> float:
    return timestamp.ToMicroseconds() / 1e6  # type: ignore[attr-defined]


def test_a_job_whose_loss_turns_nan_restarts_gentler_once_and_the_report_says_why(
    healthy: FaultStack, digits_inputs: tuple[str, str]
) -> None:
    # TRADES at learning rate 10 drives this model's logits to inf within the first epoch; the
    # engine restarts the training (not the job) at gentler rates until it stays finite
    job_id = submit(healthy, spec(*digits_inputs, method="trades", epochs=2, learning_rate=10.0))

    final = wait_state(healthy, job_id, TERMINAL, timeout=300)
    time.sleep(4 * RECONCILE + 1)  # reconciler passes that must leave it alone
    later = get(healthy, job_id)

    assert final.state == pb.JOB_STATE_SUCCEEDED, healthy.logs()
    assert final.attempts == 1, "the training restarted inside the job, the job was not retried"
    assert later == final
    _, body = download(healthy, job_id, pb.ARTIFACT_KIND_REPORT)
    notes = json.loads(body)["training"]["notes"]
    assert any("loss became nan" in note and "Restarted" in note for note in notes), notes
    checkpoints = healthy.artifact_dir / "checkpoints" / job_id
    assert not checkpoints.exists()


def test_an_artifact_damaged_on_disk_is_not_served(
    healthy: FaultStack, digits_inputs: tuple[str, str]
) -> None:
    job_id = submit(healthy, spec(*digits_inputs))
    final = wait_state(healthy, job_id, TERMINAL)
    assert final.state == pb.JOB_STATE_SUCCEEDED, final.reason
    header, body = download(healthy, job_id, pb.ARTIFACT_KIND_HARDENED_MODEL)
    assert hashlib.sha256(body).hexdigest() == header.sha256

    sha = header.sha256
    blob = healthy.artifact_dir / "blobs" / sha[:2] / sha[2:4] / sha
    os.chmod(blob, 0o644)
    damaged = bytearray(blob.read_bytes())
    damaged[len(damaged) // 2] ^= 0xFF
    blob.write_bytes(bytes(damaged))

    with pytest.raises(grpc.RpcError) as refused:
        download(healthy, job_id, pb.ARTIFACT_KIND_HARDENED_MODEL)
    assert refused.value.code() == grpc.StatusCode.DATA_LOSS
    assert "damaged" in (refused.value.details() or "")
    assert sha in (refused.value.details() or "")
    # the other artifacts of the job are intact and still served
    _, report = download(healthy, job_id, pb.ARTIFACT_KIND_REPORT)
    assert report.startswith(b"{")


def test_a_job_over_its_time_limit_stops_and_frees_its_worker(
    single_worker: FaultStack, digits_inputs: tuple[str, str]
) -> None:
    stack = single_worker
    slow_id = submit(stack, spec(*digits_inputs, method="pgd", epochs=500, time_limit=4.0))
    next_id = submit(stack, spec(*digits_inputs))

    slow = wait_state(stack, slow_id, TERMINAL)
    following = wait_state(stack, next_id, TERMINAL)

    assert slow.state == pb.JOB_STATE_FAILED, stack.logs()
    assert slow.reason.startswith("time limit"), slow.reason
    assert _seconds(slow.end_time) - _seconds(slow.start_time) < 4.0 + HANDOVER
    assert following.state == pb.JOB_STATE_SUCCEEDED, following.reason
    assert _seconds(following.start_time) - _seconds(slow.end_time) < HANDOVER


def test_a_cancelled_job_stops_and_frees_its_worker(
    single_worker: FaultStack, digits_inputs: tuple[str, str]
) -> None:
    stack = single_worker
    long_id = submit(stack, spec(*digits_inputs, method="pgd", epochs=500))
    wait_progress(stack, long_id, lambda p: p.stage == "training")
    next_id = submit(stack, spec(*digits_inputs))

    cancelled_at = time.time()
    stack.stub.CancelJob(pb.CancelJobRequest(job_id=long_id), timeout=30)
    cancelled = wait_state(stack, long_id, TERMINAL, timeout=60)
    following = wait_state(stack, next_id, TERMINAL)

    assert cancelled.state == pb.JOB_STATE_CANCELLED, stack.logs()
    assert _seconds(cancelled.end_time) - cancelled_at < HANDOVER
    assert following.state == pb.JOB_STATE_SUCCEEDED, following.reason
    assert _seconds(following.start_time) - _seconds(cancelled.end_time) < HANDOVER
    assert cancelled.progress.epoch < 500
