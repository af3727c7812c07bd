"""Fixtures of the security tests: real servers on 127.0.0.1 port 0 with API keys, TLS and
limits as each test asks, and certificates made here with the ``openssl`` command line (the
``cryptography`` package is not a dependency of the project)."""

from __future__ import annotations

import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from sec_helpers import Keys, Pki, StartServer

from service.api.auth import hash_key, new_key
from service.api.server import RunningServer, start_server
from service.core.settings import Settings

TENANTS = ("alice", "bob")


def make_settings(state: Path, **overrides: object) -> Settings:
    state.mkdir(parents=True, exist_ok=True)
    values: dict[str, object] = {
        "state_dir": state,
        "artifact_dir": state / "artifacts",
        "database_url": f"sqlite:///{state / 'jobs.sqlite'}",
        "broker_url": f"sqla+sqlite:///{state / 'broker.sqlite'}",
        "grpc_address": "127.0.0.1:0",
        "grpc_threads": 8,
        "max_upload_bytes": 8 * 1024 * 1024,
        "queue": f"tempering.security-test-{uuid.uuid4().hex[:8]}",
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


@pytest.fixture
def keys(tmp_path: Path) -> Keys:
    by_tenant = {tenant: new_key() for tenant in TENANTS}
    path = tmp_path / "api-keys"
    lines = ["# tenant:sha256", *(f"{t}:{hash_key(k)}" for t, k in by_tenant.items())]
    path.write_text("\n".join(lines) + "\n")
    return Keys(by_tenant, path)


@pytest.fixture
def start(tmp_path: Path) -> Iterator[StartServer]:
    """``start(**settings)``: a real server in this process; stopped after the test."""
    servers: list[RunningServer] = []

    def start_one(**overrides: object) -> RunningServer:
        running = start_server(make_settings(tmp_path / f"server{len(servers)}", **overrides))
        servers.append(running)
        return running

    yield start_one
    for running in servers:
        running.stop(grace=0)


@pytest.fixture
def keyed_server(start: StartServer, keys: Keys) -> RunningServer:
    return start(api_keys_file=keys.file)


@pytest.fixture
def channel(keyed_server: RunningServer) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(f"127.0.0.1:{keyed_server.port}") as chan:
        yield chan


# ---------------------------------------------------------------------------------------------
# Certificates


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def _make_ca(folder: Path, name: str) -> tuple[Path, Path]:
    key, cert = folder / f"{name}.key", folder / f"{name}.pem"
    _openssl(
        "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", f"/CN={name}",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        cwd=folder,
    )  # fmt: skip
    return cert, key


def _make_leaf(
    folder: Path, name: str, ca: tuple[Path, Path], extensions: str
) -> tuple[Path, Path]:
    key, csr, cert = folder / f"{name}.key", folder / f"{name}.csr", folder / f"{name}.pem"
    ext = folder / f"{name}.ext"
    ext.write_text(extensions)
    _openssl(
        "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", str(key), "-out", str(csr), "-subj", f"/CN={name}",
        cwd=folder,
    )  # fmt: skip
    _openssl(
        "x509", "-req", "-in", str(csr), "-CA", str(ca[0]), "-CAkey", str(ca[1]),
        "-set_serial", str(uuid.uuid4().int >> 64), "-days", "2", "-out", str(cert),
        "-extfile", str(ext),
        cwd=folder,
    )  # fmt: skip
    return cert, key


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command line is needed to make test certificates")
    folder = tmp_path_factory.mktemp("pki")
    ca = _make_ca(folder, "test-ca")
    other_ca = _make_ca(folder, "other-ca")
    leaf = "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n"
    server = _make_leaf(
        folder,
        "server",
        ca,
        leaf + "extendedKeyUsage=serverAuth\nsubjectAltName=DNS:localhost,IP:127.0.0.1\n",
    )
    client = _make_leaf(folder, "client", ca, leaf + "extendedKeyUsage=clientAuth\n")
    rogue = _make_leaf(folder, "rogue", other_ca, leaf + "extendedKeyUsage=clientAuth\n")
    return Pki(
        ca=ca[0],
        server_cert=server[0],
        server_key=server[1],
        client_cert=client[0],
        client_key=client[1],
        other_ca=other_ca[0],
        rogue_client_cert=rogue[0],
        rogue_client_key=rogue[1],
    )
