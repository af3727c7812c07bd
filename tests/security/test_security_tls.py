"""TLS and mutual TLS on a real server, with certificates made by the openssl command line."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest
from sec_helpers import Keys, Pki, StartServer
from tempering.v1 import hardening_pb2 as pb
from tempering.v1 import hardening_pb2_grpc as pb_grpc

from client import AuthenticationFailed, ConnectionFailed, HardeningClient, TlsConfig
from service.api.transport import plan_exposure
from service.core.settings import SettingsError

CALL_TIMEOUT = 10


def list_over(channel: grpc.Channel, keys: Keys) -> pb.ListJobsResponse:
    stub = pb_grpc.HardeningServiceStub(channel)
    return stub.ListJobs(
        pb.ListJobsRequest(), metadata=keys.metadata("alice"), timeout=CALL_TIMEOUT
    )


def credentials(
    ca: Path, cert: Path | None = None, key: Path | None = None
) -> grpc.ChannelCredentials:
    return grpc.ssl_channel_credentials(
        root_certificates=ca.read_bytes(),
        private_key=key.read_bytes() if key else None,
        certificate_chain=cert.read_bytes() if cert else None,
    )


@pytest.fixture
def tls_target(start: StartServer, pki: Pki, keys: Keys) -> str:
    running = start(api_keys_file=keys.file, tls_cert=pki.server_cert, tls_key=pki.server_key)
    return f"127.0.0.1:{running.port}"


@pytest.fixture
def mtls_target(start: StartServer, pki: Pki, keys: Keys) -> str:
    running = start(
        api_keys_file=keys.file,
        tls_cert=pki.server_cert,
        tls_key=pki.server_key,
        tls_client_ca=pki.ca,
    )
    return f"127.0.0.1:{running.port}"


def test_a_client_trusting_the_ca_is_served_over_tls(tls_target: str, pki: Pki, keys: Keys) -> None:
    with grpc.secure_channel(tls_target, credentials(pki.ca)) as channel:
        assert list(list_over(channel, keys).jobs) == []


def test_the_sdk_connects_with_tls_and_its_key(tls_target: str, pki: Pki, keys: Keys) -> None:
    tls = TlsConfig(ca_cert=pki.ca)
    with HardeningClient(
        tls_target, api_key=keys.by_tenant["bob"], tls=tls, timeout=CALL_TIMEOUT
    ) as api:
        assert api.list().jobs == ()
    with (
        HardeningClient(tls_target, tls=tls, timeout=CALL_TIMEOUT) as keyless,
        pytest.raises(AuthenticationFailed),
    ):
        keyless.list()


def test_a_plaintext_client_cannot_talk_to_a_tls_server(tls_target: str, keys: Keys) -> None:
    with grpc.insecure_channel(tls_target) as channel, pytest.raises(grpc.RpcError) as failed:
        list_over(channel, keys)

    assert failed.value.code() is grpc.StatusCode.UNAVAILABLE


def test_a_client_that_does_not_trust_the_servers_ca_refuses_it(
    tls_target: str, pki: Pki, keys: Keys
) -> None:
    with (
        grpc.secure_channel(tls_target, credentials(pki.other_ca)) as channel,
        pytest.raises(grpc.RpcError) as failed,
    ):
        list_over(channel, keys)

    assert failed.value.code() is grpc.StatusCode.UNAVAILABLE


def test_mutual_tls_serves_a_client_with_a_certificate_from_the_ca(
    mtls_target: str, pki: Pki, keys: Keys
) -> None:
    tls = TlsConfig(ca_cert=pki.ca, client_cert=pki.client_cert, client_key=pki.client_key)
    with HardeningClient(
        mtls_target, api_key=keys.by_tenant["alice"], tls=tls, timeout=CALL_TIMEOUT
    ) as api:
        assert api.list().jobs == ()


@pytest.mark.parametrize("client", ["none", "rogue"])
def test_mutual_tls_rejects_a_client_without_a_trusted_certificate(
    mtls_target: str, pki: Pki, keys: Keys, client: str
) -> None:
    if client == "none":
        tls = TlsConfig(ca_cert=pki.ca)
    else:
        tls = TlsConfig(
            ca_cert=pki.ca, client_cert=pki.rogue_client_cert, client_key=pki.rogue_client_key
        )
    with (
        HardeningClient(
            mtls_target, api_key=keys.by_tenant["alice"], tls=tls, timeout=CALL_TIMEOUT
        ) as api,
        pytest.raises(ConnectionFailed),
    ):
        api.list()


def test_tls_with_keys_may_listen_beyond_loopback(pki: Pki, keys: Keys, tmp_path: Path) -> None:
    from service.core.settings import Settings

    settings = Settings(
        state_dir=tmp_path,
        artifact_dir=tmp_path,
        database_url="sqlite://",
        broker_url="memory://",
        grpc_address="0.0.0.0:50051",
        api_keys_file=keys.file,
        tls_cert=pki.server_cert,
        tls_key=pki.server_key,
        tls_client_ca=pki.ca,
    )

    exposure = plan_exposure(settings)

    assert exposure.credentials is not None
    assert exposure.mutual_tls
    assert exposure.warnings == ()
    assert exposure.describe() == "mutual TLS, API keys of 2 tenant(s)"


def test_tls_settings_must_be_complete_and_readable(
    start: StartServer, pki: Pki, tmp_path: Path
) -> None:
    with pytest.raises(SettingsError, match="TLS_CERT and TEMPERING_TLS_KEY go together"):
        start(tls_cert=pki.server_cert)
    with pytest.raises(SettingsError, match="TLS_CLIENT_CA"):
        start(tls_client_ca=pki.ca)
    with pytest.raises(SettingsError, match="cannot read"):
        start(tls_cert=tmp_path / "missing.pem", tls_key=pki.server_key)
    not_pem = tmp_path / "cert.der"
    not_pem.write_bytes(b"\x30\x82")
    with pytest.raises(SettingsError, match="not a PEM file"):
        start(tls_cert=not_pem, tls_key=pki.server_key)


def test_the_cli_speaks_mutual_tls(
    mtls_target: str, pki: Pki, keys: Keys, capsys: pytest.CaptureFixture[str]
) -> None:
    from client.cli import main

    base = ["--server", mtls_target, "--api-key", keys.by_tenant["alice"], "--ca-cert"]
    base.append(str(pki.ca))
    certificate = ["--client-cert", str(pki.client_cert), "--client-key", str(pki.client_key)]

    assert main([*base, *certificate, "jobs", "--json"]) == 0
    assert main([*base, "--client-cert", str(pki.client_cert), "jobs"]) == 2
    assert "go together" in capsys.readouterr().err
    assert main([*base, "jobs"]) != 0  # no client certificate: the handshake fails
