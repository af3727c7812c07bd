"""Every string and repeated field the API takes is bounded and printable, every response page
fits a default client, and no refusal quotes a megabyte back or shows a server path (issue 15,
findings D, E, I and J). The server runs on the real PostgreSQL, which cannot store a NUL."""

from __future__ import annotations

import dataclasses
import logging
import os
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import grpc
import pytest
from onnx import TensorProto, helper
from sec_helpers import (
    Keys,
    Metadata,
    StartServer,
    Stub,
    dataset,
    error_of,
    linear_onnx,
    sha256,
    spec,
    submit,
    upload_dataset,
    upload_model,
)
from tempering.v1 import hardening_pb2 as pb
from tempering.v1 import hardening_pb2_grpc as pb_grpc

from service.api.interceptor import public_message
from service.api.server import RunningServer
from service.core.domain import JobSpec, NewJob
from service.core.limits import MAX_MESSAGE_CHARS
from tests.shared_support import POSTGRES_URL, postgres_available

NUL = "\x00"
MEGABYTE = "m" * (1024 * 1024)
SHORT_MESSAGE = 400


@pytest.fixture
def pg_server(start: StartServer, keys: Keys) -> RunningServer:
    if not postgres_available():
        message = f"PostgreSQL is not reachable at {POSTGRES_URL}"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return start(
        api_keys_file=keys.file,
        database_url=POSTGRES_URL,
        table_prefix=f"b{uuid.uuid4().hex[:10]}_",
    )


@pytest.fixture
def stub(pg_server: RunningServer) -> Iterator[Stub]:
    with grpc.insecure_channel(f"127.0.0.1:{pg_server.port}") as channel:
        yield pb_grpc.HardeningServiceStub(channel)


@pytest.fixture
def alice(keys: Keys) -> Metadata:
    return keys.metadata("alice")


@pytest.fixture
def inputs(stub: Stub, alice: Metadata) -> tuple[str, str]:
    model = upload_model(stub, alice, linear_onnx()).artifact_id
    return model, upload_dataset(stub, alice, dataset()).artifact_id


def _named_model_upload(name: str) -> Iterator[pb.UploadModelRequest]:
    data = linear_onnx()
    header = pb.ModelUploadHeader(
        name=name, format=pb.MODEL_FORMAT_ONNX, size_bytes=len(data), sha256=sha256(data)
    )
    yield pb.UploadModelRequest(header=header)
    yield pb.UploadModelRequest(chunk=data)


Call = Callable[[Stub, Metadata, tuple[str, str], str], Any]
"""A call that puts ``value`` into one field of a request."""


def _submit_with(**fields: Any) -> Call:
    def call(stub: Stub, md: Metadata, ids: tuple[str, str], value: str) -> Any:
        job_spec = spec(*ids)
        request_fields: dict[str, Any] = {}
        for name, where in fields.items():
            if where == "spec":
                setattr(job_spec, name, value)
            elif where == "mlflow":
                job_spec.mlflow.experiment = value
            elif where == "label key":
                request_fields["labels"] = {value: "v"}
            elif where == "label value":
                request_fields["labels"] = {"team": value}
            else:
                request_fields[name] = value
        return submit(stub, md, job_spec, **request_fields)

    return call


CALLS: dict[str, Call] = {
    "upload name": lambda stub, md, ids, v: stub.UploadModel(
        _named_model_upload(v), metadata=md, timeout=30
    ),
    "label key": _submit_with(labels="label key"),
    "label value": _submit_with(labels="label value"),
    "idempotency key": _submit_with(idempotency_key="request"),
    "model id": _submit_with(model_id="spec"),
    "dataset id": _submit_with(train_dataset_id="spec"),
    "architecture": _submit_with(architecture="spec"),
    "webhook url": _submit_with(webhook_url="spec"),
    "mlflow experiment": _submit_with(experiment="mlflow"),
    "label filter": lambda stub, md, ids, v: stub.ListJobs(
        pb.ListJobsRequest(labels={"team": v}), metadata=md, timeout=30
    ),
    "job id (GetJob)": lambda stub, md, ids, v: stub.GetJob(
        pb.GetJobRequest(job_id=v), metadata=md, timeout=30
    ),
    "job id (CancelJob)": lambda stub, md, ids, v: stub.CancelJob(
        pb.CancelJobRequest(job_id=v), metadata=md, timeout=30
    ),
    "job id (WatchJob)": lambda stub, md, ids, v: stub.WatchJob(
        pb.WatchJobRequest(job_id=v), metadata=md, timeout=30
    ),
    "job id (DownloadArtifact)": lambda stub, md, ids, v: stub.DownloadArtifact(
        pb.DownloadArtifactRequest(job_id=v, kind=pb.ARTIFACT_KIND_REPORT),
        metadata=md,
        timeout=30,
    ),
}


