"""Prometheus metrics: the job figures read from the store (SQLite and PostgreSQL), the RPC and
upload figures of a real server scraped over HTTP, and a worker's throughput figures."""

from __future__ import annotations

import re
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import grpc
import pytest
import sqlalchemy as sa
from e2e_support import Process, Stack, running_stack, state_changes, watch_to_end
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families
from svc_helpers import digits_like, fgsm_spec
from tempering.v1 import hardening_pb2 as pb
from tempering.v1 import hardening_pb2_grpc as pb_grpc

from service.api.job_metrics import JobStoreCollector
from service.api.server import RunningServer, start_server
from service.core.domain import Job, JobSpec, JobState, NewJob, utcnow
from service.core.settings import Settings, SettingsError
from service.store.db import Database, define_tables
from service.store.jobstore import JobStore
from tests.shared_support import (
    base_env,
    digits_arrays,
    export_digits_mlp,
    npz_bytes,
    upload_dataset,
    upload_model,
)
from workers.engine.progress import ProgressEvent
from workers.engine.spec import Method, ThreatModel, TrainingConfig
from workers.worker_metrics import WorkerMetrics


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        return response.read().decode()


def sample(text: str, name: str, **labels: str) -> float | None:
    """The value of the sample ``name`` whose labels include ``labels``, or None."""
    for family in text_string_to_metric_families(text):
        for found in family.samples:
            if found.name == name and labels.items() <= found.labels.items():
                return float(found.value)
    return None


def spec(method: Method) -> JobSpec:
    return JobSpec(
        model_id="model-abc",
        train_dataset_id="dataset-def",
        training=TrainingConfig(method=method),
        threat=ThreatModel(eps=0.1),
    )


# --- jobs, read from the store ----------------------------------------------------------------


@pytest.fixture
def registry(database: Database) -> CollectorRegistry:
    registry = CollectorRegistry()
    registry.register(JobStoreCollector(database))
    return registry


def test_jobs_are_counted_by_state_and_method(
    database: Database, registry: CollectorRegistry
) -> None:
    store = JobStore(database)
    for method in (Method.PGD, Method.PGD, Method.TRADES):
        store.create(NewJob(spec(method)))
    done, _ = store.create(NewJob(spec(Method.PGD)))
    store.claim(done.id, max_attempts=1)
    store.finish(done.id, JobState.SUCCEEDED)

    def jobs(state: str, method: str) -> float | None:
        return registry.get_sample_value("tempering_jobs", {"state": state, "method": method})

    assert jobs("QUEUED", "pgd") == 2
    assert jobs("QUEUED", "trades") == 1
    assert jobs("SUCCEEDED", "pgd") == 1
    assert jobs("RUNNING", "fgsm") == 0
    assert registry.get_sample_value("tempering_queue_depth") == 3
    assert registry.get_sample_value("tempering_job_store_up") == 1


def test_finished_jobs_fill_the_duration_histogram_by_method_and_state(
    database: Database, registry: CollectorRegistry
) -> None:
    store = JobStore(database)
    for seconds in (45, 400):
        job, _ = store.create(NewJob(spec(Method.FGSM)))
        store.claim(job.id, max_attempts=1)
        store.finish(job.id, JobState.SUCCEEDED)
        ended_after(database, job.id, seconds)
    never_started, _ = store.create(NewJob(spec(Method.FGSM)))
    store.request_cancel(never_started.id)

    def bucket(le: str) -> float | None:
        labels = {"method": "fgsm", "state": "SUCCEEDED", "le": le}
        return registry.get_sample_value("tempering_job_duration_seconds_bucket", labels)

    labels = {"method": "fgsm", "state": "SUCCEEDED"}
    assert bucket("30.0") == 0
    assert bucket("60.0") == 1
    assert bucket("600.0") == 2
    assert bucket("+Inf") == 2
    assert registry.get_sample_value("tempering_job_duration_seconds_count", labels) == 2
    total = registry.get_sample_value("tempering_job_duration_seconds_sum", labels)
    assert total == pytest.approx(445, abs=0.01)
    cancelled = {"method": "fgsm", "state": "CANCELLED"}
    assert registry.get_sample_value("tempering_job_duration_seconds_count", cancelled) is None


def ended_after(database: Database, job_id: str, seconds: float) -> None:
    jobs = database.tables.jobs
    started = utcnow() - timedelta(hours=1)
    with database.engine.begin() as conn:
        conn.execute(
            jobs.update()
            .where(jobs.c.id == job_id)
            .values(started_at=started, finished_at=started + timedelta(seconds=seconds))
        )


