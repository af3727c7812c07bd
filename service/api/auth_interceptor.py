"""Authentication: the server interceptor that turns an API key into a tenant.

Every call except health checks and reflection must carry ``authorization: Bearer <key>``
metadata; a missing, malformed or unknown key is answered UNAUTHENTICATED before any servicer
code runs. A known key runs the call with :data:`service.core.tenancy.CURRENT_TENANT` set to the
key's tenant, in a copy of the context made for this call alone, so that a value can never leak
into the next call served by the same pool thread. The same copy carries the tenant, and the job
id of a request naming one, to the call's log lines (:mod:`service.core.logs`).

Without a key store (no keys configured: single-tenant open mode) every call runs as
:data:`service.core.tenancy.DEFAULT_TENANT` and any key sent is ignored.
"""

from __future__ import annotations

import contextvars
import logging
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import grpc

from service.api.auth import ApiKeyStore
from service.api.handlers import WrappingInterceptor, rebuild_handler
from service.core.logs import bind_log_context
from service.core.tenancy import CURRENT_TENANT, DEFAULT_TENANT

log = logging.getLogger(__name__)

OPEN_METHOD_PREFIXES: tuple[str, ...] = (
    "/grpc.health.v1.Health/",
    "/grpc.reflection.v1alpha.ServerReflection/",
    "/grpc.reflection.v1.ServerReflection/",
)
"""Methods that need no key, so that load balancers and tools can probe the server."""

MISSING_KEY = (
    "this server requires an API key: send it as `authorization: Bearer <key>` metadata"
    " (temper --api-key / TEMPERING_API_KEY)"
)
INVALID_KEY = "the API key is not valid"


class AuthInterceptor(WrappingInterceptor):
    def __init__(self, keys: ApiKeyStore | None) -> None:
        """``keys`` None or empty: open mode, every caller is the default tenant."""
        super().__init__()
        self._keys = keys if keys is not None and not keys.is_empty else None

    @property
    def open_mode(self) -> bool:
        return self._keys is None

    def wrap(
        self, handler: grpc.RpcMethodHandler, call: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler:
        method = call.method
        if method.startswith(OPEN_METHOD_PREFIXES):
            return handler
        if self._keys is None:
            return _with_tenant(handler, DEFAULT_TENANT)
        token, problem = bearer_token(call.invocation_metadata or ())
        tenant = self._keys.authenticate(token) if token is not None else None
        if tenant is None:
            return _refusal(handler, method, problem or INVALID_KEY)
        return _with_tenant(handler, tenant)


def bearer_token(metadata: Sequence[tuple[str, Any]]) -> tuple[str | None, str | None]:
    """The bearer token of the call, or (None, why not)."""
    values = [value for key, value in metadata if key.lower() == "authorization"]
    if not values:
        return None, MISSING_KEY
    if len(values) > 1:
        return None, "send one authorization header, not several"
    value = values[0]
    if isinstance(value, bytes):
        return None, INVALID_KEY
    scheme, _, token = str(value).strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return None, "the authorization metadata must be `Bearer <key>`"
    return token, None


def _with_tenant(handler: grpc.RpcMethodHandler, tenant: str) -> grpc.RpcMethodHandler:
    def unary(behavior: Callable[..., Any]) -> Callable[..., Any]:
        def run(request: Any, context: grpc.ServicerContext) -> Any:
            call_context = _call_context(tenant, request)
            return call_context.run(behavior, request, context)

        return run

    def stream(behavior: Callable[..., Iterator[Any]]) -> Callable[..., Iterator[Any]]:
        def run(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
            call_context = _call_context(tenant, request)
            responses = call_context.run(behavior, request, context)
            try:
                while True:
                    try:
                        item = call_context.run(next, responses)
                    except StopIteration:
                        return
                    yield item
            finally:
                close = getattr(responses, "close", None)
                if close is not None:
                    call_context.run(close)

        return run

    return rebuild_handler(handler, unary, stream)


def _call_context(tenant: str, request: Any) -> contextvars.Context:
    """A fresh copy of the context for one call, with its tenant set."""
    job_id = getattr(request, "job_id", None)
    call_context = contextvars.copy_context()
    call_context.run(CURRENT_TENANT.set, tenant)
    call_context.run(bind_log_context, tenant=tenant, job_id=job_id or None)
    return call_context


def _refusal(handler: grpc.RpcMethodHandler, method: str, message: str) -> grpc.RpcMethodHandler:
    def refuse(_request: Any, context: grpc.ServicerContext) -> Any:
        log.warning("refused %s from %s: %s", method, context.peer(), message)
        context.abort(grpc.StatusCode.UNAUTHENTICATED, message)

    def unary(_behavior: Callable[..., Any]) -> Callable[..., Any]:
        return refuse

    def stream(_behavior: Callable[..., Iterator[Any]]) -> Callable[..., Iterator[Any]]:
        def refuse_stream(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
            refuse(request, context)
            yield from ()

        return refuse_stream

    return rebuild_handler(handler, unary, stream, parse_requests=False)
