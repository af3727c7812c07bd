"""Webhooks on job completion, through a real gRPC server and a real HTTP receiver on port 0.

No worker runs in most of these: a job cancelled while queued ends at once and is announced
like any other; the last test runs a real job with a real worker."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import grpc
import pytest
from e2e_support import running_stack, state_changes, watch_to_end
from service_support import make_settings
from svc_helpers import digits_like, fgsm_spec, linear_onnx
from tempering.v1 import hardening_pb2 as pb
from tempering.v1 import hardening_pb2_grpc as pb_grpc

from client.webhooks import InvalidSignature, verify_signature
from service.api.server import RunningServer, start_server
from service.core.domain import JobSpec, JobState, NewJob
from service.core.settings import Settings, SettingsError
from service.core.tenancy import DEFAULT_TENANT
from service.store.db import Database
from service.store.jobstore import JobStore
from service.webhooks.notifier import Delivery, Outbox
from service.webhooks.signing import tenant_secret
from tests.shared_support import (
    base_env,
    digits_arrays,
    export_digits_mlp,
    npz_bytes,
    upload_dataset,
    upload_model,
)

MASTER_KEY = b"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
LATER = datetime(2100, 1, 1, tzinfo=UTC)
HOOK = ("https://hooks.example/a",)
Stub = pb_grpc.HardeningServiceStub


# --- a receiver -------------------------------------------------------------------------------


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def payload(self) -> dict[str, Any]:
        return json.loads(self.body)


@dataclass
class Receiver:
    """An HTTP server that records every POST and answers each path from a script (then 200)."""

    port: int = 0
    requests: list[Received] = field(default_factory=list)
    script: dict[str, list[tuple[int, dict[str, str]]]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    gates: dict[str, threading.Event] = field(default_factory=dict)
    """Paths whose answers wait until their event is set."""

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def answer(self, path: str, status: int, **headers: str) -> None:
        self.script.setdefault(path, []).append((status, headers))

    def to(self, path: str) -> list[Received]:
        with self.lock:
            return [r for r in self.requests if r.path == path]

    def wait_for(self, path: str, count: int = 1, timeout: float = 30.0) -> list[Received]:
        return eventually(lambda: (got := self.to(path)) and len(got) >= count and got, timeout)

    def handle(self, path: str, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, str]]:
        with self.lock:
            self.requests.append(Received(path, headers, body))
            queued = self.script.get(path)
            return queued.pop(0) if queued else (200, {})


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            status, headers = state.handle(self.path, dict(self.headers.items()), body)
            if gate := state.gates.get(self.path):
                gate.wait(30)
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *_: Any) -> None:
            pass

    http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.port = http.server_address[1]
    thread = threading.Thread(target=http.serve_forever, daemon=True)
    thread.start()
    yield state
    http.shutdown()
    http.server_close()


def eventually(probe: Callable[[], Any], timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := probe():
            return value
        time.sleep(0.1)
    raise AssertionError(f"not within {timeout} s")


# --- a server with webhooks -------------------------------------------------------------------


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    path = tmp_path / "webhook-master.key"
    path.write_bytes(MASTER_KEY + b"\n")
    return path


@pytest.fixture
def settings(tmp_path: Path, key_file: Path, receiver: Receiver) -> Settings:
    return make_settings(
        tmp_path,
        webhook_secret_file=key_file,
        webhook_allowed_hosts=f"127.0.0.1:{receiver.port}",
    )


@contextlib.contextmanager
def serving(settings: Settings) -> Iterator[tuple[RunningServer, Stub]]:
    running = start_server(settings)
    try:
        with grpc.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            yield running, pb_grpc.HardeningServiceStub(channel)
    finally:
        running.stop(grace=0)


def submit(stub: Stub, **spec_fields: Any) -> pb.Job:
    model_id, data_id = upload_model(stub, linear_onnx()), upload_dataset(stub, digits_like())
    return stub.SubmitJob(pb.SubmitJobRequest(spec=fgsm_spec(model_id, data_id, **spec_fields)))


def cancelled_job(stub: Stub, webhook_url: str = "") -> pb.Job:
    job = submit(stub, webhook_url=webhook_url)
    stub.CancelJob(pb.CancelJobRequest(job_id=job.id))
    return job


def settled(server: RunningServer, job_id: str) -> Delivery:
    """The job's one delivery, once it is delivered or given up."""
    outbox = Outbox(server.stores.database)

    def done() -> Delivery | None:
        (delivery,) = outbox.of_job(job_id)
        return delivery if delivery.delivered_at or delivery.gave_up_at else None

    return eventually(done)


def submit_error(stub: Stub, webhook_url: str) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as error:
        submit(stub, webhook_url=webhook_url)
    return error.value


# --- what a receiver hears --------------------------------------------------------------------


