"""Stalled upload streams cannot hold every server thread (issue 15, finding A): streams beyond
the server's and the tenant's bounds are refused at once, the others end when no chunk comes for
TEMPERING_UPLOAD_IDLE_TIMEOUT or when they fall below TEMPERING_UPLOAD_MIN_RATE, and no partial
file stays behind."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from sec_helpers import Keys, StartServer, dataset, sha256, upload_dataset
from tempering.v1 import hardening_pb2 as pb
from tempering.v1 import hardening_pb2_grpc as pb_grpc

from service.api.server import RunningServer
from service.api.watch_limit import watch_limit

THREADS = 4
LIVENESS = 30.0
"""Seconds within which something that should happen has happened; never a measure of speed."""


def _stalled(
    sent: threading.Event, release: threading.Event, *, trickle: float | None = None
) -> Iterator[pb.UploadDatasetRequest]:
    """A header and 10 bytes, then nothing until ``release`` (or, with ``trickle``, 10 more
    bytes every ``trickle`` seconds)."""
    data = dataset()
    yield pb.UploadDatasetRequest(
        header=pb.DatasetUploadHeader(
            name="data.npz", format=pb.DATASET_FORMAT_NPZ, size_bytes=len(data), sha256=sha256(data)
        )
    )
    yield pb.UploadDatasetRequest(chunk=data[:10])
    sent.set()
    offset = 10
    while trickle is not None and offset + 10 < len(data) and not release.wait(trickle):
        yield pb.UploadDatasetRequest(chunk=data[offset : offset + 10])
        offset += 10
    release.wait(LIVENESS * 2)


def _partial_files(server: RunningServer) -> list[Path]:
    return sorted((server_artifacts(server) / "tmp").glob("blob-*.part"))


def server_artifacts(server: RunningServer) -> Path:
    root = getattr(server.stores.artifacts, "root", None)
    assert isinstance(root, Path)
    return root


def _wait_for(condition: object, what: str) -> None:
    deadline = time.monotonic() + LIVENESS
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"still waiting for {what}"
        time.sleep(0.05)


def test_stalled_uploads_of_one_tenant_leave_threads_for_the_next_and_end_when_idle(
    start: StartServer, keys: Keys
) -> None:
    server = start(
        api_keys_file=keys.file,
        grpc_threads=THREADS,
        upload_idle_timeout=2.0,
        tenant_max_uploads=3 * THREADS,
    )
    alice, bob = keys.metadata("alice"), keys.metadata("bob")
    release = threading.Event()
    sent = [threading.Event() for _ in range(3 * THREADS)]
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        stub = pb_grpc.HardeningServiceStub(channel)
        calls = [
            stub.UploadDataset.future(_stalled(event, release), metadata=alice, timeout=LIVENESS)
            for event in sent
        ]
        try:
            _wait_for(
                lambda: all(e.is_set() or c.done() for e, c in zip(sent, calls, strict=True)),
                "every stream to send its 10 bytes or be refused",
            )
            listed = stub.ListJobs(pb.ListJobsRequest(), metadata=bob, timeout=3)
            errors = [call.exception(timeout=LIVENESS) for call in calls]
        finally:
            release.set()

    assert list(listed.jobs) == []
    ended = [e for e in errors if isinstance(e, grpc.RpcError)]
    assert len(ended) == len(calls)
    idle = [e for e in ended if e.code() is grpc.StatusCode.DEADLINE_EXCEEDED]
    refused = [e for e in ended if e.code() is grpc.StatusCode.RESOURCE_EXHAUSTED]
    assert len(idle) + len(refused) == len(calls)
    assert 1 <= len(idle) <= watch_limit(THREADS)
    assert all("TEMPERING_UPLOAD_IDLE_TIMEOUT" in e.details() for e in idle)
    assert all(
        "TEMPERING_GRPC_THREADS" in e.details() or "TEMPERING_TENANT_MAX_UPLOADS" in e.details()
        for e in refused
    )
    _wait_for(lambda: not _partial_files(server), "the partial files to go")


def test_uploads_beyond_the_tenant_cap_are_refused_at_once_and_others_still_upload(
    start: StartServer, keys: Keys
) -> None:
    server = start(api_keys_file=keys.file, tenant_max_uploads=2)
    alice, bob = keys.metadata("alice"), keys.metadata("bob")
    release = threading.Event()
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        stub = pb_grpc.HardeningServiceStub(channel)
        held = [
            stub.UploadDataset.future(
                _stalled(threading.Event(), release), metadata=alice, timeout=LIVENESS
            )
            for _ in range(2)
        ]
        try:
            assert server.upload_limit is not None
            limit = server.upload_limit
            _wait_for(lambda: limit.open_uploads("alice") == 2, "alice's two uploads to open")
            with pytest.raises(grpc.RpcError) as third:
                stub.UploadDataset(
                    _stalled(threading.Event(), release), metadata=alice, timeout=LIVENESS
                )
            bobs = upload_dataset(stub, bob, dataset())
        finally:
            release.set()
            for call in held:
                call.cancel()

    assert third.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "TEMPERING_TENANT_MAX_UPLOADS" in third.value.details()
    assert bobs.size_bytes == len(dataset())


def test_an_upload_below_the_minimum_rate_ends_at_its_deadline_and_leaves_no_file(
    start: StartServer, keys: Keys
) -> None:
    server = start(api_keys_file=keys.file, upload_idle_timeout=2.0, upload_min_rate=1000)
    release = threading.Event()
    sent = threading.Event()
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        stub = pb_grpc.HardeningServiceStub(channel)
        try:
            with pytest.raises(grpc.RpcError) as slow:
                stub.UploadDataset(
                    _stalled(sent, release, trickle=0.2),
                    metadata=keys.metadata("alice"),
                    timeout=LIVENESS,
                )
        finally:
            release.set()

    assert slow.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
    assert "TEMPERING_UPLOAD_MIN_RATE" in slow.value.details()
    _wait_for(lambda: not _partial_files(server), "the partial file to go")
