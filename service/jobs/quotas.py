"""Per-tenant limits: bytes stored and jobs waiting or running.

``TEMPERING_TENANT_MAX_STORED_BYTES`` and ``TEMPERING_TENANT_MAX_QUEUED_JOBS`` give every
tenant's limits (0: no limit); ``TEMPERING_TENANT_LIMITS`` overrides them per tenant::

    TEMPERING_TENANT_LIMITS="alice:stored=50G,queued=20; bob:queued=2; ci:stored=0"

A limit reached is a :class:`QuotaExceeded` (RESOURCE_EXHAUSTED) whose message names the limit,
the usage and the setting. The binding checks run in the job store, under a per-tenant lock and
in the transaction that records the job or the upload (:mod:`service.store.tenant_lock`), so
calls of one tenant racing each other cannot pass a limit together; the earlier checks without
the lock only refuse early what would be refused anyway.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from service.core.errors import ResourceExhausted
from service.core.setting_values import parse_tenant_limits

STORED_BYTES_SETTING = "TEMPERING_TENANT_MAX_STORED_BYTES"
QUEUED_JOBS_SETTING = "TEMPERING_TENANT_MAX_QUEUED_JOBS"


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
        return cls(TenantLimits(max_stored_bytes, max_queued_jobs), parse_tenant_limits(overrides))

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
