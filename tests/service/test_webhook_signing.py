"""The signature contract: what the server signs (service.webhooks.signing), the receiver's helper
(client.webhooks) verifies, and nothing else."""

from __future__ import annotations

import pytest

from client.webhooks import InvalidSignature, verify_signature
from service.webhooks.signing import signature_header, tenant_secret

MASTER_KEY = b"k" * 32
SECRET = tenant_secret(MASTER_KEY, "alice")
BODY = b'{"event":"job.finished","job":{"id":"42","state":"SUCCEEDED"}}'
NOW = 1_750_000_000


def test_a_signed_body_verifies() -> None:
    verify_signature(SECRET, signature_header(SECRET, BODY, NOW), BODY, now=NOW + 10)


def test_a_tampered_body_does_not_verify() -> None:
    header = signature_header(SECRET, BODY, NOW)

    with pytest.raises(InvalidSignature, match="no v1 signature"):
        verify_signature(SECRET, header, BODY.replace(b"SUCCEEDED", b"FAILED"), now=NOW)


def test_an_old_timestamp_is_refused_as_a_replay() -> None:
    header = signature_header(SECRET, BODY, NOW)

    with pytest.raises(InvalidSignature, match="tolerated"):
        verify_signature(SECRET, header, BODY, tolerance=300, now=NOW + 301)


def test_a_changed_timestamp_does_not_verify() -> None:
    header = signature_header(SECRET, BODY, NOW).replace(f"t={NOW}", f"t={NOW + 60}")

    with pytest.raises(InvalidSignature):
        verify_signature(SECRET, header, BODY, now=NOW + 60)


def test_another_tenants_secret_does_not_verify() -> None:
    header = signature_header(tenant_secret(MASTER_KEY, "mallory"), BODY, NOW)

    with pytest.raises(InvalidSignature):
        verify_signature(SECRET, header, BODY, now=NOW)


def test_tenant_secrets_differ_per_tenant_and_per_master_key() -> None:
    secrets = {
        tenant_secret(MASTER_KEY, "alice"),
        tenant_secret(MASTER_KEY, "bob"),
        tenant_secret(b"j" * 32, "alice"),
    }

    assert len(secrets) == 3


def test_any_matching_v1_signature_verifies_for_key_rotation() -> None:
    header = f"{signature_header(SECRET, BODY, NOW)},v1={'0' * 64}"

    verify_signature(SECRET, header, BODY, now=NOW)


@pytest.mark.parametrize("header", ["", "v1=abc", f"t={NOW}", "t=yesterday,v1=abc"])
def test_a_malformed_header_is_invalid(header: str) -> None:
    with pytest.raises(InvalidSignature):
        verify_signature(SECRET, header, BODY, now=NOW)