@pytest.mark.parametrize("field", list(CALLS))
def test_a_nul_byte_in_any_field_is_invalid_argument_and_no_error_is_logged(
    field: str,
    stub: Stub,
    alice: Metadata,
    inputs: tuple[str, str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    error = error_of(lambda: CALLS[field](stub, alice, inputs, f"ab{NUL}cd"))

    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT, error.details()
    assert "control character U+0000" in error.details()
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


@pytest.mark.parametrize("character", ["\n", "\x1b", "\x7f"])
def test_other_control_characters_in_ids_are_invalid_argument(
    character: str, stub: Stub, alice: Metadata
) -> None:
    error = error_of(
        lambda: stub.GetJob(pb.GetJobRequest(job_id=f"job{character}"), metadata=alice, timeout=30)
    )

    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "job_id contains the control character" in error.details()


@pytest.mark.parametrize("field", list(CALLS))
def test_a_megabyte_in_any_field_gets_a_short_invalid_argument(
    field: str, stub: Stub, alice: Metadata, inputs: tuple[str, str]
) -> None:
    error = error_of(lambda: CALLS[field](stub, alice, inputs, MEGABYTE))

    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT, error.details()
    assert "characters long; this server accepts at most" in error.details()
    assert len(error.details()) < SHORT_MESSAGE


def test_repeated_fields_are_bounded(stub: Stub, alice: Metadata, inputs: tuple[str, str]) -> None:
    job_spec = spec(*inputs)
    job_spec.threat_model.lower[:] = [0.0] * 5000
    job_spec.threat_model.upper[:] = [1.0] * 5000
    too_many_bounds = error_of(lambda: submit(stub, alice, job_spec))
    labels = {f"k{i}": "v" for i in range(40)}
    too_many_filters = error_of(
        lambda: stub.ListJobs(pb.ListJobsRequest(labels=labels), metadata=alice, timeout=30)
    )

    assert too_many_bounds.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "spec.threat_model.lower has 5000 entries" in too_many_bounds.details()
    assert too_many_filters.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "labels has 40 entries" in too_many_filters.details()


def test_fields_at_their_limits_are_accepted(
    stub: Stub, alice: Metadata, inputs: tuple[str, str]
) -> None:
    labels = {f"key-{i:02d}-" + "k" * 56: "v" * 256 for i in range(32)}
    job = submit(stub, alice, spec(*inputs), labels=labels, idempotency_key="i" * 200)

    assert job.state == pb.JOB_STATE_QUEUED
    assert dict(job.labels) == labels


def test_list_jobs_pages_fit_a_default_client_whatever_the_tenant_stored(
    pg_server: RunningServer, stub: Stub, alice: Metadata
) -> None:
    """Jobs stored before the limits, with 1.5 MB architectures: one page of all three would be
    4.5 MB, past the client's default 4 MiB limit."""
    base = JobSpec(model_id=f"model-{'ab' * 32}", train_dataset_id=f"dataset-{'ab' * 32}")
    stored = [
        pg_server.stores.jobs.create(
            NewJob(spec=dataclasses.replace(base, architecture=f"{i}" * 1_500_000), tenant="alice")
        )[0].id
        for i in range(3)
    ]

    listed: list[str] = []
    token, pages = "", 0
    while True:
        page = stub.ListJobs(pb.ListJobsRequest(page_token=token), metadata=alice, timeout=30)
        assert page.ByteSize() < 4 * 1024 * 1024
        listed += [job.id for job in page.jobs]
        pages += 1
        token = page.next_page_token
        if not token:
            break

    assert listed == stored[::-1]
    assert pages >= 2


def test_a_model_onnxruntime_cannot_load_is_refused_without_the_server_path(
    pg_server: RunningServer, stub: Stub, alice: Metadata
) -> None:
    graph = helper.make_graph(
        [helper.make_node("Boom", ["x"], ["logits"], domain="evil.ops")],
        "unknown-op",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 16])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 4])],
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("evil.ops", 1)]
    )
    model.ir_version = 8
    model_id = upload_model(stub, alice, model.SerializeToString()).artifact_id
    dataset_id = upload_dataset(stub, alice, dataset()).artifact_id

    error = error_of(lambda: submit(stub, alice, spec(model_id, dataset_id)))

    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "onnxruntime cannot load the model" in error.details()
    assert "<server path>" in error.details()
    assert str(pg_server.stores.artifacts.root) not in error.details()  # type: ignore[attr-defined]
    assert "/blobs/" not in error.details()


def test_public_messages_keep_urls_and_relative_paths_and_are_cut() -> None:
    assert public_message("Load model from /srv/t/artifacts/blobs/69/c5/ab failed: x") == (
        "Load model from <server path> failed: x"
    )
    kept = "https://hooks.example/a/b is not allowed; see docs/security.md (s3://bucket/p/q)"
    assert public_message(kept) == kept
    assert len(public_message("x" * 10 * MAX_MESSAGE_CHARS)) <= MAX_MESSAGE_CHARS
