"""The S3-compatible artifact store, against a real S3 server (moto's) on loopback: the same
guarantees as the local store (test_artifact_store.py)."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from service.core.errors import ChecksumMismatch, DataLoss, NotFound
from service.core.settings import Settings, SettingsError
from service.store.artifacts import LocalArtifactStore, verified_chunks
from service.store.stores import open_artifact_store

boto3 = pytest.importorskip("boto3")
moto_server = pytest.importorskip("moto.server")

from service.core.setting_values import parse_s3_url  # noqa: E402
from service.store.s3_artifacts import S3ArtifactStore  # noqa: E402

MiB = 1024 * 1024


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def s3(endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)
    return boto3.client("s3", endpoint_url=endpoint)


@pytest.fixture
def bucket(s3: Any) -> str:
    name = f"tempering-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name)
    return name


@pytest.fixture
def store(endpoint: str, bucket: str, tmp_path: Path) -> S3ArtifactStore:
    return S3ArtifactStore.from_url(
        f"s3://{bucket}/some/prefix", endpoint_url=endpoint, spool_dir=tmp_path / "spool"
    )


def object_keys(s3: Any, bucket: str) -> list[str]:
    return [o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_committed_blob_is_named_by_its_sha256_and_records_it(
    store: S3ArtifactStore, s3: Any, bucket: str, tmp_path: Path
) -> None:
    data = b"hello " * 1000

    with store.new_blob() as blob:
        blob.write(data[:10])
        blob.write(data[10:])
        stored = blob.commit(expected_sha256=sha(data).upper())

    assert stored.sha256 == sha(data)
    assert stored.size_bytes == len(data)
    key = f"some/prefix/blobs/{stored.sha256[:2]}/{stored.sha256[2:4]}/{stored.sha256}"
    assert object_keys(s3, bucket) == [key]
    assert s3.head_object(Bucket=bucket, Key=key)["Metadata"] == {"sha256": stored.sha256}
    with store.open(stored.sha256) as f:
        assert f.read() == data
    assert b"".join(verified_chunks(store, stored.sha256)) == data
    assert store.exists(stored.sha256)
    assert list((tmp_path / "spool").iterdir()) == []


def test_reads_stream_in_chunks(store: S3ArtifactStore) -> None:
    data = bytes(range(256)) * 12_000  # ~3 MB
    with store.new_blob() as blob:
        blob.write(data)
        stored = blob.commit()

    with store.open(stored.sha256) as f:
        first = f.read(1000)
        rest = f.read()
    assert first + rest == data
    chunks = list(verified_chunks(store, stored.sha256))
    assert len(chunks) == 3
    assert b"".join(chunks) == data


def test_a_large_blob_goes_up_in_parts_and_comes_back_checked(
    endpoint: str, bucket: str, s3: Any, tmp_path: Path
) -> None:
    store = S3ArtifactStore(
        bucket, "big", endpoint_url=endpoint, spool_dir=tmp_path, multipart_threshold=5 * MiB
    )
    data = b"".join(hashlib.sha256(str(i).encode()).digest() for i in range(12 * MiB // 32))
    source = tmp_path / "large.bin"
    source.write_bytes(data)

    stored = store.put_file(source)

    head = s3.head_object(Bucket=bucket, Key=store.key(stored.sha256))
    assert "-" in head["ETag"]  # a multipart upload's ETag
    assert head["Metadata"] == {"sha256": sha(data)}
    assert head["ContentLength"] == len(data)
    with store.local_path(stored.sha256) as path:
        assert path.read_bytes() == data
    assert not path.exists()


def test_a_blob_is_invisible_until_committed_and_gone_if_abandoned(
    store: S3ArtifactStore, s3: Any, bucket: str, tmp_path: Path
) -> None:
    seen_while_writing: list[str] = []

    def abandoned_upload() -> None:
        with store.new_blob() as blob:
            blob.write(b"partial")
            seen_while_writing.extend(object_keys(s3, bucket))
            raise RuntimeError("client went away")

    with pytest.raises(RuntimeError):
        abandoned_upload()

    assert seen_while_writing == []
    assert object_keys(s3, bucket) == []
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    assert list((tmp_path / "spool").iterdir()) == []


def test_checksum_mismatch_keeps_nothing(store: S3ArtifactStore, s3: Any, bucket: str) -> None:
    def upload() -> None:
        with store.new_blob() as blob:
            blob.write(b"actual bytes")
            blob.commit(expected_sha256=sha(b"other bytes"))

    with pytest.raises(ChecksumMismatch, match="Upload again"):
        upload()

    assert object_keys(s3, bucket) == []


def test_same_bytes_twice_are_stored_once(
    store: S3ArtifactStore, s3: Any, bucket: str, tmp_path: Path
) -> None:
    source = tmp_path / "source.bin"
    source.write_bytes(b"x" * 3_000_000)

    first = store.put_file(source)
    second = store.put_file(source)

    assert first == second
    assert len(object_keys(s3, bucket)) == 1


def test_unknown_blob_is_not_found(store: S3ArtifactStore) -> None:
    with pytest.raises(NotFound):
        store.open("0" * 64)
    with pytest.raises(NotFound), store.local_path("0" * 64):
        pass
    with pytest.raises(NotFound):
        store.open("../../etc/passwd")
    with pytest.raises(NotFound):
        list(verified_chunks(store, "0" * 64))
    assert not store.exists("0" * 64)


def test_bytes_changed_behind_the_store_are_never_served(
    store: S3ArtifactStore, s3: Any, bucket: str
) -> None:
    data = b"the real bytes" * 1000
    with store.new_blob() as blob:
        blob.write(data)
        stored = blob.commit()
    key = store.key(stored.sha256)
    # Same length, recorded SHA-256 kept: only the content check can tell.
    s3.put_object(Bucket=bucket, Key=key, Body=b"X" + data[1:], Metadata={"sha256": stored.sha256})

    with pytest.raises(DataLoss, match="is damaged"):
        verified_chunks(store, stored.sha256)
    with pytest.raises(DataLoss, match="is damaged"), store.local_path(stored.sha256):
        pass
    with pytest.raises(DataLoss), store.open(stored.sha256) as f:
        f.read()

    # Replaced without the recorded SHA-256: refused before any byte is read.
    s3.put_object(Bucket=bucket, Key=key, Body=data)
    with pytest.raises(DataLoss, match="records SHA-256 none"):
        store.open(stored.sha256)

    # Uploading the same bytes again repairs the object.
    with store.new_blob() as blob:
        blob.write(data)
        blob.commit(expected_sha256=stored.sha256)
    assert b"".join(verified_chunks(store, stored.sha256)) == data


def test_settings_choose_the_store(endpoint: str, bucket: str, tmp_path: Path) -> None:
    local = Settings.load({"TEMPERING_STATE_DIR": str(tmp_path)})
    assert isinstance(open_artifact_store(local), LocalArtifactStore)

    settings = Settings.load(
        {
            "TEMPERING_STATE_DIR": str(tmp_path),
            "TEMPERING_ARTIFACT_URL": f"s3://{bucket}/tenants/",
            "TEMPERING_S3_ENDPOINT_URL": endpoint,
        }
    )
    chosen = open_artifact_store(settings)
    assert isinstance(chosen, S3ArtifactStore)
    assert (chosen.bucket, chosen.prefix) == (bucket, "tenants")
    stored = chosen.put_file(_write(tmp_path / "x.bin", b"through the settings"))
    assert chosen.key(stored.sha256).startswith("tenants/blobs/")
    assert Settings.load(settings.to_env()).artifact_url == settings.artifact_url


def test_settings_put_checkpoints_where_the_artifacts_are(
    endpoint: str, bucket: str, tmp_path: Path
) -> None:
    from service.store.checkpoints import CheckpointFiles
    from service.store.s3_artifacts import S3Checkpoints
    from service.store.stores import open_checkpoint_store

    local = Settings.load({"TEMPERING_STATE_DIR": str(tmp_path)})
    in_bucket = Settings.load(
        {
            "TEMPERING_STATE_DIR": str(tmp_path),
            "TEMPERING_ARTIFACT_URL": f"s3://{bucket}/tenants/",
            "TEMPERING_S3_ENDPOINT_URL": endpoint,
        }
    )

    shared = open_checkpoint_store(local, open_artifact_store(local))
    remote = open_checkpoint_store(in_bucket, open_artifact_store(in_bucket))

    assert isinstance(shared, CheckpointFiles)
    assert shared.path("j").is_relative_to(local.artifact_dir)
    assert isinstance(remote, S3Checkpoints)
    assert remote.key("j") == "tenants/checkpoints/j/checkpoint.pt"


def test_bad_s3_settings_are_refused(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="TEMPERING_ARTIFACT_URL"):
        Settings.load({"TEMPERING_STATE_DIR": str(tmp_path), "TEMPERING_ARTIFACT_URL": "/x"})
    with pytest.raises(SettingsError, match="no bucket"):
        Settings.load({"TEMPERING_STATE_DIR": str(tmp_path), "TEMPERING_ARTIFACT_URL": "s3://"})
    with pytest.raises(SettingsError, match="needs TEMPERING_ARTIFACT_URL"):
        Settings.load(
            {"TEMPERING_STATE_DIR": str(tmp_path), "TEMPERING_S3_ENDPOINT_URL": "http://m:9000"}
        )
    assert parse_s3_url("s3://b") == ("b", "")
    assert parse_s3_url("s3://b/a/b/") == ("b", "a/b")


def test_the_server_does_not_import_boto3_unless_configured(tmp_path: Path) -> None:
    code = (
        "import sys, pathlib\n"
        "from service.core.settings import Settings\n"
        "from service.store.stores import Stores\n"
        "import service.api.server\n"
        f"Stores.open(Settings.load({{'TEMPERING_STATE_DIR': {str(tmp_path)!r}}})).close()\n"
        "assert 'boto3' not in sys.modules and 'botocore' not in sys.modules, 'boto3 imported'\n"
    )
    root = Path(__file__).resolve().parents[2]
    subprocess.run(
        [sys.executable, "-c", code],
        check=True,
        cwd=root,
        env={"PYTHONPATH": f"{root}:{root / 'proto'}", "PATH": "/usr/bin:/bin"},
        timeout=120,
    )


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


# --- job checkpoints in the bucket ------------------------------------------------------------


def test_a_checkpoint_pushed_on_one_machine_is_fetched_on_another(
    store: S3ArtifactStore, tmp_path: Path
) -> None:
    first, second = store.checkpoints(tmp_path / "a"), store.checkpoints(tmp_path / "b")
    first.path("job-1").parent.mkdir(parents=True)
    first.path("job-1").write_bytes(b"epoch 3")
    first.push("job-1")

    second.fetch("job-1")

    assert second.path("job-1").read_bytes() == b"epoch 3"


def test_fetching_a_job_without_a_checkpoint_drops_a_stale_working_copy(
    store: S3ArtifactStore, tmp_path: Path
) -> None:
    checkpoints = store.checkpoints(tmp_path / "a")
    checkpoints.path("job-2").parent.mkdir(parents=True)
    checkpoints.path("job-2").write_bytes(b"from an attempt that never pushed")

    checkpoints.fetch("job-2")

    assert not checkpoints.path("job-2").exists()


def test_discarding_a_checkpoint_removes_the_bucket_copy_and_the_working_copy(
    store: S3ArtifactStore, tmp_path: Path
) -> None:
    first, second = store.checkpoints(tmp_path / "a"), store.checkpoints(tmp_path / "b")
    first.path("job-3").parent.mkdir(parents=True)
    first.path("job-3").write_bytes(b"epoch 1")
    first.push("job-3")

    first.discard("job-3")
    second.fetch("job-3")

    assert not first.path("job-3").exists()
    assert not second.path("job-3").exists()


def test_the_engine_checkpointer_pushes_every_save_so_another_worker_resumes_it(
    store: S3ArtifactStore, tmp_path: Path
) -> None:
    torch = pytest.importorskip("torch")
    from service.store.checkpoints import PushingCheckpointer
    from workers.engine.checkpoint import FileCheckpointer

    here, there = store.checkpoints(tmp_path / "a"), store.checkpoints(tmp_path / "b")
    saving = PushingCheckpointer(FileCheckpointer(here.path("job-4")), lambda: here.push("job-4"))
    saving.save({"epoch": 1, "weights": torch.ones(3)})
    saving.save({"epoch": 2, "weights": torch.full((3,), 2.0)})

    there.fetch("job-4")
    resumed = FileCheckpointer(there.path("job-4")).load()

    assert resumed is not None
    assert resumed["epoch"] == 2
    assert torch.equal(resumed["weights"], torch.full((3,), 2.0))


def test_the_runner_resumes_from_a_checkpoint_another_machine_pushed_then_discards_it(
    store: S3ArtifactStore, tmp_path: Path
) -> None:
    from service.core.domain import JobSpec, JobState, NewJob
    from service.store.catalog import UploadCatalog
    from service.store.db import Database
    from service.store.jobstore import JobStore
    from tests.runner_support import record_inputs
    from workers.engine.spec import ThreatModel
    from workers.runner import JobRunner, RunnerConfig

    database = Database.open(f"sqlite:///{tmp_path / 'jobs.sqlite'}", "s3ck_")
    jobs, catalog = JobStore(database), UploadCatalog(database)
    inputs = record_inputs(store, catalog)
    job, _ = jobs.create(
        NewJob(JobSpec(inputs.model_id, inputs.dataset_id, threat=ThreatModel(eps=0.1)))
    )
    elsewhere = store.checkpoints(tmp_path / "machine-a")
    elsewhere.path(job.id).parent.mkdir(parents=True)
    elsewhere.path(job.id).write_bytes(b"epoch 2 of 3")
    elsewhere.push(job.id)
    here = store.checkpoints(tmp_path / "machine-b")
    seen: list[bytes] = []

    def resuming(*_: Any, checkpoint_path: Path, after_checkpoint: Any) -> Any:
        seen.append(checkpoint_path.read_bytes())
        raise RuntimeError("stop here: what the engine saw is what this test is about")

    config = RunnerConfig(
        work_dir=tmp_path / "work", max_attempts=3, allow_trusted_formats=False, checkpoints=here
    )
    state = JobRunner(jobs, catalog, store, config, harden=resuming).run(job.id)

    assert seen == [b"epoch 2 of 3"]
    assert state is JobState.FAILED
    elsewhere.fetch(job.id)
    assert not elsewhere.path(job.id).exists(), "an ended job's checkpoint stayed in the bucket"


def test_a_deleted_blob_is_gone_and_deleting_it_again_says_so(
    store: S3ArtifactStore, s3: Any, bucket: str, tmp_path: Path
) -> None:
    kept_file, gone_file = tmp_path / "kept", tmp_path / "gone"
    kept_file.write_bytes(b"kept")
    gone_file.write_bytes(b"gone")
    kept, gone = store.put_file(kept_file), store.put_file(gone_file)

    assert store.delete(gone.sha256)
    assert not store.delete(gone.sha256)
    assert object_keys(s3, bucket) == [store.key(kept.sha256)]
