"""A bound on open WatchJob streams, so that watchers can never take every server thread.

The synchronous gRPC server runs each call on a thread of a fixed pool
(``TEMPERING_GRPC_THREADS``), and a WatchJob stream holds its thread for as long as the watch
lasts: hours, for a CLI watching a long job. Without a bound, as many watchers as threads leave
nothing for GetJob, SubmitJob or uploads, which then queue behind them (bench/load.py shows
GetJob going from a few milliseconds to seconds). This interceptor keeps a quarter of the
threads (at least one) for every other call and answers a watch beyond the rest with
RESOURCE_EXHAUSTED at once; the caller polls GetJob or retries the watch later. Upload streams
hold a thread too and share the same slots (:class:`StreamSlots`, :mod:`service.api.upload_limit`).

Within that global bound each tenant may hold at most ``TEMPERING_TENANT_MAX_WATCHES`` watches
(by default half of the global bound), so that one tenant's hundred watchers leave slots for the
next tenant's CLI.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import grpc

from service.api.handlers import WrappingInterceptor, rebuild_handler
from service.core.tenancy import current_tenant

WATCH_METHOD = "/tempering.v1.HardeningService/WatchJob"


def watch_limit(grpc_threads: int) -> int:
    """Open watches allowed with this many server threads: all but a quarter (at least one)."""
    return max(1, grpc_threads - max(1, grpc_threads // 4))


def tenant_watch_limit(max_watches: int, tenant_max_watches: int) -> int:
    """Open watches one tenant may hold: the setting (0: half the global limit, at least 1),
    never more than the global limit."""
    wanted = tenant_max_watches or max(1, max_watches // 2)
    return min(wanted, max_watches)


class TenantSlots:
    """At most ``per_tenant`` slots held by any one tenant at once; shared by the WatchJob and
    the upload bounds (:mod:`service.api.upload_limit`)."""

    def __init__(self, per_tenant: int) -> None:
        self.per_tenant = per_tenant
        self._lock = threading.Lock()
        self._by_tenant: dict[str, int] = {}

    def held(self, tenant: str) -> int:
        with self._lock:
            return self._by_tenant.get(tenant, 0)

    def take(self, tenant: str) -> bool:
        with self._lock:
            held = self._by_tenant.get(tenant, 0)
            if held >= self.per_tenant:
                return False
            self._by_tenant[tenant] = held + 1
            return True

    def release(self, tenant: str) -> None:
        with self._lock:
            self._by_tenant[tenant] -= 1
            if not self._by_tenant[tenant]:
                del self._by_tenant[tenant]


class StreamSlots:
    """The server's bound on long-lived streams, WatchJob and uploads together, so that a
    quarter of the threads (:func:`watch_limit`) stays for unary calls."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._slots = threading.BoundedSemaphore(limit)

    def take(self) -> bool:
        return self._slots.acquire(blocking=False)

    def release(self) -> None:
        self._slots.release()


class WatchLimitInterceptor(WrappingInterceptor):
    by_method_only = True

    def __init__(
        self,
        max_watches: int,
        grpc_threads: int,
        per_tenant: int | None = None,
        slots: StreamSlots | None = None,
    ) -> None:
        super().__init__()
        self.max_watches = max_watches
        self.per_tenant = per_tenant if per_tenant is not None else max_watches
        self._grpc_threads = grpc_threads
        self._slots = slots if slots is not None else StreamSlots(max_watches)
        self._tenants = TenantSlots(self.per_tenant)
        self._lock = threading.Lock()
        self._open = 0

    @property
    def open_watches(self) -> int:
        with self._lock:
            return self._open

    def wrap(
        self, handler: grpc.RpcMethodHandler, call: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler:
        if call.method != WATCH_METHOD:
            return handler
        return rebuild_handler(handler, stream=self._bounded)

    def _bounded(self, behavior: Callable[..., Iterator[Any]]) -> Callable[..., Iterator[Any]]:
        def bounded(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
            tenant = current_tenant()
            if not self._tenants.take(tenant):
                context.abort(
                    grpc.StatusCode.RESOURCE_EXHAUSTED,
                    f"you already have {self.per_tenant} WatchJob streams open on this server,"
                    " the most one tenant may hold (its operator sets"
                    " TEMPERING_TENANT_MAX_WATCHES); close one, or poll GetJob every few seconds"
                    " instead",
                )
            try:
                yield from self._bounded_globally(behavior, request, context)
            finally:
                self._tenants.release(tenant)

        return bounded

    def _bounded_globally(
        self, behavior: Callable[..., Iterator[Any]], request: Any, context: grpc.ServicerContext
    ) -> Iterator[Any]:
        if not self._slots.take():
            context.abort(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"this server already has {self._slots.limit} WatchJob and upload streams open,"
                f" its limit ({self._grpc_threads} threads, TEMPERING_GRPC_THREADS, less those"
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
