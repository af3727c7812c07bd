"""The watchers' shared poll of job versions (service.jobs.job_versions)."""

from __future__ import annotations

import threading
from collections.abc import Collection, Mapping

from service.jobs.job_versions import IDS_PER_QUERY, JobVersionPoller


class Versions:
    """A job store's versions, with every read recorded."""

    def __init__(self, versions: dict[str, int]) -> None:
        self.versions = versions
        self.reads: list[list[str]] = []
        self.lock = threading.Lock()

    def __call__(self, job_ids: Collection[str]) -> Mapping[str, int]:
        with self.lock:
            self.reads.append(sorted(job_ids))
            return {i: self.versions[i] for i in job_ids if i in self.versions}


def waiting(
    poller: JobVersionPoller, job_id: str, seen: int
) -> tuple[threading.Thread, list[bool]]:
    result: list[bool] = []
    thread = threading.Thread(target=lambda: result.append(poller.wait_for_change(job_id, seen, 5)))
    thread.start()
    return thread, result


def test_one_read_serves_every_watcher_of_every_job() -> None:
    store = Versions({"a": 1, "b": 1})
    poller = JobVersionPoller(store, interval=3600)
    watchers = [waiting(poller, job_id, 1) for job_id in ("a", "a", "b")]
    while poller.watchers() < 3:
        threading.Event().wait(0.01)
    poller.poll_once()
    assert store.reads == [["a", "b"]]
    store.versions["a"] = 2
    poller.poll_once()
    for thread, _ in watchers[:2]:
        thread.join(5)
    assert [result for _, result in watchers[:2]] == [[True], [True]]
    assert watchers[2][1] == []
    store.versions["b"] = 2
    poller.poll_once()
    watchers[2][0].join(5)
    assert watchers[2][1] == [True]
    poller.close()


def test_a_deleted_job_wakes_its_watcher() -> None:
    store = Versions({"a": 3})
    poller = JobVersionPoller(store, interval=0.01)
    thread, result = waiting(poller, "a", 3)
    del store.versions["a"]
    thread.join(5)
    assert result == [True]
    poller.close()


def test_a_watcher_already_behind_is_woken_by_the_next_poll() -> None:
    poller = JobVersionPoller(Versions({"a": 5}), interval=0.01)
    assert poller.wait_for_change("a", 4, timeout=5) is True
    poller.close()


def test_a_wait_without_change_ends_at_its_timeout() -> None:
    poller = JobVersionPoller(Versions({"a": 1}), interval=0.01)
    assert poller.wait_for_change("a", 1, timeout=0.1) is False
    assert poller.watchers() == 0
    poller.close()


def test_many_watched_jobs_are_read_in_bounded_queries() -> None:
    store = Versions({})
    poller = JobVersionPoller(store, interval=3600)
    ids = [f"job-{i}" for i in range(IDS_PER_QUERY + 1)]
    with poller._lock:
        for job_id in ids:
            poller._waiters[job_id] = set()
    poller.poll_once()
    assert [len(read) for read in store.reads] == [IDS_PER_QUERY, 1]


def test_a_failed_read_is_retried_at_the_next_interval() -> None:
    calls = []

    def flaky(job_ids: Collection[str]) -> Mapping[str, int]:
        calls.append(1)
        if len(calls) == 1:
            raise ConnectionError("database restarting")
        return {}

    poller = JobVersionPoller(flaky, interval=0.01)
    assert poller.wait_for_change("a", 1, timeout=5) is True
    assert len(calls) >= 2
    poller.close()
