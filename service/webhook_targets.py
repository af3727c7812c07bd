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
from urllib.parse import SplitResult, urlsplit

from service.errors import FailedPrecondition, InvalidRequest, PermissionDenied
from service.tenancy import check_tenant_name
from service.webhook_schema import MAX_URL_CHARS

SECRET_FILE_SETTING = "TEMPERING_WEBHOOK_SECRET_FILE"
ALLOWED_HOSTS_SETTING = "TEMPERING_WEBHOOK_ALLOWED_HOSTS"
DEFAULT_PORTS = {"http": 80, "https": 443}

HostEntry = tuple[str, int | None]
"""A lower-cased host name and its port, None for the scheme's default port."""


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


def parse_url(url: str) -> SplitResult:
    """The parts of an http(s) URL with a host; ValueError saying what is wrong otherwise."""
    if len(url) > MAX_URL_CHARS:
        raise ValueError(f"a webhook URL has at most {MAX_URL_CHARS} characters")
    try:
        parts = urlsplit(url)
        _ = parts.port  # raises ValueError for a port out of range
    except ValueError:
        raise ValueError(f"{url!r} is not a valid URL") from None
    if parts.scheme not in DEFAULT_PORTS or not parts.hostname:
        raise ValueError(f"{url!r} must be an http:// or https:// URL with a host")
    if parts.username is not None or parts.password is not None:
        raise ValueError(f"{url!r} must not carry a user name or password")
    return parts


def parse_tenant_webhooks(text: str) -> dict[str, str]:
    """``alice=https://...; bob=https://...`` -> {tenant: url}; ValueError naming the part that
    is wrong."""
    result: dict[str, str] = {}
    for part in text.split(";"):
        part = part.strip()
        if not part:
            continue
        tenant, sep, url = part.partition("=")
        tenant, url = tenant.strip(), url.strip()
        if not sep or not url:
            raise ValueError(f"{part!r}: expected tenant=https://host/path")
        check_tenant_name(tenant)
        if tenant in result:
            raise ValueError(f"tenant {tenant!r} is named twice")
        parse_url(url)
        result[tenant] = url
    return result


def parse_allowed_hosts(text: str) -> frozenset[HostEntry]:
    """``hooks.example.com, 10.0.0.5:8080`` -> {(host, port or None)}."""
    entries: set[HostEntry] = set()
    for item in text.split(","):
        item = item.strip()
        if not item:
            continue
        try:
            parts = urlsplit(f"//{item}")
            port = parts.port
        except ValueError:
            raise ValueError(f"{item!r}: expected host or host:port") from None
        if not parts.hostname or parts.path or parts.query or parts.username is not None:
            raise ValueError(f"{item!r}: expected host or host:port")
        entries.add((parts.hostname.lower(), port))
    return frozenset(entries)


WEBHOOKS_OFF = WebhookTargets()
