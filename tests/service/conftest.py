"""Fixtures of the service tests: stores on SQLite and on the real PostgreSQL, and a real gRPC
server in-process on port 0."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
import sqlalchemy as sa
from tempering.v1 import hardening_pb2_grpc as pb_grpc

from service.db import Database
from service.server import RunningServer, start_server
from service.settings import Settings

POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
UPLOAD_LIMIT = 8 * 1024 * 1024


def unique_prefix() -> str:
    return f"t{uuid.uuid4().hex[:10]}_"


def postgres_available() -> bool:
    try:
        engine = sa.create_engine(POSTGRES_URL, connect_args={"connect_timeout": 3})
        with engine.connect():
            pass
        engine.dispose()
        return True
    except Exception:
        return False


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    """A fresh schema: a SQLite file, or uniquely prefixed tables in the real PostgreSQL."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'jobs.sqlite'}"
    else:
        if not postgres_available():
            message = f"PostgreSQL is not reachable at {POSTGRES_URL}"
            if os.environ.get("CI"):
                pytest.fail(message + " (CI must run these tests, not skip them)")
            pytest.skip(message)
        url = POSTGRES_URL
    db = Database.open(url, unique_prefix())
    yield db
    db.drop()
    db.close()


def make_settings(tmp_path: Path, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "state_dir": tmp_path,
        "artifact_dir": tmp_path / "artifacts",
        "database_url": f"sqlite:///{tmp_path / 'jobs.sqlite'}",
        "broker_url": f"sqla+sqlite:///{tmp_path / 'broker.sqlite'}",
        "grpc_address": "127.0.0.1:0",
        "grpc_threads": 8,
        "max_upload_bytes": UPLOAD_LIMIT,
        "queue": f"tempering.test-{uuid.uuid4().hex[:8]}",
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path)


@pytest.fixture
def server(settings: Settings) -> Iterator[RunningServer]:
    running = start_server(settings)
    yield running
    running.stop(grace=0)


@pytest.fixture
def channel(server: RunningServer) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as chan:
        yield chan


@pytest.fixture
def stub(channel: grpc.Channel) -> pb_grpc.HardeningServiceStub:
    return pb_grpc.HardeningServiceStub(channel)
