"""Where a job's training checkpoints live, and removing them when the job has ended.

One folder per job, ``<artifact dir>/checkpoints/<job id>/``, so that with a shared artifact
directory any worker can resume any job. The worker writes the file through the engine
(:class:`workers.engine.checkpoint.FileCheckpointer`: temporary file, fsync, rename); this
module only names and deletes, so the server can clean up without importing torch.
"""

from __future__ import annotations

import logging
import re
import shutil
from pathlib import Path

log = logging.getLogger(__name__)

CHECKPOINT_FILE = "checkpoint.pt"
_JOB_ID = re.compile(r"[A-Za-z0-9_-]{1,100}")


def checkpoint_root(artifact_dir: Path) -> Path:
    """Beside the blobs, so that a shared artifact directory shares checkpoints too."""
    return artifact_dir / "checkpoints"


class CheckpointFiles:
    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, job_id: str) -> Path:
        return self._folder(job_id) / CHECKPOINT_FILE

    def discard(self, job_id: str) -> None:
        """Delete the job's checkpoints (after it ended, whichever way)."""
        folder = self._folder(job_id)
        if folder.exists():
            shutil.rmtree(folder, ignore_errors=True)
            log.debug("deleted the checkpoints of job %s", job_id)

    def _folder(self, job_id: str) -> Path:
        if not _JOB_ID.fullmatch(job_id):
            raise ValueError(f"{job_id!r} is not a job id")
        return self.root / job_id