def test_an_unreadable_store_is_reported_down_not_as_an_error(
    database: Database, registry: CollectorRegistry
) -> None:
    database.drop()

    assert registry.get_sample_value("tempering_job_store_up") == 0
    assert registry.get_sample_value("tempering_queue_depth") is None


def test_a_store_created_before_the_method_column_has_its_jobs_counted_by_method(
    database: Database,
) -> None:
    url = database.engine.url.render_as_string(hide_password=False)
    prefix = f"old{uuid.uuid4().hex[:8]}_"
    old = jobs_without_method(database.engine, prefix)
    with database.engine.begin() as conn:
        conn.execute(old.insert().values(**job_row(spec(Method.TRADES))))

    upgraded = Database.open(url, prefix)
    try:
        registry = CollectorRegistry()
        registry.register(JobStoreCollector(upgraded))
        labels = {"state": "QUEUED", "method": "trades"}
        counted = registry.get_sample_value("tempering_jobs", labels)
        with upgraded.engine.connect() as conn:
            stored = conn.execute(sa.select(upgraded.tables.jobs.c.method)).scalar_one()
    finally:
        upgraded.drop()
        upgraded.close()

    assert counted == 1
    assert stored == "trades"


def jobs_without_method(engine: sa.Engine, prefix: str) -> sa.Table:
    """The jobs table as created before it had a ``method`` column."""
    current = define_tables(prefix).jobs
    old = sa.Table(
        current.name,
        sa.MetaData(),
        *(
            sa.Column(
                c.name, c.type, primary_key=c.primary_key, nullable=c.nullable, unique=c.unique
            )
            for c in current.columns
            if c.name != "method"
        ),
    )
    old.create(engine)
    return old


def job_row(job_spec: JobSpec) -> dict[str, object]:
    now = utcnow()
    return {
        "id": "job-before-the-method-column",
        "tenant": "default",
        "state": JobState.QUEUED.value,
        "spec": job_spec.to_json(),
        "labels": {},
        "created_at": now,
        "updated_at": now,
        "version": 1,
        "reason": "",
        "cancel_requested": False,
        "attempts": 0,
        "outputs": [],
    }


# --- a real server, scraped over HTTP ---------------------------------------------------------


@pytest.fixture
def metered(settings: Settings) -> Iterator[RunningServer]:
    running = start_server(replace(settings, metrics_address="127.0.0.1:0"))
    yield running
    running.stop(grace=0)


@pytest.fixture
def metered_stub(metered: RunningServer) -> Iterator[pb_grpc.HardeningServiceStub]:
    with grpc.insecure_channel(f"127.0.0.1:{metered.port}") as channel:
        yield pb_grpc.HardeningServiceStub(channel)


def test_a_failed_rpc_is_counted_with_its_status_code(
    metered: RunningServer, metered_stub: pb_grpc.HardeningServiceStub
) -> None:
    with pytest.raises(grpc.RpcError) as raised:
        metered_stub.GetJob(pb.GetJobRequest(job_id="no-such-job"))
    assert metered.metrics_port is not None

    text = scrape(metered.metrics_port)

    assert raised.value.code() is grpc.StatusCode.NOT_FOUND
    assert sample(text, "tempering_rpc_handled_total", method="GetJob", code="NOT_FOUND") == 1
    assert sample(text, "tempering_rpc_handled_total", method="GetJob", code="OK") is None
    assert sample(text, "tempering_rpc_duration_seconds_count", method="GetJob") == 1


def test_a_failed_streaming_rpc_is_counted_with_its_status_code(
    metered: RunningServer, metered_stub: pb_grpc.HardeningServiceStub
) -> None:
    with pytest.raises(grpc.RpcError):
        list(metered_stub.WatchJob(pb.WatchJobRequest(job_id="no-such-job"), timeout=10))
    assert metered.metrics_port is not None

    text = scrape(metered.metrics_port)

    assert sample(text, "tempering_rpc_handled_total", method="WatchJob", code="NOT_FOUND") == 1


def test_uploads_count_their_bytes_by_kind(
    metered: RunningServer, metered_stub: pb_grpc.HardeningServiceStub
) -> None:
    data = digits_like()
    upload_dataset(metered_stub, data)
    assert metered.metrics_port is not None

    text = scrape(metered.metrics_port)

    assert sample(text, "tempering_uploaded_bytes_total", kind="dataset") == len(data)
    assert sample(text, "tempering_uploaded_bytes_total", kind="model") == 0
    assert sample(text, "tempering_rpc_handled_total", method="UploadDataset", code="OK") == 1


