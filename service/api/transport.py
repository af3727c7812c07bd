"""How the server is exposed: TLS, mutual TLS, API keys, and what it refuses to start with.

The rules (docs/security.md):

- TLS is on when ``TEMPERING_TLS_CERT`` and ``TEMPERING_TLS_KEY`` are set; mutual TLS when
  ``TEMPERING_TLS_CLIENT_CA`` is set too (a client without a certificate that CA signed cannot
  even open a connection).
- Without TLS the server listens on a loopback address only, unless
  ``TEMPERING_ALLOW_INSECURE_REMOTE`` (``--allow-insecure-remote``) says otherwise, e.g. behind a
  proxy that terminates TLS.
- Without API keys (``TEMPERING_API_KEYS_FILE`` unset or empty) every caller is the tenant
  ``default`` (single-tenant open mode); allowed on loopback, refused elsewhere unless
  ``TEMPERING_INSECURE_OPEN`` (``--insecure-open``) says otherwise.

Whatever is allowed but weak is logged as a warning at start.
"""

from __future__ import annotations

import ipaddress
import logging
from dataclasses import dataclass
from pathlib import Path

import grpc

from service.api.auth import ApiKeyStore, KeyFileError
from service.core.settings import ENV_PREFIX, Settings, SettingsError
from service.core.tenancy import DEFAULT_TENANT

log = logging.getLogger(__name__)


UNIX_SOCKET_SCHEMES = ("unix:", "unix-abstract:")
"""gRPC addresses of Unix domain sockets, which only this machine reaches."""


class InsecureSetup(SettingsError):
    """The settings would expose the server in a way it refuses to be exposed."""


@dataclass(frozen=True)
class Exposure:
    """What :func:`plan_exposure` decided: the keys, the credentials, and what to warn about."""

    keys: ApiKeyStore | None
    """None: open mode, every caller is the default tenant."""
    credentials: grpc.ServerCredentials | None
    """None: plaintext."""
    mutual_tls: bool
    warnings: tuple[str, ...]

    def describe(self) -> str:
        transport = "mutual TLS" if self.mutual_tls else "TLS" if self.credentials else "plaintext"
        if self.keys is None:
            callers = f"no API keys, every caller is tenant {DEFAULT_TENANT!r}"
        else:
            callers = f"API keys of {len(self.keys.tenants)} tenant(s)"
        return f"{transport}, {callers}"


def plan_exposure(settings: Settings) -> Exposure:
    """Read the key file and the certificates, apply the rules above; raise InsecureSetup
    (or SettingsError for an unreadable file) when the server must not start."""
    loopback = is_loopback(settings.grpc_address)
    keys = _load_keys(settings.api_keys_file)
    credentials = _server_credentials(settings)
    warnings: list[str] = []
    if credentials is None and not loopback:
        if not settings.allow_insecure_remote:
            raise InsecureSetup(
                f"refusing to serve plaintext gRPC on {settings.grpc_address}, which is not a"
                f" loopback address: set {ENV_PREFIX}TLS_CERT and {ENV_PREFIX}TLS_KEY, listen on"
                " 127.0.0.1, or pass --allow-insecure-remote (e.g. behind a proxy that"
                " terminates TLS)"
            )
        warnings.append(
            f"INSECURE: plaintext gRPC on the non-loopback address {settings.grpc_address}"
            " (--allow-insecure-remote): API keys and models cross the network unencrypted"
            " unless a proxy in front terminates TLS"
        )
    if keys is None and not loopback:
        if not settings.insecure_open:
            raise InsecureSetup(
                f"refusing to serve {settings.grpc_address}, which is not a loopback address,"
                f" without API keys: set {ENV_PREFIX}API_KEYS_FILE (make keys with"
                " `python -m service.api.auth new-key TENANT`), or pass --insecure-open"
            )
        warnings.append(
            f"INSECURE: OPEN MODE on the non-loopback address {settings.grpc_address}"
            f" (--insecure-open): no API keys, anyone who can connect is tenant"
            f" {DEFAULT_TENANT!r} and sees every job"
        )
    elif keys is None:
        warnings.append(
            f"OPEN MODE: no API keys ({ENV_PREFIX}API_KEYS_FILE unset), every caller is tenant"
            f" {DEFAULT_TENANT!r}; listening on loopback only ({settings.grpc_address})"
        )
    if credentials is None and loopback:
        warnings.append(f"plaintext gRPC (no TLS) on loopback {settings.grpc_address}")
    return Exposure(keys, credentials, settings.tls_client_ca is not None, tuple(warnings))


def is_loopback(address: str) -> bool:
    """True for ``127.x.x.x:port``, ``[::1]:port``, ``localhost:port`` and unix sockets;
    False for wildcards (``0.0.0.0``, ``[::]``, ``:port``) and any other host name."""
    if address.startswith(UNIX_SOCKET_SCHEMES):
        return True
    host = address.rsplit(":", 1)[0] if ":" in address else address
    host = host.strip().removeprefix("[").removesuffix("]")
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _load_keys(path: Path | None) -> ApiKeyStore | None:
    if path is None:
        return None
    try:
        keys = ApiKeyStore.from_file(path)
    except KeyFileError as exc:
        raise SettingsError(f"{ENV_PREFIX}API_KEYS_FILE: {exc}") from exc
    if keys.is_empty:
        raise SettingsError(
            f"{ENV_PREFIX}API_KEYS_FILE: {path} holds no keys; add one (python -m service.api.auth"
            " new-key TENANT --append-to FILE) or unset the variable for open mode"
        )
    return keys


def _server_credentials(settings: Settings) -> grpc.ServerCredentials | None:
    if settings.tls_cert is None or settings.tls_key is None:
        return None
    chain = _read(settings.tls_cert, "TLS_CERT")
    key = _read(settings.tls_key, "TLS_KEY")
    if settings.tls_client_ca is None:
        return grpc.ssl_server_credentials([(key, chain)])
    client_ca = _read(settings.tls_client_ca, "TLS_CLIENT_CA")
    return grpc.ssl_server_credentials(
        [(key, chain)], root_certificates=client_ca, require_client_auth=True
    )


def _read(path: Path, setting: str) -> bytes:
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise SettingsError(f"{ENV_PREFIX}{setting}: cannot read {path}: {exc.strerror}") from exc
    if b"-----BEGIN" not in data:
        raise SettingsError(f"{ENV_PREFIX}{setting}: {path} is not a PEM file")
    return data
