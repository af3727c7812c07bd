"""Counting RPCs and timing them, by method and the status code the caller finally got.

The interceptor sits outside all the others, so it sees refusals of the authentication
interceptor and the codes the error interceptor set with ``context.abort`` alike; it maps no
error itself. A streaming RPC is observed when its stream ends, so ``WatchJob``'s latency is how
long the watch lasted.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import grpc
from prometheus_client import CollectorRegistry, Counter, Histogram

from service.api.handlers import WrappingInterceptor, rebuild_handler

LATENCY_BUCKETS: tuple[float, ...] = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600,
)  # fmt: skip


class RpcMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.handled = Counter(
            "tempering_rpc_handled",
            "RPCs completed, by method and the status code returned",
            ["service", "method", "code"],
            registry=registry,
        )
        self.seconds = Histogram(
            "tempering_rpc_duration_seconds",
            "Time from the start of an RPC to its status, by method",
            ["service", "method"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )

    def observe(self, full_method: str, code: grpc.StatusCode, seconds: float) -> None:
        service, method = split_method(full_method)
        self.handled.labels(service, method, code.name).inc()
        self.seconds.labels(service, method).observe(seconds)


def split_method(full_method: str) -> tuple[str, str]:
    """``/tempering.v1.HardeningService/SubmitJob`` as service and method."""
    service, _, method = full_method.lstrip("/").rpartition("/")
    return service, method


class MetricsInterceptor(WrappingInterceptor):
    by_method_only = True

    def __init__(self, metrics: RpcMetrics) -> None:
        super().__init__()
        self._metrics = metrics

    def wrap(
        self, handler: grpc.RpcMethodHandler, call: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler:
        method = call.method
        return rebuild_handler(
            handler,
            lambda behavior: self._time_unary(behavior, method),
            lambda behavior: self._time_stream(behavior, method),
        )

    def _time_unary(self, behavior: Callable[..., Any], method: str) -> Callable[..., Any]:
        def timed(request: Any, context: grpc.ServicerContext) -> Any:
            started = time.monotonic()
            failed = True
            try:
                response = behavior(request, context)
                failed = False
                return response
            finally:
                self._metrics.observe(
                    method, final_code(context, failed), time.monotonic() - started
                )

        return timed

    def _time_stream(
        self, behavior: Callable[..., Iterator[Any]], method: str
    ) -> Callable[..., Iterator[Any]]:
        def timed(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
            started = time.monotonic()
            failed = True
            try:
                yield from behavior(request, context)
                failed = False
            except GeneratorExit:
                failed = False  # gRPC closed the stream: the caller went away
                raise
            finally:
                self._metrics.observe(
                    method, final_code(context, failed), time.monotonic() - started
                )

        return timed


def final_code(context: grpc.ServicerContext, failed: bool) -> grpc.StatusCode:
    """The code set on the context (``abort``, ``set_code``); else the caller's deadline or
    cancellation if the RPC ended that way, UNKNOWN for an exception that no interceptor turned
    into a status (what gRPC itself sends then), or OK."""
    code = context.code()
    if isinstance(code, grpc.StatusCode):
        return code
    if not context.is_active():
        remaining = context.time_remaining()
        if remaining is not None and remaining <= 0:
            return grpc.StatusCode.DEADLINE_EXCEEDED
        return grpc.StatusCode.CANCELLED
    return grpc.StatusCode.UNKNOWN if failed else grpc.StatusCode.OK
