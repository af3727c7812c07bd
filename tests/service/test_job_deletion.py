"""DeleteJob through a real gRPC server and store: the job leaves GetJob and ListJobs, its
artifacts leave the disk unless something else refers to the same bytes, its uploads stay.

No worker runs: a test finishes a job through the job store (as a worker would) to give it
artifacts, and plays the worker that stops a job being cancelled."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import grpc
import pytest
from svc_helpers import digits_like, fgsm_spec, linear_onnx
from tempering.v1 import hardening_pb2 as pb
from tempering.v1 import hardening_pb2_grpc as pb_grpc

from service.api.server import RunningServer
from service.core.domain import JobState, OutputFile, OutputKind
from service.store.artifacts import LocalArtifactStore
from tests.shared_support import upload_dataset, upload_model

Stub = pb_grpc.HardeningServiceStub


@pytest.fixture
def inputs(stub: Stub) -> tuple[str, str]:
    return upload_model(stub, linear_onnx()), upload_dataset(stub, digits_like())


def submit(stub: Stub, inputs: tuple[str, str], seed: int = 7) -> pb.Job:
    return stub.SubmitJob(pb.SubmitJobRequest(spec=fgsm_spec(*inputs, seed=seed)))


def succeed(server: RunningServer, job_id: str, outputs: dict[OutputKind, bytes]) -> list[str]:
    """Finish the job as a worker would, with these outputs; their SHA-256s."""
    store, artifacts = server.stores.jobs, server.stores.artifacts
    assert store.claim(job_id, max_attempts=3) is not None
    files = []
    for kind, data in outputs.items():
        with artifacts.new_blob() as blob:
            blob.write(data)
            stored = blob.commit()
        files.append(OutputFile(kind, stored.sha256, stored.size_bytes))
    assert store.finish(job_id, JobState.SUCCEEDED, outputs=files)
    return [f.sha256 for f in files]


def blob_file(server: RunningServer, sha256: str) -> Path:
    artifacts = server.stores.artifacts
    assert isinstance(artifacts, LocalArtifactStore)
    return artifacts.blob_path(sha256)


def delete(stub: Stub, job_id: str, cancel: bool = False) -> pb.DeleteJobResponse:
    return stub.DeleteJob(pb.DeleteJobRequest(job_id=job_id, cancel=cancel), timeout=60)


def error_of(call: object) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as error:
        call()  # type: ignore[operator]
    return error.value


def test_a_deleted_job_is_gone_with_its_artifacts_and_its_uploads_stay(
    server: RunningServer, stub: Stub, inputs: tuple[str, str]
) -> None:
    job, other = submit(stub, inputs), submit(stub, inputs, seed=8)
    outputs = {OutputKind.HARDENED_MODEL: b"hardened model", OutputKind.REPORT: b'{"report": 1}'}
    blobs = succeed(server, job.id, outputs)

    deleted = delete(stub, job.id)

    assert (deleted.job_id, deleted.already_deleted) == (job.id, False)
    assert deleted.artifacts_removed == 2
    assert deleted.bytes_removed == sum(len(data) for data in outputs.values())
    assert not any(blob_file(server, sha256).exists() for sha256 in blobs)
    gone = error_of(lambda: stub.GetJob(pb.GetJobRequest(job_id=job.id)))
    assert gone.code() is grpc.StatusCode.NOT_FOUND
    listed = [j.id for j in stub.ListJobs(pb.ListJobsRequest()).jobs]
    assert listed == [other.id]
    assert submit(stub, inputs, seed=9).state == pb.JOB_STATE_QUEUED


def test_deleting_a_deleted_job_answers_already_deleted(
    server: RunningServer, stub: Stub, inputs: tuple[str, str]
) -> None:
    job = submit(stub, inputs)
    succeed(server, job.id, {OutputKind.REPORT: b"{}"})
    delete(stub, job.id)

    again = delete(stub, job.id)

    assert (again.job_id, again.already_deleted) == (job.id, True)
    assert (again.artifacts_removed, again.bytes_removed) == (0, 0)


def test_an_unknown_job_is_not_found(stub: Stub) -> None:
    assert error_of(lambda: delete(stub, "0" * 32)).code() is grpc.StatusCode.NOT_FOUND


def test_bytes_another_job_or_an_upload_refers_to_are_kept(
    server: RunningServer, stub: Stub, inputs: tuple[str, str]
) -> None:
    first, second = submit(stub, inputs), submit(stub, inputs, seed=8)
    shared = b"the same report bytes"
    succeed(server, second.id, {OutputKind.REPORT: shared})
    model_bytes = linear_onnx()
    [report, model] = succeed(
        server, first.id, {OutputKind.REPORT: shared, OutputKind.HARDENED_MODEL: model_bytes}
    )

    deleted = delete(stub, first.id)

    assert deleted.artifacts_removed == 0
    assert blob_file(server, report).exists()
    assert blob_file(server, model).exists()
    stream = stub.DownloadArtifact(
        pb.DownloadArtifactRequest(job_id=second.id, kind=pb.ARTIFACT_KIND_REPORT), timeout=10
    )
    assert b"".join(m.chunk for m in stream) == shared


def test_a_queued_job_is_refused_unless_cancelled_first(
    stub: Stub, inputs: tuple[str, str]
) -> None:
    job = submit(stub, inputs)

    refused = error_of(lambda: delete(stub, job.id))

    assert refused.code() is grpc.StatusCode.FAILED_PRECONDITION
    assert "QUEUED" in (refused.details() or "")
    assert "--cancel" in (refused.details() or "")
    assert stub.GetJob(pb.GetJobRequest(job_id=job.id)).state == pb.JOB_STATE_QUEUED
    assert not delete(stub, job.id, cancel=True).already_deleted
    assert not stub.ListJobs(pb.ListJobsRequest()).jobs


def test_a_running_job_is_refused_and_with_cancel_deleted_once_its_worker_stopped(
    server: RunningServer, stub: Stub, inputs: tuple[str, str]
) -> None:
    job = submit(stub, inputs)
    store = server.stores.jobs
    assert store.claim(job.id, max_attempts=3) is not None

    refused = error_of(lambda: delete(stub, job.id))
    assert refused.code() is grpc.StatusCode.FAILED_PRECONDITION
    assert stub.GetJob(pb.GetJobRequest(job_id=job.id)).state == pb.JOB_STATE_RUNNING

    def worker() -> None:
        while not store.is_cancel_requested(job.id):
            time.sleep(0.05)
        time.sleep(0.3)
        store.finish(job.id, JobState.CANCELLED, reason="cancelled")

    stopping = threading.Thread(target=worker)
    stopping.start()
    deleted = delete(stub, job.id, cancel=True)
    stopping.join(timeout=10)

    assert not deleted.already_deleted
    gone = error_of(lambda: stub.GetJob(pb.GetJobRequest(job_id=job.id)))
    assert gone.code() is grpc.StatusCode.NOT_FOUND
