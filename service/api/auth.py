"""API keys: how they are made, stored and checked.

A key is 32 random bytes from :mod:`secrets`, URL-safe base64 with a ``tpk_`` prefix (so that
secret scanners and people recognise it). The server never stores keys, only their SHA-256, in
a file of ``tenant:sha256hex`` lines (``TEMPERING_API_KEYS_FILE``)::

    # tenant:sha256 of the key; several lines per tenant are fine (key rotation)
    alice:5f2b...e91c
    bob:0d1a...77f4

Make a key and its line with ``python -m service.api.auth new-key TENANT`` (standard library only;
neither the ``temper`` CLI nor the server is needed).

Why SHA-256 and not bcrypt/scrypt/argon2: slow, salted hashes protect *passwords*, which people
choose and which an attacker holding the hash file can guess. These keys are 256-bit random
values; no amount of guessing finds one from its SHA-256, so a slow hash buys nothing, while it
would cost tens of milliseconds of CPU on *every* call (each RPC presents its key) and, being
salted, would force trying every stored hash in turn. A plain SHA-256 is the usual choice for
high-entropy tokens.

Checking a key hashes it once and compares the digest with every stored digest using
:func:`hmac.compare_digest`, without stopping at a match, so the time taken does not tell how
much of a digest matched nor where in the file the key sits.

This module uses only the standard library.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import os
import secrets
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from service.core.tenancy import check_tenant_name

KEY_PREFIX = "tpk_"
KEY_BYTES = 32
MAX_KEY_CHARS = 512
"""Longer bearer tokens are refused before hashing (no key we make is near this)."""
_HEX = frozenset("0123456789abcdef")


class KeyFileError(ValueError):
    """The API key file cannot be used; the message names the file and the line."""


def new_key() -> str:
    """A fresh API key: 256 random bits."""
    return KEY_PREFIX + secrets.token_urlsafe(KEY_BYTES)


def hash_key(key: str) -> str:
    """The lower-case hex SHA-256 of a key, as stored in the key file."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class _Entry:
    tenant: str
    digest: bytes


class ApiKeyStore:
    """The hashed keys of every tenant; answers which tenant a presented key belongs to."""

    def __init__(self, entries: Iterable[tuple[str, str]] = ()) -> None:
        """``entries``: (tenant, hex SHA-256 of a key) pairs."""
        parsed: list[_Entry] = []
        seen: set[bytes] = set()
        for tenant, hex_digest in entries:
            check_tenant_name(tenant)
            digest = _digest_from_hex(hex_digest)
            if digest in seen:
                raise ValueError("the same key hash is listed twice")
            seen.add(digest)
            parsed.append(_Entry(tenant, digest))
        self._entries = tuple(parsed)

    @classmethod
    def from_file(cls, path: Path) -> ApiKeyStore:
        """Read ``tenant:sha256hex`` lines; blank lines and ``#`` comments are skipped."""
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise KeyFileError(f"cannot read the API key file {path}: {exc.strerror}") from exc
        entries: list[tuple[str, str]] = []
        for number, raw in enumerate(text.splitlines(), start=1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            tenant, sep, hex_digest = line.partition(":")
            if not sep:
                raise KeyFileError(f"{path}:{number}: expected tenant:sha256hex")
            entries.append((tenant.strip(), hex_digest.strip()))
        try:
            return cls(entries)
        except ValueError as exc:
            raise KeyFileError(f"{path}: {exc}") from exc

    @property
    def is_empty(self) -> bool:
        return not self._entries

    @property
    def tenants(self) -> frozenset[str]:
        return frozenset(e.tenant for e in self._entries)

    def authenticate(self, key: str) -> str | None:
        """The tenant whose key this is, or None. Compares against every stored digest in
        constant time per digest and does not stop at a match."""
        if not key or len(key) > MAX_KEY_CHARS:
            return None
        presented = hashlib.sha256(key.encode("utf-8")).digest()
        found: str | None = None
        for entry in self._entries:
            if hmac.compare_digest(presented, entry.digest):
                found = entry.tenant
        return found


def _digest_from_hex(hex_digest: str) -> bytes:
    value = hex_digest.strip().lower()
    if len(value) != 64 or not set(value) <= _HEX:
        raise ValueError(
            "a key hash must be 64 hex characters (the SHA-256 of the key; make one with"
            " `python -m service.api.auth new-key TENANT`)"
        )
    return bytes.fromhex(value)


# ---------------------------------------------------------------------------------------------
# python -m service.api.auth


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m service.api.auth",
        description="Make and hash Tempering API keys.",
        allow_abbrev=False,
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    make = commands.add_parser(
        "new-key",
        help="make a key for TENANT; prints the key and the line for the key file",
        allow_abbrev=False,
    )
    make.add_argument("tenant")
    make.add_argument(
        "--append-to",
        type=Path,
        metavar="KEYS_FILE",
        help="append the tenant:hash line to this file (created with mode 0600 if missing)",
    )
    commands.add_parser("hash-key", help="read a key on stdin and print its SHA-256")
    args = parser.parse_args(argv)
    if args.command == "hash-key":
        key = sys.stdin.readline().strip()
        if not key:
            print("no key on stdin", file=sys.stderr)
            return 2
        print(hash_key(key))
        return 0
    try:
        tenant = check_tenant_name(args.tenant)
    except ValueError as exc:
        print(exc, file=sys.stderr)
        return 2
    key = new_key()
    line = f"{tenant}:{hash_key(key)}"
    if args.append_to is not None:
        _append_line(args.append_to, line)
        print(f"appended the hash to {args.append_to}", file=sys.stderr)
    else:
        print(f"key file line: {line}", file=sys.stderr)
    print("give the tenant this key (it is shown once and stored nowhere):", file=sys.stderr)
    print(key)
    return 0


def _append_line(path: Path, line: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    with os.fdopen(fd, "a", encoding="utf-8") as file:
        file.write(line + "\n")


if __name__ == "__main__":
    raise SystemExit(main())
