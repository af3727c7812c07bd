"""The upload watchdog's deadlines on a clock the test moves, and the default per-tenant cap."""

from __future__ import annotations

import grpc
from tempering.v1 import hardening_pb2 as pb

from service.api.upload_limit import UploadDeadlines, UploadWatchdog, tenant_upload_limit


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Cancelled:
    def __init__(self) -> None:
        self.calls: list[tuple[object, grpc.StatusCode, str]] = []

    def __call__(self, context: object, code: grpc.StatusCode, details: str) -> None:
        self.calls.append((context, code, details))


def _header(size: int) -> pb.UploadDatasetRequest:
    return pb.UploadDatasetRequest(header=pb.DatasetUploadHeader(size_bytes=size))


def test_the_tenant_upload_limit_is_a_quarter_of_the_slots_by_default_and_never_above() -> None:
    assert tenant_upload_limit(96, 0) == 24
    assert tenant_upload_limit(3, 0) == 1
    assert tenant_upload_limit(6, 4) == 4
    assert tenant_upload_limit(6, 100) == 6


def test_a_stream_that_sends_nothing_for_the_idle_timeout_is_cancelled() -> None:
    clock, cancelled = Clock(), Cancelled()
    watchdog = UploadWatchdog(UploadDeadlines(30.0, 1000), clock=clock, cancel=cancelled)
    requests = watchdog.watch(iter([_header(10**6), pb.UploadDatasetRequest(chunk=b"x")]), "ctx")

    next(requests)
    clock.now += 29.0
    next(requests)  # a chunk moves the idle deadline
    clock.now += 29.0
    assert watchdog.expire_overdue() == 0
    clock.now += 1.0
    assert watchdog.expire_overdue() == 1
    assert watchdog.expire_overdue() == 0

    [(context, code, details)] = cancelled.calls
    assert (context, code) == ("ctx", grpc.StatusCode.DEADLINE_EXCEEDED)
    assert "TEMPERING_UPLOAD_IDLE_TIMEOUT" in details


def test_a_stream_slower_than_the_minimum_rate_is_cancelled_at_its_total_deadline() -> None:
    clock, cancelled = Clock(), Cancelled()
    watchdog = UploadWatchdog(UploadDeadlines(30.0, 1000), clock=clock, cancel=cancelled)
    chunks = [pb.UploadDatasetRequest(chunk=b"x")] * 100
    requests = watchdog.watch(iter([_header(100_000), *chunks]), "ctx")

    next(requests)
    for _ in range(14):  # 10 s apart: never idle, but 130 s is the whole allowance
        clock.now += 10.0
        next(requests)
        watchdog.expire_overdue()

    [(_, code, details)] = cancelled.calls
    assert code is grpc.StatusCode.DEADLINE_EXCEEDED
    assert "TEMPERING_UPLOAD_MIN_RATE" in details


def test_a_finished_stream_is_no_longer_watched() -> None:
    clock, cancelled = Clock(), Cancelled()
    watchdog = UploadWatchdog(UploadDeadlines(1.0, 1000), clock=clock, cancel=cancelled)

    assert list(watchdog.watch(iter([_header(1)]), "ctx")) == [_header(1)]
    clock.now += 60.0

    assert watchdog.expire_overdue() == 0
    assert cancelled.calls == []