def test_stopping_the_server_closes_its_metrics_port(settings: Settings) -> None:
    running = start_server(replace(settings, metrics_address="127.0.0.1:0"))
    port = running.metrics_port
    assert port is not None
    scrape(port)

    running.stop(grace=0)

    with pytest.raises(urllib.error.URLError, match="refused"):
        scrape(port)


def test_no_metrics_address_serves_no_metrics(server: RunningServer) -> None:
    assert server.metrics_port is None


def test_a_malformed_metrics_address_is_refused(settings: Settings) -> None:
    with pytest.raises(SettingsError, match="TEMPERING_METRICS_ADDRESS"):
        start_server(replace(settings, metrics_address="9095"))


# --- a worker's figures -------------------------------------------------------------------------


def test_epoch_ends_give_the_worker_its_throughput_and_sample_count() -> None:
    metrics = WorkerMetrics()
    job = Job(
        id="j1",
        state=JobState.RUNNING,
        spec=spec(Method.PGD),
        labels={},
        created_at=utcnow(),
        updated_at=utcnow(),
        version=1,
    )

    metrics.progress(job, ProgressEvent(stage="training", epoch=1, epochs=2, step=3, steps=9))
    for epoch, rate in ((1, 250.0), (2, 200.0)):
        end = ProgressEvent(stage="training", epoch=epoch, samples=500, samples_per_second=rate)
        metrics.progress(job, end)
    metrics.finished(job, JobState.SUCCEEDED)

    def value(name: str, **labels: str) -> float | None:
        return metrics.registry.get_sample_value(name, labels)

    assert value("tempering_worker_training_samples_per_second", method="pgd") == 200.0
    assert value("tempering_worker_training_samples_total", method="pgd") == 1000
    assert value("tempering_worker_jobs_total", state="SUCCEEDED") == 1
    assert value("tempering_worker_jobs_total", state="FAILED") == 0


# --- end to end: a job run by a real worker, found in both endpoints ----------------------------


def served_port(process: Process, what: str, timeout: float = 60.0) -> int:
    """The port a process logged that it serves ``what`` on ("Prometheus metrics at ...")."""
    pattern = re.compile(rf"serving {what} at http://127\.0\.0\.1:(\d+)/metrics")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if found := pattern.search(process.log_path.read_text(errors="replace")):
            return int(found.group(1))
        time.sleep(0.2)
    raise TimeoutError(f"no {what!r} endpoint logged:\n{process.log_tail()}")


@pytest.fixture(scope="module")
def metered_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    folder = tmp_path_factory.mktemp("metered")
    env = base_env(
        {
            "TEMPERING_GRPC_ADDRESS": "127.0.0.1:0",
            "TEMPERING_METRICS_ADDRESS": "127.0.0.1:0",
            "TEMPERING_WORKER_METRICS_ADDRESS": "127.0.0.1:0",
        }
    )
    with running_stack(["--state-dir", str(folder / "state")], env, folder) as running:
        yield running


@pytest.mark.e2e
@pytest.mark.slow
def test_a_job_run_end_to_end_shows_in_the_server_and_worker_metrics(
    metered_stack: Stack, tmp_path: Path
) -> None:
    stub = metered_stack.stub
    x, y = digits_arrays()
    model_id = upload_model(stub, export_digits_mlp(tmp_path / "mlp.onnx"))
    train_id = upload_dataset(stub, npz_bytes(x[:256], y[:256]))
    job = stub.SubmitJob(pb.SubmitJobRequest(spec=fgsm_spec(model_id, train_id)))
    assert state_changes(watch_to_end(stub, job.id))[-1] == pb.JOB_STATE_SUCCEEDED, (
        metered_stack.logs()
    )

    server = scrape(served_port(metered_stack.server, "Prometheus metrics"))
    worker = scrape(served_port(metered_stack.server, "worker Prometheus metrics"))

    assert sample(server, "tempering_jobs", state="SUCCEEDED", method="fgsm") == 1
    labels = {"method": "fgsm", "state": "SUCCEEDED"}
    assert sample(server, "tempering_job_duration_seconds_count", **labels) == 1
    assert sample(server, "tempering_queue_depth") == 0
    assert sample(server, "tempering_rpc_handled_total", method="SubmitJob", code="OK") == 1
    assert (sample(server, "tempering_uploaded_bytes_total", kind="model") or 0) > 0
    assert (sample(server, "tempering_uploaded_bytes_total", kind="dataset") or 0) > 0
    throughput = sample(worker, "tempering_worker_training_samples_per_second", method="fgsm")
    assert (throughput or 0) > 0
    assert (sample(worker, "tempering_worker_training_samples_total", method="fgsm") or 0) > 0
    assert sample(worker, "tempering_worker_jobs_total", state="SUCCEEDED") == 1
