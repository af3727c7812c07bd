"""deploy/docker/healthcheck.py against real servers (in this process, port 0): SERVING is 0,
anything else 1, over plaintext, TLS and mutual TLS, as the images and the chart run it."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from deploy_helpers import DOCKER, HEALTHCHECK, Pki, parse_dockerfile
from grpc_health.v1 import health_pb2

from service.api.server import SERVICE_NAME, RunningServer, start_server
from service.core.settings import Settings

StartServer = Callable[..., RunningServer]


@pytest.fixture
def start(tmp_path: Path) -> Iterator[StartServer]:
    servers: list[RunningServer] = []

    def start_one(**overrides: Any) -> RunningServer:
        state = tmp_path / f"server{len(servers)}"
        state.mkdir()
        values: dict[str, Any] = {
            "state_dir": state,
            "artifact_dir": state / "artifacts",
            "database_url": f"sqlite:///{state / 'jobs.sqlite'}",
            "broker_url": f"sqla+sqlite:///{state / 'broker.sqlite'}",
            "grpc_address": "127.0.0.1:0",
            "grpc_threads": 4,
            **overrides,
        }
        running = start_server(Settings(**values))
        servers.append(running)
        return running

    yield start_one
    for running in servers:
        running.stop(grace=0)


def probe(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """The script as a container runs it: its own process, no project on the path."""
    return subprocess.run(
        [sys.executable, str(HEALTHCHECK), *args],
        env={"PATH": "/usr/bin:/bin", **(env or {})},
        cwd="/",
        capture_output=True,
        text=True,
        timeout=60,
    )


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_serving_server_is_healthy(start: StartServer) -> None:
    port = start().port
    result = probe(f"127.0.0.1:{port}")
    assert result.returncode == 0, result.stderr
    assert "SERVING" in result.stdout
    assert probe(f"127.0.0.1:{port}", "--service", SERVICE_NAME).returncode == 0


def test_address_follows_the_servers_own_setting(start: StartServer) -> None:
    port = start().port
    for listen in (f"0.0.0.0:{port}", f"[::]:{port}", f"127.0.0.1:{port}"):
        result = probe("--quiet", env={"TEMPERING_GRPC_ADDRESS": listen})
        assert result.returncode == 0, (listen, result.stderr)
        assert result.stdout == ""


def test_closed_port_is_unhealthy_quickly() -> None:
    began = time.monotonic()
    result = probe(f"127.0.0.1:{closed_port()}", "--timeout", "3")
    assert result.returncode == 1
    assert "UNAVAILABLE" in result.stderr
    assert time.monotonic() - began < 30


def test_not_serving_and_unknown_service_are_unhealthy(start: StartServer) -> None:
    running = start()
    address = f"127.0.0.1:{running.port}"
    assert probe(address, "--service", "no.such.Service").returncode == 1
    running.health.set("", health_pb2.HealthCheckResponse.NOT_SERVING)
    result = probe(address)
    assert result.returncode == 1
    assert "NOT_SERVING" in result.stderr


def test_tls_server_with_its_ca(start: StartServer, pki: Pki) -> None:
    port = start(tls_cert=pki.server_cert, tls_key=pki.server_key).port
    env = {
        "TEMPERING_GRPC_ADDRESS": f"0.0.0.0:{port}",
        "TEMPERING_TLS_CERT": str(pki.server_cert),
    }
    assert probe("--ca-cert", str(pki.ca), env=env).returncode == 0
    named = probe("--ca-cert", str(pki.ca), "--server-name", "tempering.default.svc", env=env)
    assert named.returncode == 0, named.stderr
    # A CA that did not sign the server's certificate: the handshake fails.
    assert probe("--ca-cert", str(pki.self_signed_cert), env=env).returncode == 1
    # A name the certificate does not carry: the same.
    assert probe("--ca-cert", str(pki.ca), "--server-name", "elsewhere", env=env).returncode == 1
    # Plaintext against TLS fails.
    assert probe(f"127.0.0.1:{port}").returncode == 1


def test_tls_server_with_a_self_signed_certificate_needs_no_flags(
    start: StartServer, pki: Pki
) -> None:
    """The Compose example's case: the image's own HEALTHCHECK, unchanged."""
    port = start(tls_cert=pki.self_signed_cert, tls_key=pki.self_signed_key).port
    healthcheck = parse_dockerfile(DOCKER / "service.Dockerfile").final.last("HEALTHCHECK")
    assert healthcheck is not None
    command = healthcheck.exec_form()
    assert command is not None
    env = {
        "TEMPERING_GRPC_ADDRESS": f"0.0.0.0:{port}",
        "TEMPERING_TLS_CERT": str(pki.self_signed_cert),
    }
    result = probe(*command[2:], env=env)
    assert result.returncode == 0, result.stderr


def test_mutual_tls_needs_a_client_certificate(start: StartServer, pki: Pki) -> None:
    port = start(tls_cert=pki.server_cert, tls_key=pki.server_key, tls_client_ca=pki.ca).port
    env = {
        "TEMPERING_GRPC_ADDRESS": f"0.0.0.0:{port}",
        "TEMPERING_TLS_CERT": str(pki.server_cert),
        "TEMPERING_TLS_CLIENT_CA": str(pki.ca),
    }
    missing = probe("--ca-cert", str(pki.ca), env=env)
    assert missing.returncode == 1
    assert "--client-cert" in missing.stderr
    client = ("--client-cert", str(pki.client_cert), "--client-key", str(pki.client_key))
    result = probe("--ca-cert", str(pki.ca), *client, env=env)
    assert result.returncode == 0, result.stderr


def test_the_script_imports_only_grpc() -> None:
    """It runs in the server image and must stay light: no project, no celery, no torch."""
    code = (
        "import runpy, sys; sys.argv = ['healthcheck', '--help'];\n"
        "try:\n"
        f"    runpy.run_path({str(HEALTHCHECK)!r}, run_name='__main__')\n"
        "except SystemExit:\n"
        "    pass\n"
        "print(sorted({m.split('.')[0] for m in sys.modules}"
        " & {'service', 'workers', 'client', 'celery', 'torch', 'numpy', 'tempering'}))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        env={"PATH": "/usr/bin:/bin"},
        cwd="/",
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert result.stdout.strip().splitlines()[-1] == "[]"
