"""What the service tests share besides fixtures: unique table prefixes and settings for an
in-process server. Tests import it by this name (``conftest``
names clash across test folders)."""

from __future__ import annotations

import uuid
from pathlib import Path

from service.core.settings import Settings

UPLOAD_LIMIT = 8 * 1024 * 1024


def unique_prefix() -> str:
    return f"t{uuid.uuid4().hex[:10]}_"


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
