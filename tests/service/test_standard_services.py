"""Health checking, reflection and the error interceptor on a real server."""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from service.api.interceptor import ErrorInterceptor
from service.api.server import SERVICE_NAME
from service.core.errors import NotFound


def test_health_check_reports_serving(channel: grpc.Channel) -> None:
    health = health_pb2_grpc.HealthStub(channel)

    for service in ("", SERVICE_NAME):
        response = health.Check(health_pb2.HealthCheckRequest(service=service))
        assert response.status == health_pb2.HealthCheckResponse.SERVING


def test_reflection_lists_the_hardening_service(channel: grpc.Channel) -> None:
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)

    (response,) = stub.ServerReflectionInfo(
        iter([reflection_pb2.ServerReflectionRequest(list_services="")])
    )

    names = {s.name for s in response.list_services_response.service}
    assert SERVICE_NAME in names


def raise_not_found(request: bytes, context: Any) -> bytes:
    raise NotFound("no such thing")


def raise_bug(request: bytes, context: Any) -> bytes:
    raise KeyError("secret internal detail")


@pytest.fixture
def failing_channel() -> Any:
    server = grpc.server(ThreadPoolExecutor(2), interceptors=[ErrorInterceptor()])
    handlers = {
        "NotFound": grpc.unary_unary_rpc_method_handler(raise_not_found),
        "Bug": grpc.unary_unary_rpc_method_handler(raise_bug),
    }
    server.add_generic_rpc_handlers(
        [grpc.method_handlers_generic_handler("test.Failing", handlers)]
    )
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        yield channel
    server.stop(0)


def test_domain_error_keeps_its_message(failing_channel: grpc.Channel) -> None:
    call = failing_channel.unary_unary("/test.Failing/NotFound")

    with pytest.raises(grpc.RpcError) as error:
        call(b"")

    assert error.value.code() is grpc.StatusCode.NOT_FOUND
    assert error.value.details() == "no such thing"


def test_unexpected_error_is_internal_with_a_generic_message(
    failing_channel: grpc.Channel, caplog: pytest.LogCaptureFixture
) -> None:
    call = failing_channel.unary_unary("/test.Failing/Bug")

    with caplog.at_level(logging.ERROR), pytest.raises(grpc.RpcError) as error:
        call(b"")

    assert error.value.code() is grpc.StatusCode.INTERNAL
    assert "secret" not in error.value.details()
    assert "ref" in error.value.details()
    assert any("secret internal detail" in r.exc_text for r in caplog.records if r.exc_text)
