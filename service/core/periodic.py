"""A pass of work repeated on a daemon thread of the server (the reconciler, the webhook
notifier): a pass that fails is logged and the next one still runs on time."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)


class Periodic:
    def __init__(self, name: str, run_once: Callable[[], object], interval: float) -> None:
        self._name = name
        self._run_once = run_once
        self._interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name=self._name, daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Ask the loop to end and wait up to ``timeout`` seconds for the pass under way."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _loop(self) -> None:
        while True:
            try:
                self._run_once()
            except Exception:
                log.exception("%s pass failed; trying again in %.0f s", self._name, self._interval)
            if self._stop.wait(self._interval):
                return
