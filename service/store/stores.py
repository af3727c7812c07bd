"""Opening the stores from settings: the same wiring for the server and the workers
(:func:`workers.runner.build_runner`)."""

from __future__ import annotations

from dataclasses import dataclass

from service.core.settings import Settings
from service.store.artifacts import ArtifactStore, LocalArtifactStore
from service.store.catalog import UploadCatalog
from service.store.checkpoints import CheckpointFiles, CheckpointStore, checkpoint_root
from service.store.db import Database
from service.store.jobstore import JobStore


@dataclass(frozen=True)
class Stores:
    database: Database
    jobs: JobStore
    uploads: UploadCatalog
    artifacts: ArtifactStore
    checkpoints: CheckpointStore

    @classmethod
    def open(cls, settings: Settings) -> Stores:
        settings.state_dir.mkdir(parents=True, exist_ok=True)
        database = Database.open(settings.database_url, settings.table_prefix)
        artifacts = open_artifact_store(settings)
        return cls(
            database=database,
            jobs=JobStore(database),
            uploads=UploadCatalog(database),
            artifacts=artifacts,
            checkpoints=open_checkpoint_store(settings, artifacts),
        )

    def close(self) -> None:
        self.database.close()


def open_artifact_store(settings: Settings) -> ArtifactStore:
    """The local directory by default; an S3-compatible bucket when ``artifact_url`` is set
    (boto3 is imported only then)."""
    if not settings.artifact_url:
        return LocalArtifactStore(settings.artifact_dir)
    from service.store.s3_artifacts import S3ArtifactStore

    return S3ArtifactStore.from_url(
        settings.artifact_url,
        endpoint_url=settings.s3_endpoint_url,
        spool_dir=settings.state_dir / "s3-spool",
    )


def open_checkpoint_store(settings: Settings, artifacts: ArtifactStore) -> CheckpointStore:
    """Beside the artifacts: in the shared artifact directory, or in the bucket with a working
    copy in this machine's state directory."""
    from service.store.s3_artifacts import S3ArtifactStore

    if isinstance(artifacts, S3ArtifactStore):
        return artifacts.checkpoints(settings.state_dir / "checkpoints")
    return CheckpointFiles(checkpoint_root(settings.artifact_dir))
