"""Interceptors rebuild a call's handler (service.api.handlers): one whose wrapper depends on the
method alone builds it once per method and handler; one that reads the call's metadata builds it
for every call."""

from __future__ import annotations

from typing import Any

import grpc

from service.api.handlers import WrappingInterceptor, rebuild_handler


class Details:
    def __init__(self, method: str) -> None:
        self.method = method
        self.invocation_metadata = ()


class Counting(WrappingInterceptor):
    def __init__(self, by_method_only: bool) -> None:
        super().__init__()
        self.by_method_only = by_method_only
        self.built = 0

    def wrap(self, handler: grpc.RpcMethodHandler, call: Any) -> grpc.RpcMethodHandler:
        self.built += 1
        return rebuild_handler(handler)


def echo(request: Any, context: Any) -> Any:
    return request


def test_a_method_only_wrapper_is_built_once_per_method_and_handler() -> None:
    interceptor = Counting(by_method_only=True)
    handler = grpc.unary_unary_rpc_method_handler(echo)
    first = interceptor.intercept_service(lambda _: handler, Details("/s/A"))
    again = interceptor.intercept_service(lambda _: handler, Details("/s/A"))
    interceptor.intercept_service(lambda _: handler, Details("/s/B"))
    assert first is again
    assert interceptor.built == 2


def test_a_new_handler_for_the_same_method_gets_a_new_wrapper() -> None:
    interceptor = Counting(by_method_only=True)
    one = grpc.unary_unary_rpc_method_handler(echo)
    other = grpc.unary_unary_rpc_method_handler(echo)
    interceptor.intercept_service(lambda _: one, Details("/s/A"))
    interceptor.intercept_service(lambda _: other, Details("/s/A"))
    assert interceptor.built == 2


def test_a_wrapper_that_reads_the_call_is_built_for_every_call() -> None:
    interceptor = Counting(by_method_only=False)
    handler = grpc.unary_unary_rpc_method_handler(echo)
    for _ in range(3):
        interceptor.intercept_service(lambda _: handler, Details("/s/A"))
    assert interceptor.built == 3


def test_a_method_this_server_does_not_serve_passes_by() -> None:
    interceptor = Counting(by_method_only=True)
    assert interceptor.intercept_service(lambda _: None, Details("/s/Unknown")) is None
    assert interceptor.built == 0
