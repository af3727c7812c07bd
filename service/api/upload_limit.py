"""Bounds on upload streams, so that stalled or slow uploads can never take every server thread.

An UploadModel or UploadDataset stream holds a thread of the synchronous server for as long as
the client keeps it open, sending or not. Three bounds keep threads for everyone else:

- uploads share the server's long-lived stream slots with WatchJob (:class:`StreamSlots`: all
  threads but a quarter), and each tenant may hold at most ``TEMPERING_TENANT_MAX_UPLOADS`` of
  them (by default a quarter of the slots); a stream beyond either is refused at once with
  RESOURCE_EXHAUSTED, before any of it is read;
- a stream that sends nothing for ``TEMPERING_UPLOAD_IDLE_TIMEOUT`` seconds, or that is still
  open ``idle timeout + declared size / TEMPERING_UPLOAD_MIN_RATE`` seconds after it started, is
  cancelled with DEADLINE_EXCEEDED and a message naming the setting. One watchdog thread does
  that for every stream: the handler's thread is blocked reading the next chunk, and cancelling
  the call is what wakes it; the upload then fails and its partial file is removed.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from typing import Any

import grpc

from service.api.handlers import WrappingInterceptor, rebuild_handler
from service.api.watch_limit import StreamSlots, TenantSlots
from service.core.tenancy import current_tenant

log = logging.getLogger(__name__)

UPLOAD_METHODS = frozenset(
    {
        "/tempering.v1.HardeningService/UploadModel",
        "/tempering.v1.HardeningService/UploadDataset",
        "/tempering.v1.HardeningService/UploadTokenizer",
        "/tempering.v1.HardeningService/UploadSchema",
    }
)


def tenant_upload_limit(max_streams: int, tenant_max_uploads: int) -> int:
    """Open uploads one tenant may hold: the setting (0: a quarter of the server's stream slots,
    at least 1), never more than the server's slots."""
    wanted = tenant_max_uploads or max(1, max_streams // 4)
    return min(wanted, max_streams)


@dataclass(frozen=True)
class UploadDeadlines:
    idle_seconds: float
    min_rate: int
    """Bytes per second an upload must average, counted from its start."""

    def total_seconds(self, size_bytes: int) -> float:
        return self.idle_seconds + size_bytes / self.min_rate


Cancel = Callable[[Any, grpc.StatusCode, str], None]


def cancel_with_status(context: Any, code: grpc.StatusCode, details: str) -> None:
    """End the call from another thread with ``code`` and ``details`` for the client.

    grpcio's public ``context.cancel()`` gives the client a bare CANCELLED; the call object
    under it takes a status, which the client then sees. Without that object (another grpcio),
    the public cancel is the fallback."""
    call: Any = getattr(getattr(context, "_rpc_event", None), "call", None)
    try:
        from grpc._cython import cygrpc

        call.cancel(cygrpc.StatusCode(code.value[0]), details)
    except Exception:
        log.debug("no call object to cancel with a status; cancelling plainly", exc_info=True)
        context.cancel()


class _Stream:
    def __init__(self, context: Any, now: float, idle_seconds: float) -> None:
        self.context = context
        self.started = now
        self.idle_until = now + idle_seconds
        self.total_until: float | None = None
        self.size_bytes = 0


class UploadWatchdog:
    """One thread that ends the upload streams past their idle or total deadline."""

    def __init__(
        self,
        deadlines: UploadDeadlines,
        *,
        clock: Callable[[], float] = time.monotonic,
        cancel: Cancel = cancel_with_status,
    ) -> None:
        self.deadlines = deadlines
        self._clock = clock
        self._cancel = cancel
        self._lock = threading.Lock()
        self._streams: dict[int, _Stream] = {}
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="upload-watchdog", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        if self._thread is not None:
            self._thread.join()

    def _run(self) -> None:
        interval = min(1.0, max(0.05, self.deadlines.idle_seconds / 4))
        while not self._stopped.wait(interval):
            self.expire_overdue()

    def watch(self, requests: Iterator[Any], context: Any) -> Generator[Any, None, None]:
        """``requests`` as the handler reads them, each one moving the stream's idle deadline,
        its header setting the total one; the stream is watched until this iterator is closed."""
        key = id(context)
        with self._lock:
            self._streams[key] = _Stream(context, self._clock(), self.deadlines.idle_seconds)
        try:
            for request in requests:
                self._arrived(key, request)
                yield request
        finally:
            with self._lock:
                self._streams.pop(key, None)

    def _arrived(self, key: int, request: Any) -> None:
        now = self._clock()
        with self._lock:
            stream = self._streams.get(key)
            if stream is None:
                return
            stream.idle_until = now + self.deadlines.idle_seconds
            if stream.total_until is None and request.WhichOneof("payload") == "header":
                stream.size_bytes = request.header.size_bytes
                stream.total_until = stream.started + self.deadlines.total_seconds(
                    stream.size_bytes
                )

    def expire_overdue(self) -> int:
        """Cancel every stream past a deadline; returns how many."""
        now = self._clock()
        with self._lock:
            overdue = [
                (key, stream, reason)
                for key, stream in self._streams.items()
                if (reason := self._overdue(stream, now)) is not None
            ]
            for key, _, _ in overdue:
                del self._streams[key]
        for _, stream, reason in overdue:
            log.info("upload stream ended: %s", reason)
            self._cancel(stream.context, grpc.StatusCode.DEADLINE_EXCEEDED, reason)
        return len(overdue)

    def _overdue(self, stream: _Stream, now: float) -> str | None:
        if stream.total_until is not None and now >= stream.total_until:
            return (
                f"the upload of {stream.size_bytes} bytes took longer than the"
                f" {stream.total_until - stream.started:.0f} s its size allows on this server"
                f" (at least {self.deadlines.min_rate} bytes/s, TEMPERING_UPLOAD_MIN_RATE, plus"
                " TEMPERING_UPLOAD_IDLE_TIMEOUT); upload it again over a faster link"
            )
        if now >= stream.idle_until:
            return (
                f"the upload sent nothing for {self.deadlines.idle_seconds:g} s, this server's"
                " limit (TEMPERING_UPLOAD_IDLE_TIMEOUT); send the chunks without pausing"
            )
        return None


class UploadLimitInterceptor(WrappingInterceptor):
    by_method_only = True

    def __init__(
        self,
        slots: StreamSlots,
        per_tenant: int,
        grpc_threads: int,
        watchdog: UploadWatchdog,
    ) -> None:
        super().__init__()
        self.per_tenant = per_tenant
        self.watchdog = watchdog
        self._slots = slots
        self._tenants = TenantSlots(per_tenant)
        self._grpc_threads = grpc_threads

    def open_uploads(self, tenant: str) -> int:
        return self._tenants.held(tenant)

    def wrap(
        self, handler: grpc.RpcMethodHandler, call: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler:
        if call.method not in UPLOAD_METHODS:
            return handler
        return rebuild_handler(handler, unary=self._bounded)

    def _bounded(self, behavior: Callable[..., Any]) -> Callable[..., Any]:
        def bounded(requests: Iterator[Any], context: grpc.ServicerContext) -> Any:
            tenant = current_tenant()
            if not self._tenants.take(tenant):
                context.abort(
                    grpc.StatusCode.RESOURCE_EXHAUSTED,
                    f"you already have {self.per_tenant} uploads open on this server, the most"
                    " one tenant may hold (its operator sets TEMPERING_TENANT_MAX_UPLOADS);"
                    " finish or cancel one, then retry",
                )
            try:
                if not self._slots.take():
                    context.abort(
                        grpc.StatusCode.RESOURCE_EXHAUSTED,
                        f"this server already has {self._slots.limit} WatchJob and upload"
                        f" streams open, its limit ({self._grpc_threads} threads,"
                        " TEMPERING_GRPC_THREADS, less those kept for other calls); retry the"
                        " upload in a moment",
                    )
                try:
                    watched = self.watchdog.watch(requests, context)
                    try:
                        return behavior(watched, context)
                    finally:
                        watched.close()
                finally:
                    self._slots.release()
            finally:
                self._tenants.release(tenant)

        return bounded
