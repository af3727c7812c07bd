"""Which URLs a job is announced to, which a job may name (SSRF), and when to try again."""

from __future__ import annotations

import pytest

from service.core.errors import FailedPrecondition, InvalidRequest, PermissionDenied
from service.core.setting_values import parse_allowed_hosts, parse_tenant_webhooks
from service.webhooks.notifier import BACKOFF_CAP_SECONDS, Verdict, backoff, verdict_for
from service.webhooks.targets import WebhookTargets


def targets(allowed: str = "", tenants: str = "") -> WebhookTargets:
    return WebhookTargets.from_settings(True, tenants, allowed)


@pytest.mark.parametrize(
    "url",
    [
        "https://hooks.example.com/t",
        "http://hooks.example.com/t",
        "https://HOOKS.example.com:443/t",
        "http://registry.internal:8080/hook",
    ],
)
def test_allowed_hosts_admit_their_urls(url: str) -> None:
    allowed = targets("hooks.example.com, registry.internal:8080")

    assert allowed.for_job("alice", url) == (url,)


@pytest.mark.parametrize(
    "url",
    [
        "https://hooks.example.com:8443/t",
        "http://registry.internal/hook",
        "http://169.254.169.254/latest/meta-data",
        "https://hooks.example.com.evil.test/t",
    ],
)
def test_other_hosts_and_ports_are_permission_denied(url: str) -> None:
    allowed = targets("hooks.example.com, registry.internal:8080")

    with pytest.raises(PermissionDenied, match="TEMPERING_WEBHOOK_ALLOWED_HOSTS"):
        allowed.for_job("alice", url)


@pytest.mark.parametrize(
    "url",
    [
        "ftp://hooks.example.com/t",
        "hooks.example.com/t",
        "https:///t",
        "https://user:pw@hooks.example.com/t",
        "https://hooks.example.com:99999/t",
    ],
)
def test_urls_that_are_not_plain_http_are_invalid(url: str) -> None:
    with pytest.raises(InvalidRequest, match="webhook_url"):
        targets("hooks.example.com").for_job("alice", url)


def test_a_job_webhook_without_signing_is_a_failed_precondition() -> None:
    unsigned = WebhookTargets.from_settings(False, "", "hooks.example.com")

    with pytest.raises(FailedPrecondition, match="TEMPERING_WEBHOOK_SECRET_FILE"):
        unsigned.for_job("alice", "https://hooks.example.com/t")


def test_the_tenants_own_webhook_is_added_once() -> None:
    own = "https://hooks.example.com/alice"
    both = targets("hooks.example.com", f"alice={own}")

    assert both.for_job("alice", "") == (own,)
    assert both.for_job("alice", own) == (own,)
    assert both.for_job("bob", "") == ()


def test_tenant_webhooks_parse_per_tenant() -> None:
    parsed = parse_tenant_webhooks(" alice=https://a.example/x ; bob=http://b.example:81/y;")

    assert parsed == {"alice": "https://a.example/x", "bob": "http://b.example:81/y"}


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        ("alice", "expected tenant=https"),
        ("alice=", "expected tenant=https"),
        ("alice=ftp://a", "must be an http"),
        ("no tenant=https://a", "tenant id"),
        ("a=https://x;a=https://y", "named twice"),
    ],
)
def test_malformed_tenant_webhooks_are_refused(text: str, complaint: str) -> None:
    with pytest.raises(ValueError, match=complaint):
        parse_tenant_webhooks(text)


@pytest.mark.parametrize("text", ["hooks.example.com/path", "host:notaport", "user@host"])
def test_malformed_allowed_hosts_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="expected host or host:port"):
        parse_allowed_hosts(text)


@pytest.mark.parametrize(
    ("status", "verdict"),
    [
        (200, Verdict.DELIVERED),
        (204, Verdict.DELIVERED),
        (408, Verdict.RETRY),
        (429, Verdict.RETRY),
        (500, Verdict.RETRY),
        (503, Verdict.RETRY),
        (302, Verdict.GIVE_UP),
        (400, Verdict.GIVE_UP),
        (401, Verdict.GIVE_UP),
        (404, Verdict.GIVE_UP),
    ],
)
def test_statuses_decide_delivered_retry_or_give_up(status: int, verdict: Verdict) -> None:
    assert verdict_for(status) is verdict


def test_backoff_doubles_from_its_base_up_to_ten_minutes() -> None:
    assert [backoff(n, base=2.0) for n in (1, 2, 3, 4)] == [2.0, 4.0, 8.0, 16.0]
    assert backoff(30, base=2.0) == BACKOFF_CAP_SECONDS == 600.0
