"""Open WatchJob streams can never take every server thread: beyond the limit a watch gets
RESOURCE_EXHAUSTED at once, and GetJob keeps answering while the watches stay open."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from service_support import make_settings
from svc_helpers import digits_like, fgsm_spec, linear_onnx
from tempering.v1 import hardening_pb2 as pb
from tempering.v1 import hardening_pb2_grpc as pb_grpc

from service.api.server import RunningServer, start_server
from service.api.watch_limit import watch_limit
from tests.shared_support import upload_dataset, upload_model

THREADS = 4


@pytest.fixture
def small_server(tmp_path: Path) -> Iterator[RunningServer]:
    running = start_server(
        make_settings(tmp_path, grpc_threads=THREADS, tenant_max_watches=THREADS)
    )
    yield running
    running.stop(grace=0)


def test_watch_limit_keeps_a_quarter_of_the_threads() -> None:
    assert [watch_limit(n) for n in (2, 4, 8, 32, 128)] == [1, 3, 6, 24, 96]


def test_watches_beyond_the_limit_are_refused_and_get_job_still_answers(
    small_server: RunningServer,
) -> None:
    limit = watch_limit(THREADS)
    with grpc.insecure_channel(f"127.0.0.1:{small_server.port}") as channel:
        stub = pb_grpc.HardeningServiceStub(channel)
        spec = fgsm_spec(upload_model(stub, linear_onnx()), upload_dataset(stub, digits_like()))
        job = stub.SubmitJob(pb.SubmitJobRequest(spec=spec), timeout=30)
        request = pb.WatchJobRequest(job_id=job.id)
        watches = [stub.WatchJob(request, timeout=60) for _ in range(limit)]
        try:
            for watch in watches:  # each is open: its first event (the job now) has arrived
                assert next(watch).state == pb.JOB_STATE_QUEUED

            with pytest.raises(grpc.RpcError) as refused:
                next(stub.WatchJob(request, timeout=10))
            started = time.monotonic()
            assert stub.GetJob(pb.GetJobRequest(job_id=job.id), timeout=5).id == job.id
            get_seconds = time.monotonic() - started

            watches.pop().cancel()
            reopened = _first_event_when_a_slot_frees(stub, request)
        finally:
            for watch in watches:
                watch.cancel()

    assert refused.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "poll GetJob" in refused.value.details()
    assert get_seconds < 2.0
    assert reopened.state == pb.JOB_STATE_QUEUED


def _first_event_when_a_slot_frees(
    stub: pb_grpc.HardeningServiceStub, request: pb.WatchJobRequest
) -> pb.JobEvent:
    """A cancelled watch frees its slot within one poll interval of the server."""
    deadline = time.monotonic() + 5
    while True:
        stream = stub.WatchJob(request, timeout=10)
        try:
            event = next(stream)
            stream.cancel()
            return event
        except grpc.RpcError as error:
            if error.code() is not grpc.StatusCode.RESOURCE_EXHAUSTED:
                raise
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
