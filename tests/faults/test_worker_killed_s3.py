"""With an S3-compatible artifact store there is no folder the workers share: a worker killed
with SIGKILL mid-training is replaced by a worker with a state directory of its own (another
machine), which fetches the last epoch's checkpoint from the bucket and resumes from it. Real
processes, a real S3 server (moto's) on loopback."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from faults_support import (
    HEARTBEAT,
    LEASE_TIMEOUT,
    RECONCILE,
    FaultStack,
    RedisServer,
    download,
    fault_stack,
    spec,
    submit,
    wait_progress,
    wait_state,
)
from tempering.v1 import hardening_pb2 as pb

from service.store.db import Database
from tests.shared_support import (
    POSTGRES_URL,
    digits_arrays,
    export_digits_mlp,
    npz_bytes,
    postgres_available,
    upload_dataset,
    upload_model,
)

boto3 = pytest.importorskip("boto3")
moto_server = pytest.importorskip("moto.server")

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

EPOCHS = 12
PREFIX = "faults"
AWS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


@pytest.fixture(scope="module")
def bucket_endpoint(monkeypatch_module: pytest.MonkeyPatch) -> Iterator[tuple[Any, str, str]]:
    for name, value in AWS.items():
        monkeypatch_module.setenv(name, value)
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    client = boto3.client("s3", endpoint_url=endpoint)
    bucket = f"tempering-{uuid.uuid4().hex[:12]}"
    client.create_bucket(Bucket=bucket)
    yield client, bucket, endpoint
    server.stop()


@pytest.fixture(scope="module")
def monkeypatch_module() -> Iterator[pytest.MonkeyPatch]:
    with pytest.MonkeyPatch.context() as patch:
        yield patch


@pytest.fixture(scope="module")
def s3_stack(
    redis_server: RedisServer,
    bucket_endpoint: tuple[Any, str, str],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[FaultStack]:
    """A server whose artifacts and checkpoints are in the bucket; no worker yet."""
    _, bucket, endpoint = bucket_endpoint
    folder = tmp_path_factory.mktemp("s3-stack")
    prefix = f"s{uuid.uuid4().hex[:10]}_"
    database_url = POSTGRES_URL if postgres_available() else f"sqlite:///{folder / 'jobs.sqlite'}"
    settings = {
        **AWS,
        "TEMPERING_ARTIFACT_URL": f"s3://{bucket}/{PREFIX}",
        "TEMPERING_S3_ENDPOINT_URL": endpoint,
        "TEMPERING_BROKER_URL": redis_server.url,
        "TEMPERING_DATABASE_URL": database_url,
        "TEMPERING_TABLE_PREFIX": prefix,
        "TEMPERING_QUEUE": f"tempering.s3-{uuid.uuid4().hex[:8]}",
        "TEMPERING_LEASE_TIMEOUT": str(LEASE_TIMEOUT),
        "TEMPERING_HEARTBEAT_INTERVAL": str(HEARTBEAT),
        "TEMPERING_RECONCILE_INTERVAL": str(RECONCILE),
    }
    try:
        with fault_stack(folder, settings) as running:
            yield running
    finally:
        database = Database.open(database_url, prefix)
        database.drop()
        database.close()


def machine(stack: FaultStack, name: str) -> dict[str, str]:
    """Settings of a worker that shares no folder with the others."""
    own = stack.folder / name
    return {"TEMPERING_STATE_DIR": str(own), "TEMPERING_ARTIFACT_DIR": str(own / "artifacts")}


def test_a_job_resumes_on_another_machine_from_the_checkpoint_in_the_bucket(
    s3_stack: FaultStack, bucket_endpoint: tuple[Any, str, str], tmp_path: Path
) -> None:
    client, bucket, _ = bucket_endpoint
    x, y = digits_arrays()
    model_id = upload_model(s3_stack.stub, export_digits_mlp(tmp_path / "mlp.onnx", dynamo=False))
    data_id = upload_dataset(s3_stack.stub, npz_bytes(x, y))
    first = s3_stack.start_worker(machine(s3_stack, "machine-a"))
    job_id = submit(s3_stack, spec(model_id, data_id, method="pgd", epochs=EPOCHS))
    wait_progress(s3_stack, job_id, lambda p: p.stage == "training" and p.epoch >= 2)
    key = f"{PREFIX}/checkpoints/{job_id}/checkpoint.pt"
    assert client.head_object(Bucket=bucket, Key=key)["ContentLength"] > 0

    first.kill()
    s3_stack.start_worker(machine(s3_stack, "machine-b"))

    final = wait_state(s3_stack, job_id, {pb.JOB_STATE_SUCCEEDED, pb.JOB_STATE_FAILED}, 240)
    assert final.state == pb.JOB_STATE_SUCCEEDED, f"{final.reason}\n{s3_stack.logs()}"
    assert final.attempts == 2
    _, report_bytes = download(s3_stack, job_id, pb.ARTIFACT_KIND_REPORT)
    training = json.loads(report_bytes)["training"]
    assert training["resumed_from_epoch"] >= 1
    assert [r["epoch"] for r in training["history"]] == list(range(1, EPOCHS + 1))
    listed = client.list_objects_v2(Bucket=bucket, Prefix=f"{PREFIX}/checkpoints/{job_id}/")
    assert listed.get("KeyCount", 0) == 0, "the job's checkpoint stayed in the bucket"
