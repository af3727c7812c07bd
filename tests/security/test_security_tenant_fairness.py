"""No tenant can take what the next tenant needs: WatchJob slots are capped per tenant within the
server's bound (issue 15, finding B)."""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import pytest
from sec_helpers import (
    Keys,
    StartServer,
    Stub,
    dataset,
    linear_onnx,
    spec,
    submit,
    upload_dataset,
    upload_model,
)
from tempering.v1 import hardening_pb2 as pb
from tempering.v1 import hardening_pb2_grpc as pb_grpc

from service.api.server import RunningServer
from service.api.watch_limit import tenant_watch_limit, watch_limit

THREADS = 8


@pytest.fixture
def server(start: StartServer, keys: Keys) -> RunningServer:
    return start(api_keys_file=keys.file, grpc_threads=THREADS)


@pytest.fixture
def stub(server: RunningServer) -> Iterator[Stub]:
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        yield pb_grpc.HardeningServiceStub(channel)


def _queued_job(stub: Stub, keys: Keys, tenant: str) -> str:
    md = keys.metadata(tenant)
    model = upload_model(stub, md, linear_onnx()).artifact_id
    return submit(stub, md, spec(model, upload_dataset(stub, md, dataset()).artifact_id)).id


def test_the_tenant_watch_limit_is_half_the_servers_by_default_and_never_above_it() -> None:
    assert tenant_watch_limit(96, 0) == 48
    assert tenant_watch_limit(1, 0) == 1
    assert tenant_watch_limit(6, 4) == 4
    assert tenant_watch_limit(6, 100) == 6


def test_one_tenant_asking_for_every_watch_slot_leaves_slots_for_the_next(
    stub: Stub, keys: Keys
) -> None:
    alices_job, bobs_job = _queued_job(stub, keys, "alice"), _queued_job(stub, keys, "bob")
    alice, bob = keys.metadata("alice"), keys.metadata("bob")
    open_streams, refusals = [], []
    try:
        for _ in range(watch_limit(THREADS)):
            request = pb.WatchJobRequest(job_id=alices_job)
            stream = stub.WatchJob(request, metadata=alice, timeout=60)
            try:
                assert next(stream).state == pb.JOB_STATE_QUEUED
                open_streams.append(stream)
            except grpc.RpcError as error:
                refusals.append(error)
        bobs = stub.WatchJob(pb.WatchJobRequest(job_id=bobs_job), metadata=bob, timeout=60)
        open_streams.append(bobs)

        assert next(bobs).job_id == bobs_job
    finally:
        for stream in open_streams:
            stream.cancel()

    assert len(open_streams) - 1 == tenant_watch_limit(watch_limit(THREADS), 0)
    assert {error.code() for error in refusals} == {grpc.StatusCode.RESOURCE_EXHAUSTED}
    assert "TEMPERING_TENANT_MAX_WATCHES" in refusals[0].details()
