"""The corpus's servers, as a client sees them: the settings they run with (importable without
pytest, numpy or onnx, so that a server process started by ``bench/hostile_rss.py`` carries
nothing the real server would not), and a connection as two tenants.

Each server runs in its own folder, laid out so that anything written outside the store shows:

    <root>/state/            the server's state dir: job store, broker, artifacts/
    <root>/outside/markers/  where a trap's code would create its marker file
    <root>/outside/bait/     a file that hostile external-data references point at
    <root>/api-keys          the two tenants' key hashes

Every case is sent as the tenant ``mallory``; ``alice`` owns a valid job submitted first, and
after each case the server must still answer her.
"""

from __future__ import annotations

import hashlib
import uuid
from pathlib import Path

from service.core.settings import Settings

CHUNK = 1024 * 1024
UPLOAD_LIMIT = 4 * CHUNK
"""The servers of the corpus accept at most this many bytes per upload."""

HOSTILE_TENANT = "mallory"
OTHER_TENANT = "alice"
KEYS = {HOSTILE_TENANT: "tpk_hostile-corpus-mallory", OTHER_TENANT: "tpk_hostile-corpus-alice"}
"""Fixed test keys (the server stores only their SHA-256)."""


def write_key_file(root: Path) -> Path:
    path = root / "api-keys"
    path.write_text(
        "".join(f"{t}:{hashlib.sha256(k.encode()).hexdigest()}\n" for t, k in KEYS.items())
    )
    return path


def hostile_settings(root: Path, *, trusted: bool) -> Settings:
    state = root / "state"
    return Settings(
        state_dir=state,
        artifact_dir=state / "artifacts",
        database_url=f"sqlite:///{state / 'jobs.sqlite'}",
        broker_url=f"sqla+sqlite:///{state / 'broker.sqlite'}",
        grpc_address="127.0.0.1:0",
        grpc_threads=8,
        max_upload_bytes=UPLOAD_LIMIT,
        allow_trusted_formats=trusted,
        api_keys_file=root / "api-keys",
        queue=f"tempering.hostile-{uuid.uuid4().hex[:8]}",
    )
