"""Checking a Tempering webhook notification on the receiving side (standard library only).

The server signs each notification with the tenant's webhook secret (its operator prints it with
``python -m service webhook-secret TENANT``) and sends::

    Tempering-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<raw body>">

Check the raw body, before parsing it, and dedupe on the ``Tempering-Delivery`` header (a
notification may arrive more than once)::

    from client.webhooks import InvalidSignature, verify_signature

    try:
        verify_signature(SECRET, request.headers["Tempering-Signature"], request.body)
    except InvalidSignature:
        return 400
    event = json.loads(request.body)
"""

from __future__ import annotations

import hashlib
import hmac
import time

SIGNATURE_HEADER = "Tempering-Signature"
DELIVERY_HEADER = "Tempering-Delivery"
EVENT_HEADER = "Tempering-Event"
DEFAULT_TOLERANCE_SECONDS = 300.0


class InvalidSignature(ValueError):
    """The notification is not signed with this secret, was changed, or is too old."""


def verify_signature(
    secret: str,
    header: str,
    body: bytes,
    tolerance: float = DEFAULT_TOLERANCE_SECONDS,
    *,
    now: float | None = None,
) -> None:
    """Raise :class:`InvalidSignature` unless ``header`` signs ``body`` with ``secret`` at a
    time at most ``tolerance`` seconds from ``now`` (default: this machine's clock)."""
    timestamp, signatures = _parse(header)
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance:
        raise InvalidSignature(
            f"the signature is {abs(current - timestamp):.0f} s from now, more than the"
            f" {tolerance:.0f} s tolerated (a replay, or clocks out of step)"
        )
    expected = hmac.new(
        secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256
    ).hexdigest()
    if not any(hmac.compare_digest(expected, candidate) for candidate in signatures):
        raise InvalidSignature("no v1 signature matches this body and secret")


def _parse(header: str) -> tuple[int, list[str]]:
    timestamp: int | None = None
    signatures: list[str] = []
    for item in header.split(","):
        key, _, value = item.strip().partition("=")
        if key == "t":
            try:
                timestamp = int(value)
            except ValueError:
                raise InvalidSignature(f"t={value!r} is not a unix time") from None
        elif key == "v1":
            signatures.append(value)
    if timestamp is None or not signatures:
        raise InvalidSignature(f"{SIGNATURE_HEADER} needs t=<unix seconds> and v1=<hex>")
    return timestamp, signatures
