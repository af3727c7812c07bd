"""Where the end of a job is announced, and which of those addresses a job may name.

- The tenant's own webhook comes from the operator (``TEMPERING_TENANT_WEBHOOKS``) and is
  trusted as written.
- A job's ``webhook_url`` comes from whoever submits it, and the server will POST to it from
  inside its own network: so it must be http(s) and its host must be one the operator listed in
  ``TEMPERING_WEBHOOK_ALLOWED_HOSTS`` (server-side request forgery otherwise). An entry
  ``host`` allows that host on the scheme's default port (80, 443), ``host:port`` on that port
  only. Names are compared as written, case-insensitively, and never resolved here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import SplitResult

from service.core.errors import FailedPrecondition, InvalidRequest, PermissionDenied
from service.core.setting_values import (
    DEFAULT_PORTS,
    HostEntry,
    parse_allowed_hosts,
    parse_tenant_webhooks,
    parse_url,
)

SECRET_FILE_SETTING = "TEMPERING_WEBHOOK_SECRET_FILE"
ALLOWED_HOSTS_SETTING = "TEMPERING_WEBHOOK_ALLOWED_HOSTS"


@dataclass(frozen=True)
class WebhookTargets:
    enabled: bool = False
    """A master key is configured; without one no webhook can be signed, so none is sent."""
    tenant_urls: Mapping[str, str] = field(default_factory=dict)
    allowed_hosts: frozenset[HostEntry] = frozenset()

    @classmethod
    def from_settings(
        cls, secret_configured: bool, tenant_webhooks: str, allowed_hosts: str
    ) -> WebhookTargets:
        return cls(
            secret_configured,
            parse_tenant_webhooks(tenant_webhooks),
            parse_allowed_hosts(allowed_hosts),
        )

    def for_job(self, tenant: str, job_url: str) -> tuple[str, ...]:
        """The URLs to announce a new job of ``tenant`` to; raises if ``job_url`` may not be
        called."""
        urls: list[str] = []
        if job_url:
            if not self.enabled:
                raise FailedPrecondition(
                    f"this server sends no webhooks: webhooks need {SECRET_FILE_SETTING}"
                )
            self.check_job_url(job_url)
            urls.append(job_url)
        own = self.tenant_urls.get(tenant)
        if own and own not in urls:
            urls.append(own)
        return tuple(urls)

    def check_job_url(self, url: str) -> None:
        try:
            parts = parse_url(url)
        except ValueError as exc:
            raise InvalidRequest(f"webhook_url: {exc}") from None
        if not self._allows(parts):
            raise PermissionDenied(
                f"webhook_url: this server does not call {parts.netloc}; its operator lists the"
                f" hosts jobs may call in {ALLOWED_HOSTS_SETTING}"
            )

    def _allows(self, parts: SplitResult) -> bool:
        host = (parts.hostname or "").lower()
        port = parts.port or DEFAULT_PORTS[parts.scheme]
        if (host, port) in self.allowed_hosts:
            return True
        return port == DEFAULT_PORTS[parts.scheme] and (host, None) in self.allowed_hosts


WEBHOOKS_OFF = WebhookTargets()