def test_a_job_cancelled_while_queued_is_announced_once(
    server: RunningServer, stub: Stub, receiver: Receiver
) -> None:
    job = cancelled_job(stub, receiver.url("/hook"))

    delivery = settled(server, job.id)

    (received,) = receiver.to("/hook")
    assert delivery.delivered_at is not None
    assert received.payload["event"] == "job.finished"
    assert received.payload["job"]["id"] == job.id
    assert received.payload["job"]["state"] == "CANCELLED"
    assert received.payload["delivery_id"] == received.headers["Tempering-Delivery"] == delivery.id
    assert received.headers["Tempering-Event"] == "job.finished"


def test_the_signature_verifies_with_the_tenants_derived_secret(
    stub: Stub, receiver: Receiver
) -> None:
    cancelled_job(stub, receiver.url("/hook"))

    (received,) = receiver.wait_for("/hook")

    secret = tenant_secret(MASTER_KEY, DEFAULT_TENANT)
    verify_signature(secret, received.headers["Tempering-Signature"], received.body)


def test_another_tenants_secret_does_not_verify(stub: Stub, receiver: Receiver) -> None:
    cancelled_job(stub, receiver.url("/hook"))

    (received,) = receiver.wait_for("/hook")

    with pytest.raises(InvalidSignature):
        verify_signature(
            tenant_secret(MASTER_KEY, "bob"), received.headers["Tempering-Signature"], received.body
        )


def test_the_payload_carries_no_secret(stub: Stub, receiver: Receiver) -> None:
    cancelled_job(stub, receiver.url("/hook"))

    (received,) = receiver.wait_for("/hook")

    assert tenant_secret(MASTER_KEY, DEFAULT_TENANT).encode() not in received.body
    assert MASTER_KEY not in received.body


def test_a_receiver_answering_500_hears_again_until_it_answers_200(
    server: RunningServer, stub: Stub, receiver: Receiver
) -> None:
    receiver.answer("/flaky", 500)
    job = cancelled_job(stub, receiver.url("/flaky"))

    delivery = settled(server, job.id)

    first, second = receiver.to("/flaky")
    assert delivery.delivered_at is not None
    assert delivery.attempts == 2
    assert first.headers["Tempering-Delivery"] == second.headers["Tempering-Delivery"]


def test_a_receiver_that_hangs_holds_back_no_other_delivery(stub: Stub, receiver: Receiver) -> None:
    receiver.gates["/hangs"] = threading.Event()
    try:
        cancelled_job(stub, receiver.url("/hangs"))
        receiver.wait_for("/hangs", timeout=30)
        cancelled_job(stub, receiver.url("/quick"))

        assert receiver.wait_for("/quick", timeout=5), "a hanging receiver held the other back"
    finally:
        receiver.gates["/hangs"].set()


def test_a_receiver_answering_400_is_given_up_at_once(
    server: RunningServer, stub: Stub, receiver: Receiver
) -> None:
    receiver.answer("/refuses", 400)
    job = cancelled_job(stub, receiver.url("/refuses"))

    delivery = settled(server, job.id)

    assert delivery.gave_up_at is not None
    assert delivery.attempts == 1
    assert delivery.last_error == "HTTP 400"
    assert len(receiver.to("/refuses")) == 1


def test_a_redirect_is_not_followed(server: RunningServer, stub: Stub, receiver: Receiver) -> None:
    receiver.answer("/moved", 307, Location=receiver.url("/elsewhere"))
    job = cancelled_job(stub, receiver.url("/moved"))

    delivery = settled(server, job.id)

    assert delivery.gave_up_at is not None
    assert "redirect" in delivery.last_error
    assert receiver.to("/elsewhere") == []


def test_the_tenants_own_webhook_hears_of_jobs_that_name_none(
    tmp_path: Path, key_file: Path, receiver: Receiver
) -> None:
    settings = make_settings(
        tmp_path,
        webhook_secret_file=key_file,
        tenant_webhooks=f"{DEFAULT_TENANT}={receiver.url('/tenant')}",
    )
    with serving(settings) as (_, stub):
        job = cancelled_job(stub)

        (received,) = receiver.wait_for("/tenant")

    assert received.payload["job"]["id"] == job.id


# --- what SubmitJob refuses -------------------------------------------------------------------


def test_a_webhook_to_a_host_not_allowed_is_permission_denied(stub: Stub) -> None:
    error = submit_error(stub, "http://169.254.169.254/latest/meta-data")

    assert error.code() is grpc.StatusCode.PERMISSION_DENIED
    assert "TEMPERING_WEBHOOK_ALLOWED_HOSTS" in error.details()


def test_an_allowed_host_on_another_port_is_permission_denied(
    stub: Stub, receiver: Receiver
) -> None:
    error = submit_error(stub, f"http://127.0.0.1:{receiver.port + 1}/hook")

    assert error.code() is grpc.StatusCode.PERMISSION_DENIED


def test_a_webhook_url_that_is_not_http_is_invalid_argument(stub: Stub) -> None:
    error = submit_error(stub, "file:///etc/passwd")

    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "http" in error.details()


