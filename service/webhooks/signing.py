"""Signing webhook notifications, so a receiver knows they come from this server and are fresh.

Each tenant has its own secret, derived from the operator's master key
(``TEMPERING_WEBHOOK_SECRET_FILE``): ``hex(HMAC-SHA256(master, "tempering-webhook:" + tenant))``.
Nothing needs storing per tenant, and a tenant holding its secret cannot sign for another.
``python -m service webhook-secret TENANT`` prints one for the operator to hand over.

A notification carries ``Tempering-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of
"<t>.<body>">`` keyed with the tenant's secret (its ASCII text as the key): the timestamp is
signed with the body, so a receiver can refuse replays of old notifications.
:func:`client.webhooks.verify_signature` checks it.
"""

from __future__ import annotations

import hashlib
import hmac
from pathlib import Path

from service.core.settings import SettingsError

SIGNATURE_HEADER = "Tempering-Signature"
DELIVERY_HEADER = "Tempering-Delivery"
EVENT_HEADER = "Tempering-Event"
MIN_MASTER_KEY_BYTES = 32
_DERIVATION_PREFIX = b"tempering-webhook:"


def read_master_key(path: Path) -> bytes:
    """The master key in ``path`` (surrounding whitespace stripped); SettingsError if it cannot
    be read or is too short to be a key."""
    try:
        key = path.read_bytes().strip()
    except OSError as exc:
        raise SettingsError(f"TEMPERING_WEBHOOK_SECRET_FILE: cannot read {path}: {exc}") from exc
    if len(key) < MIN_MASTER_KEY_BYTES:
        raise SettingsError(
            f"TEMPERING_WEBHOOK_SECRET_FILE: {path} holds {len(key)} bytes; a master key needs"
            f" at least {MIN_MASTER_KEY_BYTES} (e.g. `openssl rand -hex 32`)"
        )
    return key


def tenant_secret(master_key: bytes, tenant: str) -> str:
    return hmac.new(master_key, _DERIVATION_PREFIX + tenant.encode(), hashlib.sha256).hexdigest()


def signature_header(secret: str, body: bytes, timestamp: int) -> str:
    signed = f"{timestamp}.".encode() + body
    digest = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"
