"""End to end on the distributed setup: a server process (--no-worker) and a worker process
(`python -m workers`) on the real Redis, with the job store on the real PostgreSQL when it is
reachable (SQLite otherwise). Each run uses its own queue and table prefix."""

from __future__ import annotations

import hashlib
import json
import os
import random
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from e2e_support import RssSampler, Stack, running_stack, state_changes, watch_to_end
from service_support import unique_prefix
from svc_helpers import download, fgsm_spec
from tempering.v1 import hardening_pb2 as pb
from text_support import make_text_inputs

from client.sdk import HardeningClient
from service.store.db import Database
from tests.engine.text import support as text_support
from tests.shared_support import (
    POSTGRES_URL,
    base_env,
    chunked,
    digits_arrays,
    export_digits_mlp,
    model_requests,
    npz_bytes,
    postgres_available,
    sha256,
    upload_dataset,
    upload_model,
)

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

REDIS_HOST, REDIS_PORT = "127.0.0.1", 6379
MiB = 1024 * 1024


def redis_available() -> bool:
    import redis

    try:
        return bool(redis.Redis(REDIS_HOST, REDIS_PORT, socket_connect_timeout=2).ping())
    except redis.RedisError:
        return False


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    if not redis_available():
        message = f"Redis is not reachable at {REDIS_HOST}:{REDIS_PORT}"
        if os.environ.get("CI"):
            pytest.fail(message + " (CI must run these tests, not skip them)")
        pytest.skip(message)
    import redis

    folder = tmp_path_factory.mktemp("redis-stack")
    db = random.randint(1, 15)
    queue = f"tempering.test-{uuid.uuid4().hex[:10]}"
    prefix = unique_prefix()
    database_url = POSTGRES_URL if postgres_available() else f"sqlite:///{folder / 'jobs.sqlite'}"
    env = base_env(
        {
            "TEMPERING_STATE_DIR": str(folder),
            "TEMPERING_BROKER_URL": f"redis://{REDIS_HOST}:{REDIS_PORT}/{db}",
            "TEMPERING_DATABASE_URL": database_url,
            "TEMPERING_TABLE_PREFIX": prefix,
            "TEMPERING_QUEUE": queue,
            "TEMPERING_GRPC_ADDRESS": "127.0.0.1:0",
            "TEMPERING_MAX_UPLOAD_BYTES": str(128 * MiB),
        }
    )
    try:
        with running_stack(
            ["--no-worker"], env, folder, worker_args=["--hostname", f"{queue}@%h"]
        ) as running:
            yield running
    finally:
        client = redis.Redis(REDIS_HOST, REDIS_PORT, db=db)
        for key in client.scan_iter(f"*{queue}*"):
            client.delete(key)
        database = Database.open(database_url, prefix)
        database.drop()
        database.close()


