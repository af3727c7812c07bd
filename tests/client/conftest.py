"""Fixtures of the client tests: the bundled demo assets, a runner for ``temper`` in this process,
and a real gRPC server in this process (no worker: jobs stay QUEUED unless cancelled)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from client_helpers import ASSETS, CliResult, CliRunner

from client.cli import main
from client.commands.common import API_KEY_ENV, SERVER_ENV
from client.sdk import HardeningClient


@pytest.fixture(scope="session")
def digits_model() -> Path:
    return ASSETS / "digits_cnn.onnx"


@pytest.fixture(scope="session")
def digits_train() -> Path:
    return ASSETS / "digits_train.npz"


@pytest.fixture(scope="session")
def digits_test() -> Path:
    return ASSETS / "digits_test.npz"


@pytest.fixture(autouse=True)
def no_ambient_server(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests see no TEMPERING_SERVER or API key from the machine they run on."""
    monkeypatch.delenv(SERVER_ENV, raising=False)
    monkeypatch.delenv(API_KEY_ENV, raising=False)


@pytest.fixture
def temper(capsys: pytest.CaptureFixture[str]) -> CliRunner:
    """``temper(*args)`` runs the CLI in this process and returns its exit code and output."""

    def run(*args: str | os.PathLike[str]) -> CliResult:
        code = main([str(a) for a in args])
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    return run


def serve(state: Path, **settings: object) -> Iterator[str]:
    """A real gRPC server of the service on a free port, with SQLite stores and broker."""
    server_module = pytest.importorskip("service.api.server")
    settings_module = pytest.importorskip("service.core.settings")
    state.mkdir()
    running = server_module.start_server(
        settings_module.Settings(
            state_dir=state,
            artifact_dir=state / "artifacts",
            database_url=f"sqlite:///{state / 'jobs.sqlite'}",
            broker_url=f"sqla+sqlite:///{state / 'broker.sqlite'}",
            grpc_address="127.0.0.1:0",
            grpc_threads=8,
            queue=f"tempering.client-test-{uuid.uuid4().hex[:8]}",
            **settings,
        )
    )
    try:
        yield f"127.0.0.1:{running.port}"
    finally:
        running.stop(grace=0)


@pytest.fixture
def server_address(tmp_path: Path) -> Iterator[str]:
    """An open server: no API keys, every caller is the default tenant."""
    yield from serve(tmp_path / "state")


@pytest.fixture
def keyed_server(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """A server that requires an API key, and the one key it accepts."""
    auth = pytest.importorskip("service.api.auth")
    key = auth.new_key()
    keys_file = tmp_path / "api-keys"
    keys_file.write_text(f"alice:{auth.hash_key(key)}\n")
    for address in serve(tmp_path / "state", api_keys_file=keys_file):
        yield address, key


@pytest.fixture
def api(server_address: str) -> Iterator[HardeningClient]:
    with HardeningClient(server_address, timeout=30) as client:
        yield client
