"""One reader of job versions for every open WatchJob stream.

A watch used to poll the job store on its own, four reads a second each: two hundred watchers
made eight hundred reads a second, and the threads doing them competed for the interpreter with
every other tenant's calls. Here one thread reads the versions of all watched jobs in a single
query per interval and wakes only the watchers of a job whose version moved; a watcher then
reads its job once. A job that disappears (deleted) counts as moved, so its watcher finds out.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Collection, Mapping

log = logging.getLogger(__name__)

ReadVersions = Callable[[Collection[str]], Mapping[str, int]]
"""The current version of each of these jobs; a job that no longer exists is left out."""

IDS_PER_QUERY = 500


class _Waiter:
    __slots__ = ("moved", "seen")

    def __init__(self, seen: int) -> None:
        self.seen = seen
        self.moved = threading.Event()


class JobVersionPoller:
    """Wakes watchers when their job's version differs from the one they last saw.

    The polling thread starts with the first watcher and stops with :meth:`close`. A failed
    read is logged and retried at the next interval; watchers keep waiting meanwhile."""

    def __init__(self, read_versions: ReadVersions, interval: float) -> None:
        self._read_versions = read_versions
        self._interval = interval
        self._lock = threading.Lock()
        self._waiters: dict[str, set[_Waiter]] = {}
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None

    def wait_for_change(self, job_id: str, seen_version: int, timeout: float) -> bool:
        """True once the job's version is not ``seen_version`` (or the job is gone), False when
        ``timeout`` seconds passed first."""
        waiter = _Waiter(seen_version)
        with self._lock:
            self._waiters.setdefault(job_id, set()).add(waiter)
            self._ensure_started()
        try:
            return waiter.moved.wait(timeout)
        finally:
            with self._lock:
                waiting = self._waiters.get(job_id)
                if waiting is not None:
                    waiting.discard(waiter)
                    if not waiting:
                        del self._waiters[job_id]

    def watchers(self) -> int:
        with self._lock:
            return sum(len(waiting) for waiting in self._waiters.values())

    def poll_once(self) -> None:
        """Read the versions of every watched job and wake the watchers whose job moved."""
        with self._lock:
            job_ids = list(self._waiters)
        versions: dict[str, int] = {}
        for start in range(0, len(job_ids), IDS_PER_QUERY):
            versions.update(self._read_versions(job_ids[start : start + IDS_PER_QUERY]))
        with self._lock:
            for job_id in job_ids:
                version = versions.get(job_id)
                for waiter in self._waiters.get(job_id, ()):
                    if version != waiter.seen:
                        waiter.moved.set()

    def close(self) -> None:
        self._stopped.set()
        thread = self._thread
        if thread is not None:
            thread.join()

    def _ensure_started(self) -> None:
        if self._thread is None and not self._stopped.is_set():
            self._thread = threading.Thread(target=self._run, name="job-versions", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while not self._stopped.wait(self._interval):
            try:
                self.poll_once()
            except Exception:
                log.warning("reading job versions for watchers failed; retrying", exc_info=True)
