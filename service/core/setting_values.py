"""The settings whose values are small languages: sizes, switches, per-tenant limits, webhook
addresses and the S3 artifact URL.

They are parsed here, below everything that uses them, so that
:class:`service.core.settings.Settings` can refuse a bad value when it is loaded and the code that
acts on the value (quotas, webhooks, the S3 store) reads it with the same parser. Every parser
raises ValueError saying what is wrong.
"""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import SplitResult, urlsplit

from service.core.tenancy import check_tenant_name

MiB = 1024 * 1024
GiB = 1024 * MiB

MAX_URL_CHARS = 2000
"""Longest webhook URL; also the width of the outbox's ``url`` column."""
DEFAULT_PORTS = {"http": 80, "https": 443}

HostEntry = tuple[str, int | None]
"""A lower-cased host name and its port, None for the scheme's default port."""

_TENANT_LIMIT_FIELDS = {"stored": "max_stored_bytes", "queued": "max_queued_jobs"}


def parse_bool(value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError("expected true or false")


def parse_size(value: str) -> int:
    """Bytes, optionally with a K/M/G/T suffix (binary units): ``512M``, ``10G``."""
    text = value.strip().upper().removesuffix("B").removesuffix("I")
    scale = 1
    for suffix, factor in (("K", 1024), ("M", MiB), ("G", GiB), ("T", 1024 * GiB)):
        if text.endswith(suffix):
            text, scale = text[: -len(suffix)], factor
            break
    return int(float(text) * scale)


def parse_tenant_limits(text: str) -> dict[str, dict[str, int]]:
    """``tenant:stored=SIZE,queued=N; other:queued=N`` -> {tenant: {field: value}}, the fields
    being :class:`service.jobs.quotas.TenantLimits`'s."""
    parsers: dict[str, Callable[[str], int]] = {"stored": parse_size, "queued": int}
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
            values[_TENANT_LIMIT_FIELDS[key]] = value
    return result


def parse_url(url: str) -> SplitResult:
    """The parts of an http(s) URL with a host."""
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
    """``alice=https://...; bob=https://...`` -> {tenant: url}."""
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


def parse_s3_url(url: str) -> tuple[str, str]:
    """``s3://bucket/some/prefix`` -> ``("bucket", "some/prefix")``; the prefix may be empty."""
    if not url.startswith("s3://"):
        raise ValueError("expected s3://bucket or s3://bucket/prefix")
    bucket, _, prefix = url.removeprefix("s3://").partition("/")
    if not bucket:
        raise ValueError("the URL names no bucket (expected s3://bucket/prefix)")
    return bucket, prefix.strip("/")
