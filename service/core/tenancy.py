"""Who is calling: the tenant of the current call.

The authentication interceptor (:mod:`service.api.auth_interceptor`) resolves the caller's API
key to a tenant id and runs the call with :data:`CURRENT_TENANT` set; the servicer reads it once
with :func:`current_tenant` and passes it on explicitly. Nothing below the servicer reads the
context variable: the application layer and the stores take the tenant as an argument.

This module imports neither grpc nor the stores, so workers and tools can use it.
"""

from __future__ import annotations

import contextvars
import re

DEFAULT_TENANT = "default"
"""The one tenant of a server without API keys (single-tenant open mode), and the owner of every
job and upload recorded before tenancy existed."""

MAX_TENANT_CHARS = 64
_TENANT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")

CURRENT_TENANT: contextvars.ContextVar[str] = contextvars.ContextVar("tempering_tenant")


class NoTenant(RuntimeError):
    """A servicer ran without the authentication interceptor: a wiring bug, never a user error.
    Raised instead of guessing a tenant, so that a mistake fails closed."""


def current_tenant() -> str:
    """The tenant of the call being served. Raises :class:`NoTenant` outside an authenticated
    call."""
    try:
        return CURRENT_TENANT.get()
    except LookupError:
        raise NoTenant(
            "no tenant is set for this call; the server must run its servicers behind the"
            " authentication interceptor"
        ) from None


def check_tenant_name(name: str) -> str:
    """Return ``name`` if it is a valid tenant id (1-64 of letters, digits, ``.``, ``_``, ``-``,
    starting with a letter or digit), else raise ValueError."""
    if not _TENANT.fullmatch(name):
        raise ValueError(
            f"tenant id {name!r} must be 1-{MAX_TENANT_CHARS} letters, digits, '.', '_' or '-',"
            " starting with a letter or digit"
        )
    return name
