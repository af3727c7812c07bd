"""Tenancy in the stores, on SQLite and the real PostgreSQL: scoped reads and writes, per-tenant
idempotency keys and upload ownership, and the upgrade of a store made before tenancy."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from service.core.domain import JobQuery, JobSpec, JobState, NewJob, UploadKind, utcnow
from service.core.errors import NotFound
from service.core.tenancy import DEFAULT_TENANT
from service.store.catalog import UploadCatalog
from service.store.db import Database
from service.store.jobstore import JobStore
from tests.shared_support import POSTGRES_URL, postgres_available

SHA = "ab" * 32


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'jobs.sqlite'}"
    if not postgres_available():
        message = f"PostgreSQL is not reachable at {POSTGRES_URL}"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return POSTGRES_URL


@pytest.fixture
def prefix() -> str:
    return f"s{uuid.uuid4().hex[:10]}_"


@pytest.fixture
def database(url: str, prefix: str) -> Iterator[Database]:
    db = Database.open(url, prefix)
    yield db
    db.drop()
    db.close()


def new_job(tenant: str, key: str | None = None, epochs: int = 1) -> NewJob:
    spec = JobSpec(model_id=f"model-{SHA}", train_dataset_id=f"dataset-{SHA}")
    spec = JobSpec.from_json({**spec.to_json(), "training": {"method": "fgsm", "epochs": epochs}})
    return NewJob(spec=spec, idempotency_key=key, tenant=tenant)


def test_jobs_are_scoped_to_their_tenant(database: Database) -> None:
    store = JobStore(database)
    alices, _ = store.create(new_job("alice"))
    bobs, _ = store.create(new_job("bob"))

    assert store.get(alices.id, "alice").tenant == "alice"
    with pytest.raises(NotFound) as theirs:
        store.get(alices.id, "bob")
    with pytest.raises(NotFound) as nobodys:
        store.get("f" * 32, "bob")
    assert str(theirs.value).replace(alices.id, "?") == str(nobodys.value).replace("f" * 32, "?")
    with pytest.raises(NotFound):
        store.request_cancel(alices.id, "bob")
    assert store.get(alices.id).state is JobState.QUEUED
    assert [j.id for j in store.list_jobs(JobQuery(), "bob").jobs] == [bobs.id]
    assert {j.id for j in store.list_jobs(JobQuery()).jobs} == {alices.id, bobs.id}
    assert store.count_unfinished("alice") == 1
    store.request_cancel(alices.id, "alice")
    assert store.count_unfinished("alice") == 0


def test_idempotency_keys_are_per_tenant(database: Database) -> None:
    store = JobStore(database)

    alices, created_a = store.create(new_job("alice", "k", epochs=1))
    bobs, created_b = store.create(new_job("bob", "k", epochs=2))
    again, created_again = store.create(new_job("bob", "k", epochs=2))

    assert created_a
    assert created_b
    assert not created_again
    assert again.id == bobs.id != alices.id


def test_uploads_are_owned_per_tenant(database: Database) -> None:
    catalog = UploadCatalog(database)

    first, seen_a = catalog.record(UploadKind.MODEL, "onnx", SHA, 100, "a.onnx", "alice")
    second, seen_b = catalog.record(UploadKind.MODEL, "onnx", SHA, 100, "b.onnx", "bob")
    _, seen_again = catalog.record(UploadKind.MODEL, "onnx", SHA, 100, "b.onnx", "bob")

    assert first.id == second.id
    assert (seen_a, seen_b, seen_again) == (False, False, True)
    assert catalog.get(first.id, UploadKind.MODEL, "bob").name == "b.onnx"
    with pytest.raises(NotFound):
        catalog.get(first.id, UploadKind.MODEL, "carol")
    assert catalog.stored_bytes("alice") == 100
    assert catalog.stored_bytes("carol") == 0
    assert catalog.owns("bob", UploadKind.MODEL, SHA)
    assert not catalog.owns("carol", UploadKind.MODEL, SHA)


def _pre_tenancy_tables(prefix: str) -> sa.MetaData:
    """The schema as it was before tenancy (jobs and uploads; labels are unchanged)."""
    metadata = sa.MetaData()
    sa.Table(
        f"{prefix}jobs",
        metadata,
        sa.Column(
            "seq",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        sa.Column("id", sa.String(64), nullable=False, unique=True),
        sa.Column("state", sa.String(16), nullable=False, index=True),
        sa.Column("spec", sa.JSON, nullable=False),
        sa.Column("labels", sa.JSON, nullable=False),
        sa.Column("idempotency_key", sa.String(200), unique=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True)),
        sa.Column("finished_at", sa.DateTime(timezone=True)),
        sa.Column("version", sa.Integer, nullable=False, default=1),
        sa.Column("progress", sa.JSON),
        sa.Column("reason", sa.Text, nullable=False, default=""),
        sa.Column("cancel_requested", sa.Boolean, nullable=False, default=False),
        sa.Column("attempts", sa.Integer, nullable=False, default=0),
        sa.Column("outputs", sa.JSON, nullable=False),
        sa.Column("result", sa.JSON),
    )
    sa.Table(
        f"{prefix}uploads",
        metadata,
        sa.Column("id", sa.String(80), primary_key=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("format", sa.String(32), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("size_bytes", sa.BigInteger, nullable=False),
        sa.Column("name", sa.String(300), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    return metadata


def test_a_store_made_before_tenancy_is_upgraded(url: str, prefix: str) -> None:
    old = _pre_tenancy_tables(prefix)
    engine = sa.create_engine(url)
    old.create_all(engine)
    now = utcnow()
    with engine.begin() as conn:
        conn.execute(
            old.tables[f"{prefix}jobs"]
            .insert()
            .values(
                id="oldjob",
                state="QUEUED",
                spec=new_job(DEFAULT_TENANT).spec.to_json(),
                labels={},
                idempotency_key="k",
                created_at=now,
                updated_at=now,
                version=1,
                reason="",
                cancel_requested=False,
                attempts=0,
                outputs=[],
            )
        )
        conn.execute(
            old.tables[f"{prefix}uploads"]
            .insert()
            .values(
                id=f"model-{SHA}",
                kind="model",
                format="onnx",
                sha256=SHA,
                size_bytes=10,
                name="m.onnx",
                created_at=now,
            )
        )
    engine.dispose()

    database = Database.open(url, prefix)
    try:
        Database.open(url, prefix).close()  # a second start finds it done
        store, catalog = JobStore(database), UploadCatalog(database)

        assert store.get("oldjob", DEFAULT_TENANT).idempotency_key == "k"
        assert catalog.get(f"model-{SHA}", UploadKind.MODEL, DEFAULT_TENANT).name == "m.onnx"
        assert catalog.stored_bytes(DEFAULT_TENANT) == 10
        _, created = store.create(new_job("alice", "other-key"))
        assert created
        if database.engine.dialect.name == "postgresql":
            _, created = store.create(new_job("alice", "k"))
            assert created  # keys are per tenant once the old constraint is gone
    finally:
        database.drop()
        database.close()
