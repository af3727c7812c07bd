"""Fixtures of the fault tests: a private Redis that tests may restart empty, one stack (server
and workers as real processes, short leases) shared by the end-to-end fault tests, and the
job store on the real PostgreSQL when it answers (SQLite otherwise)."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from faults_support import HEARTBEAT, LEASE_TIMEOUT, RECONCILE, FaultStack, RedisServer, fault_stack

from service.store.db import Database
from tests.shared_support import (
    POSTGRES_URL,
    digits_arrays,
    export_digits_mlp,
    npz_bytes,
    postgres_available,
    upload_dataset,
    upload_model,
)


def unique_prefix() -> str:
    return f"f{uuid.uuid4().hex[:10]}_"


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'jobs.sqlite'}"
    else:
        if not postgres_available():
            if os.environ.get("CI"):
                pytest.fail(f"PostgreSQL is not reachable at {POSTGRES_URL}")
            pytest.skip(f"PostgreSQL is not reachable at {POSTGRES_URL}")
        url = POSTGRES_URL
    db = Database.open(url, unique_prefix())
    yield db
    db.drop()
    db.close()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    if shutil.which("redis-server") is None:
        if os.environ.get("CI"):
            pytest.fail("redis-server is not installed")
        pytest.skip("redis-server is not installed")
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def stack(
    redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[FaultStack]:
    """The server and one worker; tests kill, restart and add processes, and leave at least
    one worker alive for the next test (``ensure_one_worker``)."""
    folder = tmp_path_factory.mktemp("fault-stack")
    prefix = unique_prefix()
    database_url = POSTGRES_URL if postgres_available() else f"sqlite:///{folder / 'jobs.sqlite'}"
    settings = {
        "TEMPERING_BROKER_URL": redis_server.url,
        "TEMPERING_DATABASE_URL": database_url,
        "TEMPERING_TABLE_PREFIX": prefix,
        "TEMPERING_QUEUE": f"tempering.faults-{uuid.uuid4().hex[:8]}",
        "TEMPERING_LEASE_TIMEOUT": str(LEASE_TIMEOUT),
        "TEMPERING_HEARTBEAT_INTERVAL": str(HEARTBEAT),
        "TEMPERING_RECONCILE_INTERVAL": str(RECONCILE),
        "TEMPERING_MAX_ATTEMPTS": "3",
        "TEMPERING_LOG_LEVEL": "INFO",
    }
    try:
        with fault_stack(folder, settings) as running:
            running.start_worker()
            yield running
    finally:
        database = Database.open(database_url, prefix)
        database.drop()
        database.close()


@pytest.fixture
def healthy(stack: FaultStack) -> FaultStack:
    """The shared stack with its server up and at least one worker."""
    if stack.server is None or not stack.server.alive():
        stack.start_server()
    stack.ensure_one_worker()
    return stack


@pytest.fixture
def single_worker(healthy: FaultStack) -> FaultStack:
    """The shared stack with exactly one worker (extra ones from earlier tests stopped)."""
    for worker in healthy.live_workers()[1:]:
        worker.stop()
    return healthy


@pytest.fixture(scope="session")
def digits_inputs(stack: FaultStack, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    folder = tmp_path_factory.mktemp("digits")
    x, y = digits_arrays()
    model_id = upload_model(stack.stub, export_digits_mlp(folder / "mlp.onnx", dynamo=False))
    return model_id, upload_dataset(stack.stub, npz_bytes(x, y))
