"""Tenant isolation through a real server: bob sees nothing of alice's, and what he is told
about her ids is word for word what he is told about ids that do not exist.

No worker runs: jobs stay queued, except the one a test finishes through the job store to have
artifacts to download."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import pytest
from sec_helpers import (
    Keys,
    Metadata,
    Stub,
    dataset,
    error_of,
    linear_onnx,
    shape,
    spec,
    submit,
    unknown_job_id,
    unknown_model_id,
    upload_dataset,
    upload_model,
)
from tempering.v1 import hardening_pb2 as pb
from tempering.v1 import hardening_pb2_grpc as pb_grpc

from service.api.server import RunningServer
from service.core.domain import JobState, OutputFile, OutputKind
from tests.engine.text import support
from tests.service.text_support import tokenizer_requests

NOT_FOUND = grpc.StatusCode.NOT_FOUND


@pytest.fixture
def stub(channel: grpc.Channel) -> Stub:
    return pb_grpc.HardeningServiceStub(channel)


@pytest.fixture
def alice(keys: Keys) -> Metadata:
    return keys.metadata("alice")


@pytest.fixture
def bob(keys: Keys) -> Metadata:
    return keys.metadata("bob")


@pytest.fixture
def alice_job(stub: Stub, alice: Metadata) -> pb.Job:
    model = upload_model(stub, alice, linear_onnx()).artifact_id
    data = upload_dataset(stub, alice, dataset()).artifact_id
    return submit(stub, alice, spec(model, data), labels={"team": "a"})


def as_bob_and_as_nobody(
    call: Callable[[str], Any], alice_id: str, unknown_id: str
) -> tuple[tuple[grpc.StatusCode, str], tuple[grpc.StatusCode, str]]:
    """The error bob gets for alice's id and for an unknown id, ids masked."""
    theirs = error_of(lambda: call(alice_id))
    nobodys = error_of(lambda: call(unknown_id))
    return shape(theirs, alice_id), shape(nobodys, unknown_id)


def test_another_tenants_job_is_not_found_like_an_unknown_job(
    stub: Stub, alice: Metadata, bob: Metadata, alice_job: pb.Job
) -> None:
    unknown = unknown_job_id()
    calls = {
        "GetJob": lambda job_id: stub.GetJob(
            pb.GetJobRequest(job_id=job_id), metadata=bob, timeout=10
        ),
        "CancelJob": lambda job_id: stub.CancelJob(
            pb.CancelJobRequest(job_id=job_id), metadata=bob, timeout=10
        ),
        "WatchJob": lambda job_id: stub.WatchJob(
            pb.WatchJobRequest(job_id=job_id), metadata=bob, timeout=10
        ),
        "DeleteJob": lambda job_id: stub.DeleteJob(
            pb.DeleteJobRequest(job_id=job_id, cancel=True), metadata=bob, timeout=10
        ),
        "DownloadArtifact": lambda job_id: stub.DownloadArtifact(
            pb.DownloadArtifactRequest(job_id=job_id, kind=pb.ARTIFACT_KIND_REPORT),
            metadata=bob,
            timeout=10,
        ),
    }

    for name, call in calls.items():
        theirs, nobodys = as_bob_and_as_nobody(call, alice_job.id, unknown)
        assert theirs == nobodys, name
        assert theirs[0] is NOT_FOUND, name

    # bob's cancel and delete changed nothing; alice still sees her job, queued
    mine = stub.GetJob(pb.GetJobRequest(job_id=alice_job.id), metadata=alice, timeout=10)
    assert mine.state == pb.JOB_STATE_QUEUED
    assert not mine.cancel_requested


def test_listing_shows_only_the_callers_jobs(
    stub: Stub, alice: Metadata, bob: Metadata, alice_job: pb.Job
) -> None:
    model = upload_model(stub, bob, linear_onnx(seed=3)).artifact_id
    data = upload_dataset(stub, bob, dataset(seed=4)).artifact_id
    bobs = submit(stub, bob, spec(model, data), labels={"team": "a"})

    def listed(metadata: Metadata, **filters: object) -> list[str]:
        request = pb.ListJobsRequest(**filters)  # type: ignore[arg-type]
        return [j.id for j in stub.ListJobs(request, metadata=metadata, timeout=10).jobs]

    assert listed(alice) == [alice_job.id]
    assert listed(bob) == [bobs.id]
    assert listed(bob, labels={"team": "a"}) == [bobs.id]
    assert listed(bob, states=[pb.JOB_STATE_QUEUED]) == [bobs.id]
    assert listed(alice, labels={"team": "a"}, page_size=1) == [alice_job.id]


def test_another_tenants_upload_cannot_be_used(stub: Stub, alice: Metadata, bob: Metadata) -> None:
    alices_model = upload_model(stub, alice, linear_onnx(seed=5)).artifact_id
    bobs_data = upload_dataset(stub, bob, dataset()).artifact_id
    unknown = unknown_model_id()

    theirs = error_of(lambda: submit(stub, bob, spec(alices_model, bobs_data)))
    nobodys = error_of(lambda: submit(stub, bob, spec(unknown, bobs_data)))

    assert shape(theirs, alices_model) == shape(nobodys, unknown)
    assert theirs.code() is NOT_FOUND


