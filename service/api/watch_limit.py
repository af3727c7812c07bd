"""A bound on open WatchJob streams, so that watchers can never take every server thread.

The synchronous gRPC server runs each call on a thread of a fixed pool
(``TEMPERING_GRPC_THREADS``), and a WatchJob stream holds its thread for as long as the watch
lasts: hours, for a CLI watching a long job. Without a bound, as many watchers as threads leave
nothing for GetJob, SubmitJob or uploads, which then queue behind them (bench/load.py shows
GetJob going from a few milliseconds to seconds). This interceptor keeps a quarter of the
threads (at least one) for every other call and answers a watch beyond the rest with
RESOURCE_EXHAUSTED at once; the caller polls GetJob or retries the watch later.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import grpc

WATCH_METHOD = "/tempering.v1.HardeningService/WatchJob"


def watch_limit(grpc_threads: int) -> int:
    """Open watches allowed with this many server threads: all but a quarter (at least one)."""
    return max(1, grpc_threads - max(1, grpc_threads // 4))


class WatchLimitInterceptor(grpc.ServerInterceptor):
    def __init__(self, max_watches: int, grpc_threads: int) -> None:
        self.max_watches = max_watches
        self._grpc_threads = grpc_threads
        self._slots = threading.BoundedSemaphore(max_watches)
        self._lock = threading.Lock()
        self._open = 0

    @property
    def open_watches(self) -> int:
        with self._lock:
            return self._open

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        handler = continuation(handler_call_details)
        if handler is None or handler_call_details.method != WATCH_METHOD:
            return handler
        if handler.unary_stream is None:
            return handler
        return grpc.unary_stream_rpc_method_handler(
            self._bounded(handler.unary_stream),
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )

    def _bounded(self, behavior: Callable[..., Iterator[Any]]) -> Callable[..., Iterator[Any]]:
        def bounded(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
            if not self._slots.acquire(blocking=False):
                context.abort(
                    grpc.StatusCode.RESOURCE_EXHAUSTED,
                    f"this server already has {self.max_watches} WatchJob streams open, its"
                    f" limit ({self._grpc_threads} threads, TEMPERING_GRPC_THREADS, less those"
                    " kept for other calls); poll GetJob every few seconds instead, or retry"
                    " the watch later",
                )
            with self._lock:
                self._open += 1
            try:
                yield from behavior(request, context)
            finally:
                with self._lock:
                    self._open -= 1
                self._slots.release()

        return bounded
