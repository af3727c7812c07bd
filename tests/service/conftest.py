"""Fixtures of the service tests: stores on SQLite and on the real PostgreSQL, and a real gRPC
server in-process on port 0."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from service_support import make_settings, unique_prefix
from tempering.v1 import hardening_pb2_grpc as pb_grpc

from service.api.server import RunningServer, start_server
from service.core.settings import Settings
from service.store.db import Database
from tests.shared_support import POSTGRES_URL, postgres_available


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