def test_another_tenants_tokenizer_cannot_be_used(
    stub: Stub, alice: Metadata, bob: Metadata
) -> None:
    tokenizer = support.word_level_tokenizer(support.sentences(20)).to_str().encode()
    alices = stub.UploadTokenizer(
        tokenizer_requests(tokenizer), metadata=alice, timeout=60
    ).artifact_id
    model = upload_model(stub, bob, linear_onnx(seed=6)).artifact_id
    data = upload_dataset(stub, bob, dataset()).artifact_id
    unknown = "tokenizer-" + "0" * 64

    def with_tokenizer(tokenizer_id: str) -> pb.JobSpec:
        job_spec = spec(model, data)
        job_spec.tokenizer_id = tokenizer_id
        job_spec.training.pgd.SetInParent()  # fgsm is refused for text before ids are looked up
        return job_spec

    theirs = error_of(lambda: submit(stub, bob, with_tokenizer(alices)))
    nobodys = error_of(lambda: submit(stub, bob, with_tokenizer(unknown)))

    assert shape(theirs, alices) == shape(nobodys, unknown)
    assert theirs.code() is NOT_FOUND
    assert "UploadTokenizer" in (theirs.details() or "")


def test_the_same_bytes_uploaded_by_two_tenants_tell_neither_about_the_other(
    stub: Stub, alice: Metadata, bob: Metadata
) -> None:
    model = linear_onnx(seed=9)
    first = upload_model(stub, alice, model)

    bobs = upload_model(stub, bob, model)
    bobs_again = upload_model(stub, bob, model)

    assert not first.already_present
    assert not bobs.already_present  # alice's upload is not revealed
    assert bobs_again.already_present  # his own is
    data = upload_dataset(stub, bob, dataset()).artifact_id
    assert submit(stub, bob, spec(bobs.artifact_id, data)).state == pb.JOB_STATE_QUEUED


def test_idempotency_keys_are_per_tenant(stub: Stub, alice: Metadata, bob: Metadata) -> None:
    def job_of(metadata: Metadata, epochs: int) -> pb.Job:
        model = upload_model(stub, metadata, linear_onnx()).artifact_id
        data = upload_dataset(stub, metadata, dataset()).artifact_id
        return submit(stub, metadata, spec(model, data, epochs=epochs), idempotency_key="nightly")

    alices = job_of(alice, epochs=1)
    bobs = job_of(bob, epochs=2)  # other parameters: no ALREADY_EXISTS, his own job

    assert bobs.id != alices.id
    assert job_of(bob, epochs=2).id == bobs.id
    assert job_of(alice, epochs=1).id == alices.id
    with pytest.raises(grpc.RpcError) as refused:
        job_of(alice, epochs=3)
    assert refused.value.code() is grpc.StatusCode.ALREADY_EXISTS
    assert bobs.id not in (refused.value.details() or "")


def test_another_tenants_artifacts_cannot_be_downloaded(
    keyed_server: RunningServer,
    stub: Stub,
    alice: Metadata,
    bob: Metadata,
    alice_job: pb.Job,
    tmp_path: Path,
) -> None:
    report = tmp_path / "report.json"
    report.write_text('{"secret": "alice"}')
    blob = keyed_server.stores.artifacts.put_file(report)
    store = keyed_server.stores.jobs
    assert store.claim(alice_job.id, max_attempts=3) is not None
    store.finish(
        alice_job.id,
        JobState.SUCCEEDED,
        outputs=[OutputFile(OutputKind.REPORT, blob.sha256, blob.size_bytes)],
    )

    def download(metadata: Metadata, job_id: str) -> bytes:
        stream = stub.DownloadArtifact(
            pb.DownloadArtifactRequest(job_id=job_id, kind=pb.ARTIFACT_KIND_REPORT),
            metadata=metadata,
            timeout=10,
        )
        return b"".join(m.chunk for m in stream)

    assert download(alice, alice_job.id) == report.read_bytes()
    unknown = unknown_job_id()
    theirs = error_of(lambda: download(bob, alice_job.id))
    nobodys = error_of(lambda: download(bob, unknown))
    assert shape(theirs, alice_job.id) == shape(nobodys, unknown)
    assert theirs.code() is NOT_FOUND
    # a finished job of alice's is as invisible to bob's watch and cancel as a queued one
    watched = error_of(
        lambda: stub.WatchJob(pb.WatchJobRequest(job_id=alice_job.id), metadata=bob, timeout=10)
    )
    assert watched.code() is NOT_FOUND


def test_a_job_alice_deleted_is_not_found_for_bob_and_already_deleted_for_her(
    stub: Stub, alice: Metadata, bob: Metadata, alice_job: pb.Job
) -> None:
    def delete(metadata: Metadata) -> pb.DeleteJobResponse:
        request = pb.DeleteJobRequest(job_id=alice_job.id, cancel=True)
        return stub.DeleteJob(request, metadata=metadata, timeout=30)

    assert not delete(alice).already_deleted

    assert delete(alice).already_deleted
    theirs, nobodys = as_bob_and_as_nobody(
        lambda job_id: stub.DeleteJob(pb.DeleteJobRequest(job_id=job_id), metadata=bob, timeout=10),
        alice_job.id,
        unknown_job_id(),
    )
    assert theirs == nobodys
    assert theirs[0] is NOT_FOUND


def test_the_owner_can_watch_and_cancel(stub: Stub, alice: Metadata, alice_job: pb.Job) -> None:
    cancelled = stub.CancelJob(pb.CancelJobRequest(job_id=alice_job.id), metadata=alice, timeout=10)
    events = list(
        stub.WatchJob(pb.WatchJobRequest(job_id=alice_job.id), metadata=alice, timeout=10)
    )

    assert cancelled.state == pb.JOB_STATE_CANCELLED
    assert events[-1].state == pb.JOB_STATE_CANCELLED
