"""End to end on the single-machine default: `python -m service` with no settings but a state
directory starts the server and a real Celery worker on a SQLite broker file, with a SQLite job
store; nothing else needs to run."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from e2e_support import Stack, running_stack, state_changes, watch_to_end
from svc_helpers import download, fgsm_spec
from tempering.v1 import hardening_pb2 as pb

from tests.shared_support import (
    base_env,
    digits_arrays,
    export_digits_mlp,
    npz_bytes,
    upload_dataset,
    upload_model,
)

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def children_of(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    folder = tmp_path_factory.mktemp("single-machine")
    env = base_env({"TEMPERING_GRPC_ADDRESS": "127.0.0.1:0"})
    with running_stack(["--state-dir", str(folder / "state")], env, folder) as running:
        yield running


def test_default_stack_keeps_everything_in_the_state_dir(stack: Stack) -> None:
    state = Path(stack.server.popen.args[stack.server.popen.args.index("--state-dir") + 1])

    assert (state / "jobs.sqlite").is_file()
    assert (state / "artifacts" / "blobs").is_dir()
    assert children_of(stack.server.pid), "the server started no worker process"


def test_hardens_a_model_on_the_local_broker(stack: Stack, tmp_path: Path) -> None:
    x, y = digits_arrays()
    model_id = upload_model(stack.stub, export_digits_mlp(tmp_path / "mlp.onnx"))
    train_id = upload_dataset(stack.stub, npz_bytes(x[:400], y[:400]))
    eval_id = upload_dataset(stack.stub, npz_bytes(x[1000:1064], y[1000:1064]))
    spec = fgsm_spec(model_id, train_id, eval_dataset_id=eval_id)

    job = stack.stub.SubmitJob(pb.SubmitJobRequest(spec=spec))
    events = watch_to_end(stack.stub, job.id)

    assert state_changes(events)[-1] == pb.JOB_STATE_SUCCEEDED, stack.logs()
    _, model_bytes = download(stack.stub, job.id, pb.ARTIFACT_KIND_HARDENED_MODEL)
    session = ort.InferenceSession(model_bytes, providers=["CPUExecutionProvider"])
    (scores,) = session.run(None, {session.get_inputs()[0].name: x[1000:1064]})
    assert scores.shape == (64, 10)
    assert np.isfinite(scores).all()
    _, report_bytes = download(stack.stub, job.id, pb.ARTIFACT_KIND_REPORT)
    assert "hardened" in json.loads(report_bytes)


def test_the_log_is_quiet_and_says_a_cancelled_job_was_cancelled(
    stack: Stack, tmp_path: Path
) -> None:
    x, y = digits_arrays()
    model_id = upload_model(stack.stub, export_digits_mlp(tmp_path / "mlp.onnx"))
    spec = fgsm_spec(model_id, upload_dataset(stack.stub, npz_bytes(x[:400], y[:400])))
    spec.training.epochs = 500
    job = stack.stub.SubmitJob(pb.SubmitJobRequest(spec=spec))
    stream = stack.stub.WatchJob(pb.WatchJobRequest(job_id=job.id), timeout=240)
    for event in stream:
        if event.WhichOneof("event") == "progress" and event.progress.stage == "training":
            break
    stack.stub.CancelJob(pb.CancelJobRequest(job_id=job.id))
    assert state_changes(list(stream))[-1] == pb.JOB_STATE_CANCELLED, stack.logs()
    deadline = time.monotonic() + 30
    while f"job {job.id} cancelled" not in (log := stack.server.log_path.read_text()):
        assert time.monotonic() < deadline, stack.logs()
        time.sleep(0.2)
    time.sleep(1.0)  # the task returns after the runner's line; Celery's would follow it
    log = stack.server.log_path.read_text()

    assert not [
        line for line in log.splitlines() if "tempering.run_job[" in line and "succeeded" in line
    ]
    assert "[queues]" not in log, "Celery's banner"
    assert "SecurityWarning" not in log
    assert "superuser" not in log
    if os.geteuid() == 0:
        assert log.count("this worker runs as root") == 1


def test_sigterm_stops_the_server_and_its_worker(stack: Stack) -> None:
    workers = children_of(stack.server.pid)

    os.kill(stack.server.pid, signal.SIGTERM)
    code = stack.server.popen.wait(timeout=60)

    assert code == 0, stack.logs()
    assert workers
    assert not [pid for pid in workers if Path(f"/proc/{pid}").exists()]
