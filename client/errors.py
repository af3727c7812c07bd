"""The exceptions the SDK raises. Every gRPC failure becomes one of these, keeping the status code
and the server's message, so callers catch by meaning rather than by status code."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from functools import wraps
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

import grpc

if TYPE_CHECKING:
    from client.domain import Job

P = ParamSpec("P")
T = TypeVar("T")


class ClientError(Exception):
    """Base class. ``code`` is the gRPC status code when the server (or the channel) gave one."""

    def __init__(self, message: str, code: grpc.StatusCode | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code

    def __str__(self) -> str:
        return self.message


class ConnectionFailed(ClientError):
    """The server could not be reached, or did not answer in time."""


class AuthenticationFailed(ClientError):
    """The server refused the credentials (a missing or wrong API key)."""


class RequestRefused(ClientError):
    """The server understood the request and refused it; sending it again will not help."""


class InvalidInput(RequestRefused):
    """A parameter, the model or the data is invalid, or the job is not in a state that allows
    the request (INVALID_ARGUMENT, FAILED_PRECONDITION, OUT_OF_RANGE)."""


class NotPermitted(RequestRefused):
    """The caller is known but may not ask for this, e.g. a webhook on a host the operator did
    not allow (PERMISSION_DENIED). A wrong or missing key is :class:`AuthenticationFailed`."""


class NotFound(RequestRefused):
    """No job or artifact with that id."""


class Conflict(RequestRefused):
    """The request conflicts with an earlier one, e.g. an idempotency key reused with other
    parameters (ALREADY_EXISTS, ABORTED)."""


class LimitExceeded(RequestRefused):
    """A server limit was reached, e.g. the upload size (RESOURCE_EXHAUSTED)."""


class ServerError(ClientError):
    """The server failed (INTERNAL, UNKNOWN, UNIMPLEMENTED, DATA_LOSS)."""


class IntegrityError(ClientError):
    """A download did not match the size or SHA-256 the server announced for it."""


class WaitTimeout(ClientError, TimeoutError):
    """``wait`` gave up before the job finished; the job itself goes on."""


class DeadlineExceeded(WaitTimeout):
    """The overall deadline (:meth:`client.sdk.HardeningClient.deadline`, ``temper harden
    --timeout``) passed. A job already submitted goes on unless the caller cancels it."""


class MissingExtra(ClientError):
    """A command needs an optional part of the package that is not installed."""


class JobFailed(ClientError):
    """The job ended FAILED or CANCELLED. ``job`` is None for a run in this process."""

    def __init__(self, message: str, job: Job | None = None, *, cancelled: bool = False) -> None:
        super().__init__(message)
        self.job = job
        self.cancelled = cancelled


_BY_CODE: dict[grpc.StatusCode, type[ClientError]] = {
    grpc.StatusCode.UNAVAILABLE: ConnectionFailed,
    grpc.StatusCode.DEADLINE_EXCEEDED: ConnectionFailed,
    grpc.StatusCode.CANCELLED: ConnectionFailed,
    grpc.StatusCode.UNAUTHENTICATED: AuthenticationFailed,
    grpc.StatusCode.PERMISSION_DENIED: NotPermitted,
    grpc.StatusCode.INVALID_ARGUMENT: InvalidInput,
    grpc.StatusCode.FAILED_PRECONDITION: InvalidInput,
    grpc.StatusCode.OUT_OF_RANGE: InvalidInput,
    grpc.StatusCode.NOT_FOUND: NotFound,
    grpc.StatusCode.ALREADY_EXISTS: Conflict,
    grpc.StatusCode.ABORTED: Conflict,
    grpc.StatusCode.RESOURCE_EXHAUSTED: LimitExceeded,
}


def from_rpc_error(error: grpc.RpcError) -> ClientError:
    """The :class:`ClientError` for a failed call, with its status code and details."""
    code: grpc.StatusCode | None = _call(error, "code")
    details: str | None = _call(error, "details")
    message = details or (code.name if code else str(error)) or "the call failed"
    error_type = _BY_CODE.get(code, ServerError) if code is not None else ServerError
    return error_type(message, code)


def _call(error: grpc.RpcError, name: str) -> Any:
    """Failed calls are also :class:`grpc.Call` objects; other RpcErrors lack these methods."""
    method = getattr(error, name, None)
    return method() if callable(method) else None


def translated(function: Callable[P, T]) -> Callable[P, T]:
    """Decorate a method so that a :class:`grpc.RpcError` leaves it as a :class:`ClientError`."""

    @wraps(function)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return function(*args, **kwargs)
        except grpc.RpcError as error:
            raise from_rpc_error(error) from error

    return wrapper


def translated_stream(stream: Iterator[T]) -> Iterator[T]:
    """The same items; a :class:`grpc.RpcError` raised while iterating becomes a ClientError."""
    try:
        yield from stream
    except grpc.RpcError as error:
        raise from_rpc_error(error) from error
