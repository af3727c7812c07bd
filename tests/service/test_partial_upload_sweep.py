"""Partial upload files that a server killed during an upload left in ``artifacts/tmp`` are
swept at start and periodically, never those of a live upload (issue 15, finding H)."""

from __future__ import annotations

import os
import time
from pathlib import Path

from service_support import make_settings

from service.api.server import start_server
from service.store.artifacts import PARTIAL_BLOB_IDLE_SECONDS, LocalArtifactStore

LONG_AGO = time.time() - 2 * PARTIAL_BLOB_IDLE_SECONDS


def _leftover(folder: Path, name: str, mtime: float) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_bytes(b"half an upload")
    os.utime(path, (mtime, mtime))
    return path


def test_partial_blobs_a_killed_server_left_are_swept_when_the_server_starts(
    tmp_path: Path,
) -> None:
    tmp = tmp_path / "artifacts" / "tmp"
    stale = _leftover(tmp, "blob-killed.part", LONG_AGO)
    recent = _leftover(tmp, "blob-another-server.part", time.time())
    unrelated = _leftover(tmp, "notes.txt", LONG_AGO)

    running = start_server(make_settings(tmp_path))
    try:
        deadline = time.monotonic() + 30
        while stale.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        running.stop(grace=0)

    assert not stale.exists()
    assert recent.exists()
    assert unrelated.exists()


def test_the_sweep_never_takes_the_file_of_a_live_upload(tmp_path: Path) -> None:
    store = LocalArtifactStore(tmp_path)
    with store.new_blob() as blob:
        blob.write(b"first chunk")
        (live,) = (tmp_path / "tmp").glob("blob-*.part")
        os.utime(live, (LONG_AGO, LONG_AGO))  # a slow client, as far as the clock can tell
        stale = _leftover(tmp_path / "tmp", "blob-killed.part", LONG_AGO)

        assert store.sweep_partial_blobs() == 1
        assert live.exists()
        assert not stale.exists()

        blob.write(b", second chunk")
        stored = blob.commit()

    assert stored.size_bytes == len(b"first chunk, second chunk")
    assert store.exists(stored.sha256)
