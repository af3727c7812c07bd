"""The server's repeated passes (reconciler, webhook notifier): a pass that raises does not end
the loop, and stopping ends it."""

from __future__ import annotations

import threading

import pytest

from service.core.periodic import Periodic


def test_a_failing_pass_is_logged_and_the_next_one_still_runs(
    caplog: pytest.LogCaptureFixture,
) -> None:
    passes: list[int] = []
    third = threading.Event()

    def run_once() -> None:
        passes.append(len(passes))
        if len(passes) == 1:
            raise RuntimeError("the store blinked")
        if len(passes) == 3:
            third.set()

    periodic = Periodic("test-loop", run_once, interval=0.01)
    periodic.start()
    try:
        assert third.wait(10), "the loop stopped after a failing pass"
    finally:
        periodic.stop()

    assert "test-loop pass failed" in caplog.text


def test_stopping_ends_the_loop() -> None:
    passes: list[None] = []
    periodic = Periodic("test-loop", lambda: passes.append(None), interval=0.01)
    periodic.start()

    periodic.stop(timeout=5)
    count = len(passes)
    threading.Event().wait(0.1)

    assert len(passes) == count
