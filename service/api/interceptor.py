"""The one place where errors become gRPC status codes.

Domain errors carry messages written for users and pass through as the status details, with
two guards: every absolute path is replaced by ``<server path>`` (a library's message, such as
onnxruntime's "Load model from /srv/.../blobs/... failed", would otherwise show the server's
layout), and a message is cut to :data:`~service.core.limits.MAX_MESSAGE_CHARS`, whatever it
quotes. Anything else is a bug: the client gets INTERNAL with a reference, the log gets the
traceback.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Callable, Iterator
from typing import Any, NoReturn

import grpc

from service.api.handlers import WrappingInterceptor, rebuild_handler
from service.core.errors import (
    AlreadyExists,
    ChecksumMismatch,
    DataLoss,
    FailedPrecondition,
    IncompleteUpload,
    InvalidRequest,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    Unavailable,
)
from service.core.limits import MAX_MESSAGE_CHARS
from workers.engine.errors import (
    InvalidData,
    InvalidModel,
    InvalidParameter,
    UntrustedFormat,
)

log = logging.getLogger(__name__)

STATUS_OF: tuple[tuple[type[Exception], grpc.StatusCode], ...] = (
    (InvalidModel, grpc.StatusCode.INVALID_ARGUMENT),
    (InvalidData, grpc.StatusCode.INVALID_ARGUMENT),
    (InvalidParameter, grpc.StatusCode.INVALID_ARGUMENT),
    (InvalidRequest, grpc.StatusCode.INVALID_ARGUMENT),
    (ChecksumMismatch, grpc.StatusCode.INVALID_ARGUMENT),
    (IncompleteUpload, grpc.StatusCode.INVALID_ARGUMENT),
    (UntrustedFormat, grpc.StatusCode.FAILED_PRECONDITION),
    (FailedPrecondition, grpc.StatusCode.FAILED_PRECONDITION),
    (NotFound, grpc.StatusCode.NOT_FOUND),
    (AlreadyExists, grpc.StatusCode.ALREADY_EXISTS),
    (PermissionDenied, grpc.StatusCode.PERMISSION_DENIED),
    (ResourceExhausted, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (Unavailable, grpc.StatusCode.UNAVAILABLE),
    (DataLoss, grpc.StatusCode.DATA_LOSS),
)


_SERVER_PATH = re.compile(r"(?<![\w:/.~-])(?:/[^/\s'\"`:;,()\[\]]+){2,}/?")
"""Two or more components after a slash that follows no word character, colon, dot or slash:
``/srv/x/blobs/ab`` but not the path of a URL (``https://host/a/b``) or ``docs/security.md``."""


def public_message(message: str) -> str:
    """``message`` as a client may see it: no server path, at most MAX_MESSAGE_CHARS."""
    scrubbed = _SERVER_PATH.sub("<server path>", message)
    if len(scrubbed) > MAX_MESSAGE_CHARS:
        scrubbed = scrubbed[: MAX_MESSAGE_CHARS - 20] + " ... (message cut)"
    return scrubbed


def status_for(error: BaseException) -> grpc.StatusCode | None:
    """The status code of a domain error, or None for an unexpected exception."""
    for error_type, code in STATUS_OF:
        if isinstance(error, error_type):
            return code
    return None


class ErrorInterceptor(WrappingInterceptor):
    by_method_only = True

    def wrap(
        self, handler: grpc.RpcMethodHandler, call: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler:
        method = call.method
        return rebuild_handler(
            handler,
            lambda behavior: _guard_unary(behavior, method),
            lambda behavior: _guard_stream(behavior, method),
        )


def _guard_unary(behavior: Callable[..., Any], method: str) -> Callable[..., Any]:
    def guarded(request: Any, context: grpc.ServicerContext) -> Any:
        try:
            return behavior(request, context)
        except Exception as exc:
            _abort(exc, context, method)

    return guarded


def _guard_stream(behavior: Callable[..., Iterator[Any]], method: str) -> Callable[..., Any]:
    def guarded(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
        try:
            yield from behavior(request, context)
        except Exception as exc:
            _abort(exc, context, method)

    return guarded


def _abort(error: Exception, context: grpc.ServicerContext, method: str) -> NoReturn:
    if isinstance(error, grpc.RpcError) or not context.is_active() or context.code() is not None:
        raise error
    code = status_for(error)
    if code is None:
        reference = uuid.uuid4().hex[:12]
        log.error("%s failed unexpectedly (ref %s)", method, reference, exc_info=error)
        code = grpc.StatusCode.INTERNAL
        message = f"internal error (ref {reference}); the server's log has the details"
    else:
        log.info("%s -> %s: %s", method, code.name, str(error)[:MAX_MESSAGE_CHARS])
        message = public_message(str(error))
    context.abort(code, message)
    raise error  # abort() raises already; this line is for the type checker
