"""Errors the service raises on purpose, next to the engine's (:mod:`workers.engine.errors`).

Each carries a message a user can act on. Only :mod:`service.api.interceptor` turns them into gRPC
status codes.
"""

from workers.engine.errors import TemperingError


class ServiceError(TemperingError):
    """Base class of the service's own errors."""


class InvalidRequest(ServiceError):
    """A request field is missing or malformed."""


class NotFound(ServiceError):
    """A job or artifact id that the server does not know."""


class AlreadyExists(ServiceError):
    """The request conflicts with something recorded before (e.g. an idempotency key reused
    with different parameters)."""


class FailedPrecondition(ServiceError):
    """The request is valid but the job is not in a state that allows it."""


class PermissionDenied(ServiceError):
    """The caller may not do this on this server (e.g. call a webhook host the operator did not
    allow)."""


class ResourceExhausted(ServiceError):
    """A configured limit was reached (upload size, page size)."""


class UploadTooLarge(ResourceExhausted):
    """An upload passed the server's size limit."""


class ChecksumMismatch(ServiceError):
    """The uploaded bytes do not hash to the SHA-256 the client declared."""


class IncompleteUpload(ServiceError):
    """An upload stream ended before, or ran past, the size its header declared."""


class Unavailable(ServiceError):
    """A backing service (the broker) cannot be reached; retrying later may succeed."""


class DataLoss(ServiceError):
    """Stored bytes no longer hash to the SHA-256 recorded for them (a damaged disk, a file
    changed behind the service's back); they are never served or used."""
