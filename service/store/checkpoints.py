"""Where a job's training checkpoints live between attempts, and removing them when it ended.

The engine writes one file per job through :class:`workers.engine.checkpoint.FileCheckpointer`
(temporary file, fsync, rename); this module only decides where that file is and how another
machine gets it, so the server can clean up without importing torch. Two stores:

- :class:`CheckpointFiles`: one folder per job, ``<artifact dir>/checkpoints/<job id>/``. With a
  shared artifact directory (a volume every worker mounts) any worker resumes any job.
- :class:`service.store.s3_artifacts.S3Checkpoints`: with an ``s3://`` artifact store there is no
  shared directory, so the worker keeps its working copy in a local folder and pushes it to
  ``<prefix>/checkpoints/<job id>/checkpoint.pt`` after every save (:class:`PushingCheckpointer`);
  the worker that picks the job up next, on this machine or another, fetches it first.
"""

from __future__ import annotations

import logging
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

log = logging.getLogger(__name__)

CHECKPOINT_FILE = "checkpoint.pt"
_JOB_ID = re.compile(r"[A-Za-z0-9_-]{1,100}")


def checkpoint_root(artifact_dir: Path) -> Path:
    """Beside the blobs, so that a shared artifact directory shares checkpoints too."""
    return artifact_dir / "checkpoints"


class CheckpointStore(Protocol):
    def path(self, job_id: str) -> Path:
        """The file the engine reads and writes during an attempt on this machine."""
        ...

    def fetch(self, job_id: str) -> None:
        """Before an attempt: bring the job's last checkpoint to :meth:`path`, if it has one."""
        ...

    def push(self, job_id: str) -> None:
        """After each save: make the file at :meth:`path` the one the next attempt fetches."""
        ...

    def discard(self, job_id: str) -> None:
        """Delete the job's checkpoints (after it ended, whichever way)."""
        ...


def checked_job_id(job_id: str) -> str:
    """``job_id``, if it can name a folder or key safely (no separators, no dots)."""
    if not _JOB_ID.fullmatch(job_id):
        raise ValueError(f"{job_id!r} is not a job id")
    return job_id


def job_folder(root: Path, job_id: str) -> Path:
    return root / checked_job_id(job_id)


class CheckpointFiles:
    """Checkpoints in a folder every worker sees: fetching and pushing have nothing to do."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, job_id: str) -> Path:
        return job_folder(self.root, job_id) / CHECKPOINT_FILE

    def fetch(self, job_id: str) -> None:
        pass

    def push(self, job_id: str) -> None:
        pass

    def discard(self, job_id: str) -> None:
        folder = job_folder(self.root, job_id)
        if folder.exists():
            shutil.rmtree(folder, ignore_errors=True)
            log.debug("deleted the checkpoints of job %s", job_id)


class PushingCheckpointer:
    """Wraps the engine's checkpointer so that every save is followed by ``push`` (the store's
    :meth:`CheckpointStore.push` for this job): a worker on another machine then resumes from
    the last epoch this one finished."""

    def __init__(self, inner: Any, push: Callable[[], None]) -> None:
        self._inner = inner
        self._push = push

    def load(self) -> Any:
        return self._inner.load()

    def save(self, state: Any) -> None:
        self._inner.save(state)
        self._push()