def test_a_server_without_a_secret_file_refuses_job_webhooks(
    tmp_path: Path, receiver: Receiver
) -> None:
    settings = make_settings(tmp_path, webhook_allowed_hosts=f"127.0.0.1:{receiver.port}")
    with serving(settings) as (_, stub):
        error = submit_error(stub, receiver.url("/hook"))

    assert error.code() is grpc.StatusCode.FAILED_PRECONDITION
    assert "TEMPERING_WEBHOOK_SECRET_FILE" in error.details()


# --- settings and the operator's command ------------------------------------------------------


def test_tenant_webhooks_without_a_secret_file_are_a_settings_error(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="TEMPERING_WEBHOOK_SECRET_FILE"):
        make_settings(tmp_path, tenant_webhooks="alice=https://hooks.example/a")


def test_a_malformed_tenant_webhook_names_its_setting(tmp_path: Path, key_file: Path) -> None:
    with pytest.raises(SettingsError, match="TEMPERING_TENANT_WEBHOOKS"):
        make_settings(tmp_path, webhook_secret_file=key_file, tenant_webhooks="alice:ftp://x")


def test_a_short_master_key_stops_the_server_from_starting(tmp_path: Path) -> None:
    short = tmp_path / "short.key"
    short.write_text("not-a-key")

    with pytest.raises(SettingsError, match="at least 32"):
        start_server(make_settings(tmp_path, webhook_secret_file=short))


def test_webhook_secret_command_prints_the_tenants_derived_secret(
    tmp_path: Path, key_file: Path
) -> None:
    env = base_env({"TEMPERING_STATE_DIR": str(tmp_path)})
    command = ["webhook-secret", "alice", "--webhook-secret-file", str(key_file)]
    printed = subprocess.run(
        [sys.executable, "-m", "service", *command],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout

    assert printed.strip() == tenant_secret(MASTER_KEY, "alice")


# --- the outbox -------------------------------------------------------------------------------


def recorded_job(database: Database, *, finished: bool) -> str:
    store = JobStore(database)
    spec = JobSpec(model_id="model-x", train_dataset_id="dataset-y")
    job, _ = store.create(NewJob(spec=spec), webhook_urls=HOOK)
    if finished:
        store.finish(job.id, JobState.FAILED, reason="boom")
    return job.id


def test_a_delivery_is_not_due_while_its_job_is_queued(database: Database) -> None:
    job_id = recorded_job(database, finished=False)
    outbox = Outbox(database)

    assert outbox.due(LATER) == []
    assert len(outbox.of_job(job_id)) == 1


def test_a_delivery_claimed_by_one_server_is_not_claimed_by_another(database: Database) -> None:
    recorded_job(database, finished=True)
    outbox = Outbox(database)
    (due,) = outbox.due(LATER)

    first = outbox.claim(due, LATER, timedelta(hours=1))
    second = outbox.claim(due, LATER, timedelta(hours=1))

    assert first is not None
    assert first.attempts == 1
    assert second is None


def test_deleting_a_job_deletes_its_deliveries(database: Database) -> None:
    job_id = recorded_job(database, finished=True)

    JobStore(database).delete(job_id)

    assert Outbox(database).of_job(job_id) == []


# --- end to end -------------------------------------------------------------------------------


@pytest.mark.e2e
@pytest.mark.slow
def test_a_job_that_succeeds_is_announced_with_its_scores_and_outputs(
    tmp_path: Path, key_file: Path, receiver: Receiver
) -> None:
    env = base_env(
        {
            "TEMPERING_GRPC_ADDRESS": "127.0.0.1:0",
            "TEMPERING_WEBHOOK_SECRET_FILE": str(key_file),
            "TEMPERING_WEBHOOK_ALLOWED_HOSTS": f"127.0.0.1:{receiver.port}",
        }
    )
    x, y = digits_arrays()
    model = export_digits_mlp(tmp_path / "mlp.onnx")
    with running_stack(["--state-dir", str(tmp_path / "state")], env, tmp_path) as stack:
        model_id = upload_model(stack.stub, model)
        train_id = upload_dataset(stack.stub, npz_bytes(x[:400], y[:400]))
        spec = fgsm_spec(model_id, train_id, webhook_url=receiver.url("/registry"))
        job = stack.stub.SubmitJob(pb.SubmitJobRequest(spec=spec, labels={"model": "digits"}))
        assert state_changes(watch_to_end(stack.stub, job.id))[-1] == pb.JOB_STATE_SUCCEEDED
        finished = stack.stub.GetJob(pb.GetJobRequest(job_id=job.id))

        (received,) = receiver.wait_for("/registry")

    verify_signature(
        tenant_secret(MASTER_KEY, DEFAULT_TENANT),
        received.headers["Tempering-Signature"],
        received.body,
    )
    announced = received.payload["job"]
    assert announced["id"] == job.id
    assert announced["state"] == "SUCCEEDED"
    assert announced["labels"] == {"model": "digits"}
    hardened = announced["result"]["hardened"]["robust_accuracy"]
    assert hardened["value"] == pytest.approx(finished.result.hardened.robust_accuracy.value)
    assert hardened["low"] <= hardened["value"] <= hardened["high"]
    assert {o["sha256"] for o in announced["outputs"]} == {o.sha256 for o in finished.outputs}
