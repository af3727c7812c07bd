"""Per-tenant limits: bytes stored and jobs waiting or running.

``TEMPERING_TENANT_MAX_STORED_BYTES`` and ``TEMPERING_TENANT_MAX_QUEUED_JOBS`` give every
tenant's limits (0: no limit); ``TEMPERING_TENANT_LIMITS`` overrides them per tenant::

    TEMPERING_TENANT_LIMITS="alice:stored=50G,queued=20; bob:queued=2; ci:stored=0"

A limit reached is a :class:`QuotaExceeded` (RESOURCE_EXHAUSTED) whose message names the limit,
the usage and the setting. The binding checks run in the job store, under a per-tenant lock and
in the transaction that records the job or the upload (:mod:`service.tenant_lock`), so calls of
one tenant racing each other cannot pass a limit together; the earlier checks without the lock
only refuse early what would be refused anyway.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace

from service.errors import ResourceExhausted
from service.tenancy import check_tenant_name

STORED_BYTES_SETTING = "TEMPERING_TENANT_MAX_STORED_BYTES"
QUEUED_JOBS_SETTING = "TEMPERING_TENANT_MAX_QUEUED_JOBS"
OVERRIDES_SETTING = "TEMPERING_TENANT_LIMITS"
_OVERRIDE_KEYS = {"stored": "max_stored_bytes", "queued": "max_queued_jobs"}


class QuotaExceeded(ResourceExhausted):
    """A tenant reached one of its limits."""


@dataclass(frozen=True)
class TenantLimits:
    max_stored_bytes: int = 0
    """Bytes of models and datasets the tenant may keep; 0 = no limit."""
    max_queued_jobs: int = 0
    """Jobs of the tenant that may be queued or running at once; 0 = no limit."""


@dataclass(frozen=True)
class QuotaPolicy:
    default: TenantLimits = TenantLimits()
    overrides: Mapping[str, Mapping[str, int]] = field(default_factory=dict)
    """tenant -> {field name: value}; fields not named keep the default."""

    @classmethod
    def from_settings(
        cls, max_stored_bytes: int, max_queued_jobs: int, overrides: str
    ) -> QuotaPolicy:
        return cls(TenantLimits(max_stored_bytes, max_queued_jobs), parse_overrides(overrides))

    def limits_for(self, tenant: str) -> TenantLimits:
        return replace(self.default, **self.overrides.get(tenant, {}))

    def check_upload(self, tenant: str, stored_bytes: int, adding: int) -> None:
        """Refuse an upload of ``adding`` bytes that would take the tenant past its limit."""
        limit = self.limits_for(tenant).max_stored_bytes
        if limit and stored_bytes + adding > limit:
            raise QuotaExceeded(
                f"tenant {tenant!r} already stores {stored_bytes} bytes and its limit is"
                f" {limit} bytes ({STORED_BYTES_SETTING}); this upload of {adding} bytes would"
                " pass it"
            )

    def check_new_job(self, tenant: str, unfinished_jobs: int) -> None:
        """Refuse a job when the tenant already has its limit of jobs queued or running."""
        limit = self.limits_for(tenant).max_queued_jobs
        if limit and unfinished_jobs >= limit:
            raise QuotaExceeded(
                f"tenant {tenant!r} has {unfinished_jobs} jobs queued or running and its limit"
                f" is {limit} ({QUEUED_JOBS_SETTING}); wait for one to finish or cancel one"
            )


UNLIMITED = QuotaPolicy()


def parse_overrides(text: str) -> dict[str, dict[str, int]]:
    """``tenant:stored=SIZE,queued=N; other:queued=N`` -> {tenant: {field: value}}. Raises
    ValueError naming the part that is wrong."""
    from service.settings import _parse_size

    parsers: dict[str, Callable[[str], int]] = {"stored": _parse_size, "queued": int}
    result: dict[str, dict[str, int]] = {}
    for part in text.split(";"):
        part = part.strip()
        if not part:
            continue
        tenant, sep, body = part.partition(":")
        tenant = tenant.strip()
        if not sep:
            raise ValueError(f"{part!r}: expected tenant:stored=SIZE,queued=N")
        check_tenant_name(tenant)
        values = result.setdefault(tenant, {})
        for item in body.split(","):
            key, eq, raw = item.partition("=")
            key = key.strip().lower()
            if not eq or key not in parsers:
                raise ValueError(f"{item.strip()!r} in {part!r}: expected stored=SIZE or queued=N")
            try:
                value = parsers[key](raw.strip())
            except ValueError:
                raise ValueError(f"{item.strip()!r} in {part!r}: not a number") from None
            if value < 0:
                raise ValueError(f"{item.strip()!r} in {part!r}: must be 0 (no limit) or more")
            values[_OVERRIDE_KEYS[key]] = value
    return result
