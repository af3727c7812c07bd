"""Per-tenant limits hold under concurrent calls of one tenant, on SQLite and the real
PostgreSQL: of N simultaneous submits or uploads with room for K, exactly K are recorded and
the others are RESOURCE_EXHAUSTED (the limit is checked and the row recorded in one locked
transaction, see service/store/tenant_lock.py)."""

from __future__ import annotations

import hashlib
import os
import threading
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

import pytest
from sec_helpers import dataset, linear_onnx

from service.core.domain import JobSpec, NewJob, UploadHeader, UploadKind
from service.jobs.jobs import Jobs
from service.jobs.quotas import QuotaExceeded, QuotaPolicy, TenantLimits
from service.jobs.uploads import Uploads
from service.store.artifacts import LocalArtifactStore
from service.store.catalog import UploadCatalog
from service.store.db import Database
from service.store.jobstore import JobStore
from tests.shared_support import POSTGRES_URL, postgres_available
from workers.engine.spec import Method, ModelFormat, ThreatModel, TrainingConfig

CALLERS = 8
ROOM = 3
T = TypeVar("T")


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'jobs.sqlite'}"
    else:
        if not postgres_available():
            message = f"PostgreSQL is not reachable at {POSTGRES_URL}"
            if os.environ.get("CI"):
                pytest.fail(message + " (CI must run these tests, not skip them)")
            pytest.skip(message)
        url = POSTGRES_URL
    db = Database.open(url, f"q{uuid.uuid4().hex[:10]}_")
    yield db
    db.drop()
    db.close()


class KeptQueue:
    def __init__(self) -> None:
        self.job_ids: list[str] = []

    def enqueue(self, job_id: str) -> None:
        self.job_ids.append(job_id)

    def revoke(self, job_id: str) -> None:
        return None


def all_at_once(calls: list[Callable[[], T]]) -> list[T | QuotaExceeded]:
    """Run the calls in threads released together; each gives its value or its refusal."""
    start = threading.Barrier(len(calls))

    def one(call: Callable[[], T]) -> T | QuotaExceeded:
        start.wait()
        try:
            return call()
        except QuotaExceeded as refused:
            return refused

    with ThreadPoolExecutor(len(calls)) as pool:
        return list(pool.map(one, calls))


def store_upload(uploads: Uploads, kind: UploadKind, fmt: str, data: bytes, tenant: str) -> str:
    header = UploadHeader(kind, fmt, len(data), hashlib.sha256(data).hexdigest(), "file")
    return uploads.receive(header, [data], tenant=tenant).artifact.id


def test_simultaneous_submits_of_one_tenant_stop_exactly_at_its_queued_limit(
    database: Database, tmp_path: Path
) -> None:
    quotas = QuotaPolicy(TenantLimits(max_queued_jobs=ROOM))
    store, catalog = JobStore(database), UploadCatalog(database)
    artifacts = LocalArtifactStore(tmp_path / "artifacts")
    uploads = Uploads(artifacts, catalog, max_bytes=1 << 20, allow_trusted_formats=False)
    model = store_upload(uploads, UploadKind.MODEL, ModelFormat.ONNX.value, linear_onnx(), "alice")
    data = store_upload(uploads, UploadKind.DATASET, "npz", dataset(), "alice")
    queue = KeptQueue()
    jobs = Jobs(
        store,
        catalog,
        artifacts,
        queue,
        job_time_limit=3600,
        allow_trusted_formats=False,
        quotas=quotas,
    )

    def submit(epochs: int) -> Callable[[], str]:
        training = TrainingConfig(method=Method.FGSM, epochs=epochs)
        spec = JobSpec(model, data, training=training, threat=ThreatModel(eps=0.1))
        return lambda: jobs.submit(NewJob(spec), tenant="alice").id

    outcomes = all_at_once([submit(epochs) for epochs in range(1, CALLERS + 1)])

    accepted = [o for o in outcomes if isinstance(o, str)]
    refused = [o for o in outcomes if isinstance(o, QuotaExceeded)]
    assert len(accepted) == ROOM
    assert len(refused) == CALLERS - ROOM
    assert store.count_unfinished("alice") == ROOM
    assert sorted(queue.job_ids) == sorted(accepted)


def test_simultaneous_uploads_of_one_tenant_stop_exactly_at_its_stored_bytes_limit(
    database: Database, tmp_path: Path
) -> None:
    size = 1000
    files = [bytes([n]) * size for n in range(CALLERS)]
    quotas = QuotaPolicy(TenantLimits(max_stored_bytes=ROOM * size))
    catalog = UploadCatalog(database)
    uploads = Uploads(
        LocalArtifactStore(tmp_path / "artifacts"),
        catalog,
        max_bytes=1 << 20,
        allow_trusted_formats=False,
        quotas=quotas,
    )

    def upload(data: bytes) -> Callable[[], str]:
        return lambda: store_upload(uploads, UploadKind.DATASET, "npz", data, "alice")

    outcomes = all_at_once([upload(data) for data in files])

    assert len([o for o in outcomes if isinstance(o, str)]) == ROOM
    assert len([o for o in outcomes if isinstance(o, QuotaExceeded)]) == CALLERS - ROOM
    assert catalog.stored_bytes("alice") == ROOM * size


def test_simultaneous_records_of_one_tenant_stop_exactly_at_its_stored_bytes_limit(
    database: Database,
) -> None:
    size, limit = 1000, ROOM * 1000
    catalog = UploadCatalog(database)
    quotas = QuotaPolicy(TenantLimits(max_stored_bytes=limit))

    def record(n: int) -> Callable[[], str]:
        sha = hashlib.sha256(str(n).encode()).hexdigest()
        return lambda: (
            catalog.record(
                UploadKind.DATASET,
                "npz",
                sha,
                size,
                "file",
                "alice",
                admit=lambda stored: quotas.check_upload("alice", stored, size),
            )[0].id
        )

    outcomes = all_at_once([record(n) for n in range(CALLERS)])

    assert len([o for o in outcomes if isinstance(o, str)]) == ROOM
    assert catalog.stored_bytes("alice") == limit


def test_an_idempotent_retry_racing_at_the_limit_gets_its_job_not_a_refusal(
    database: Database,
) -> None:
    store = JobStore(database)
    quotas = QuotaPolicy(TenantLimits(max_queued_jobs=1))
    sha = "ab" * 32
    spec = JobSpec(f"model-{sha}", f"dataset-{sha}", threat=ThreatModel(eps=0.1))
    new = NewJob(spec, idempotency_key="once", tenant="alice")

    def create() -> str:
        job, _ = store.create(new, admit=lambda count: quotas.check_new_job("alice", count))
        return job.id

    outcomes = all_at_once([create for _ in range(CALLERS)])

    assert all(isinstance(o, str) for o in outcomes), outcomes
    assert len(set(outcomes)) == 1
    assert store.count_unfinished("alice") == 1
