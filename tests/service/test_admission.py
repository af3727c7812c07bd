"""Admission of unary calls (service.core.admission, service.api.admission_interceptor): a few
run at once, the rest wait fairly between tenants, and a call waiting for something else gives
its slot back meanwhile."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc
import pytest

from service.api.admission_interceptor import AdmissionInterceptor
from service.api.auth import ApiKeyStore, hash_key
from service.api.auth_interceptor import AuthInterceptor
from service.api.interceptor import ErrorInterceptor
from service.core.admission import Admission, stepped_aside
from service.core.errors import Unavailable

SLOW_METHOD = "/tempering.v1.HardeningService/GetJob"
KEYS = {"alice": "alice-key-0123456789", "mallory": "mallory-key-0123456789"}


def held(admission: Admission, tenant: str) -> int:
    return admission.slots.held(tenant)


def test_a_call_holds_its_slot_until_it_ends() -> None:
    admission = Admission(3, max_waiting_per_tenant=4)
    with admission.admitted("alice", wait_limit=1):
        assert held(admission, "alice") == 1
    assert held(admission, "alice") == 0


def test_a_call_that_steps_aside_gives_its_slot_back_until_it_returns() -> None:
    admission = Admission(3, max_waiting_per_tenant=4)
    with admission.admitted("alice", wait_limit=1):
        with stepped_aside():
            assert held(admission, "alice") == 0
        assert held(admission, "alice") == 1
    assert held(admission, "alice") == 0


def test_stepping_aside_outside_an_admitted_call_does_nothing() -> None:
    with stepped_aside():
        pass


def test_a_call_whose_slot_could_not_be_taken_back_releases_nothing_twice() -> None:
    admission = Admission(2, max_waiting_per_tenant=4)

    def others_take_every_slot_meanwhile() -> None:
        with admission.admitted("alice", wait_limit=1), stepped_aside(rejoin_limit=0.1):
            admission.slots.acquire("bob", wait_limit=1)
            admission.slots.acquire("carol", wait_limit=1)

    with pytest.raises(Unavailable):
        others_take_every_slot_meanwhile()
    assert (held(admission, "alice"), held(admission, "bob"), held(admission, "carol")) == (0, 1, 1)


# --- on a real gRPC server --------------------------------------------------------------------


class Blocking:
    """A unary method that blocks mallory's calls until released (counting how many run at
    once) and answers alice's at once."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.running = 0
        self.most_mallory = 0
        self.lock = threading.Lock()

    def __call__(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        if request != b"mallory":
            return request
        with self.lock:
            self.running += 1
            self.most_mallory = max(self.most_mallory, self.running)
        try:
            self.release.wait(30)
            return request
        finally:
            with self.lock:
                self.running -= 1


@pytest.fixture
def blocking_server() -> Iterator[tuple[str, Blocking]]:
    method = Blocking()
    keys = ApiKeyStore((tenant, hash_key(key)) for tenant, key in KEYS.items())
    server = grpc.server(
        ThreadPoolExecutor(max_workers=32),
        interceptors=[
            AuthInterceptor(keys),
            ErrorInterceptor(),
            AdmissionInterceptor(Admission(3, max_waiting_per_tenant=4)),
        ],
    )
    service, name = SLOW_METHOD.lstrip("/").split("/")
    handler = grpc.unary_unary_rpc_method_handler(method)
    server.add_generic_rpc_handlers(
        [grpc.method_handlers_generic_handler(service, {name: handler})]
    )
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield f"127.0.0.1:{port}", method
    finally:
        method.release.set()
        server.stop(0).wait()


def call(channel: grpc.Channel, tenant: str, timeout: float = 10) -> Any:
    unary = channel.unary_unary(SLOW_METHOD)
    metadata = (("authorization", f"Bearer {KEYS[tenant]}"),)
    return unary.future(tenant.encode(), timeout=timeout, metadata=metadata)


def test_a_tenant_with_calls_waiting_never_holds_every_slot(
    blocking_server: tuple[str, Blocking],
) -> None:
    address, method = blocking_server
    with grpc.insecure_channel(address) as channel:
        mallory = [call(channel, "mallory") for _ in range(6)]
        deadline = time.monotonic() + 10
        while method.running < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        alice = call(channel, "alice").result()  # before mallory's calls are released
        method.release.set()
        assert [future.result() for future in mallory] == [b"mallory"] * 6
    assert alice == b"alice"
    assert method.most_mallory == 2


def test_calls_past_a_tenants_waiting_bound_are_refused_at_once(
    blocking_server: tuple[str, Blocking],
) -> None:
    address, method = blocking_server
    with grpc.insecure_channel(address) as channel:
        held_and_waiting = [call(channel, "mallory") for _ in range(6)]
        deadline = time.monotonic() + 10
        while method.running < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.2)
        with pytest.raises(grpc.RpcError) as refused:
            call(channel, "mallory").result()
        method.release.set()
        for future in held_and_waiting:
            future.result()
    assert refused.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "already waiting" in (refused.value.details() or "")


def test_a_call_waiting_past_its_deadline_is_answered_unavailable_or_deadline(
    blocking_server: tuple[str, Blocking],
) -> None:
    address, method = blocking_server
    with grpc.insecure_channel(address) as channel:
        holders = [call(channel, "mallory") for _ in range(2)]
        deadline = time.monotonic() + 10
        while method.running < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        with pytest.raises(grpc.RpcError) as late:
            call(channel, "mallory", timeout=0.3).result()
        method.release.set()
        for future in holders:
            future.result()
    assert late.value.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