@pytest.fixture(scope="module")
def digits_inputs(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    folder = tmp_path_factory.mktemp("digits")
    x, y = digits_arrays()
    model_id = upload_model(stack.stub, export_digits_mlp(folder / "mlp.onnx"))
    return model_id, upload_dataset(stack.stub, npz_bytes(x[:512], y[:512]))


# Runs first in the module, before any job: the memory bound is about the upload path, and a
# worker busy with an earlier test's job slows the server's reads and swells gRPC's buffers.
def test_large_upload_streams_in_chunks_with_bounded_server_memory(stack: Stack) -> None:
    data = np.random.default_rng(3).bytes(50 * MiB)
    sampler = RssSampler(stack.server.pid)
    baseline = sampler.rss_bytes()

    with sampler:
        response = stack.stub.UploadModel(model_requests(data, chunks=chunked(data)), timeout=120)

    assert response.sha256 == hashlib.sha256(data).hexdigest()
    assert response.size_bytes == len(data)
    growth = max(sampler.samples) - baseline
    assert growth < 25 * MiB, f"server RSS grew by {growth / MiB:.1f} MiB for a 50 MiB upload"


def test_hardens_an_uploaded_model_and_serves_the_results(
    stack: Stack, digits_inputs: tuple[str, str]
) -> None:
    job = stack.stub.SubmitJob(pb.SubmitJobRequest(spec=fgsm_spec(*digits_inputs)))
    assert job.state == pb.JOB_STATE_QUEUED

    events = watch_to_end(stack.stub, job.id)

    changes = state_changes(events)
    assert changes[0] in (pb.JOB_STATE_QUEUED, pb.JOB_STATE_RUNNING)
    assert changes[-1] == pb.JOB_STATE_SUCCEEDED, stack.logs()
    assert pb.JOB_STATE_RUNNING in changes
    stages = {e.progress.stage for e in events if e.WhichOneof("event") == "progress"}
    # Watchers sample the stored progress, so a stage shorter than one poll may be skipped;
    # the evaluation of this job lasts several polls.
    assert "evaluating" in stages
    assert stages <= {"loading", "teacher", "training", "evaluating", "exporting", "done"}

    header, model_bytes = download(stack.stub, job.id, pb.ARTIFACT_KIND_HARDENED_MODEL)
    assert header.sha256 == sha256(model_bytes)
    session = ort.InferenceSession(model_bytes, providers=["CPUExecutionProvider"])
    x, _ = digits_arrays()
    (scores,) = session.run(None, {session.get_inputs()[0].name: x[:8]})
    assert scores.shape == (8, 10)

    _, report_bytes = download(stack.stub, job.id, pb.ARTIFACT_KIND_REPORT)
    report = json.loads(report_bytes)
    assert {"schema_version", "original", "hardened", "training", "export"} <= set(report)
    assert 0 <= report["hardened"]["clean_accuracy"]["value"] <= 1
    _, card = download(stack.stub, job.id, pb.ARTIFACT_KIND_MODEL_CARD)
    assert card.strip()
    plot_header, plot = download(stack.stub, job.id, pb.ARTIFACT_KIND_ROBUSTNESS_PLOT)
    assert plot.startswith(b"\x89PNG\r\n\x1a\n")
    assert plot_header.media_type == "image/png"

    final = stack.stub.GetJob(pb.GetJobRequest(job_id=job.id))
    assert final.result.hardened.clean_accuracy.value == pytest.approx(
        report["hardened"]["clean_accuracy"]["value"]
    )
    assert {o.kind for o in final.outputs} == {
        pb.ARTIFACT_KIND_HARDENED_MODEL,
        pb.ARTIFACT_KIND_REPORT,
        pb.ARTIFACT_KIND_MODEL_CARD,
        pb.ARTIFACT_KIND_ROBUSTNESS_PLOT,
    }


def test_cancelled_running_job_stops_and_says_so(
    stack: Stack, digits_inputs: tuple[str, str]
) -> None:
    spec = fgsm_spec(*digits_inputs)
    spec.training.epochs = 500
    job = stack.stub.SubmitJob(pb.SubmitJobRequest(spec=spec))
    stream = stack.stub.WatchJob(pb.WatchJobRequest(job_id=job.id), timeout=240)

    for event in stream:
        if event.WhichOneof("event") == "progress" and event.progress.stage == "training":
            break
    cancelled_at = time.monotonic()
    flagged = stack.stub.CancelJob(pb.CancelJobRequest(job_id=job.id))
    rest = list(stream)

    assert flagged.cancel_requested
    assert state_changes(rest)[-1] == pb.JOB_STATE_CANCELLED, stack.logs()
    assert time.monotonic() - cancelled_at < 30
    final = stack.stub.GetJob(pb.GetJobRequest(job_id=job.id))
    assert "cancel" in final.reason
    assert final.progress.epoch < 500


def test_same_idempotency_key_returns_the_same_job(
    stack: Stack, digits_inputs: tuple[str, str]
) -> None:
    key = f"e2e-{uuid.uuid4().hex}"
    request = pb.SubmitJobRequest(spec=fgsm_spec(*digits_inputs), idempotency_key=key)

    first = stack.stub.SubmitJob(request)
    second = stack.stub.SubmitJob(request)
    stack.stub.CancelJob(pb.CancelJobRequest(job_id=first.id))

    assert second.id == first.id
    assert second.idempotency_key == key


def test_the_sdk_hardens_a_text_model_from_csv(stack: Stack, tmp_path: Path) -> None:
    pytest.importorskip("torch")
    inputs = make_text_inputs(tmp_path / "text")
    train = text_support.write_csv(tmp_path / "train.csv", text_support.labelled(80, seed=1))
    port = (stack.server.log_path.parent / "port").read_text()

    with HardeningClient(f"127.0.0.1:{port}") as api:
        outcome = api.harden(
            inputs.model,
            train,
            method="pgd",
            epochs=1,
            eval_samples=12,
            tokenizer_path=inputs.tokenizer,
            eval_data_path=inputs.test,
            output=tmp_path / "out" / "hardened.onnx",
            timeout=240,
        )

    assert outcome.report["modality"] == "text", stack.logs()
    assert outcome.report["hardened"]["clean_accuracy"]["total"] == 12
    assert outcome.tokenizer_path == tmp_path / "out" / "hardened.tokenizer.json"
    assert outcome.tokenizer_path.read_bytes() == inputs.tokenizer.read_bytes()
