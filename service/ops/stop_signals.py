"""How a process of the server learns it should stop: SIGTERM (an orchestrator, its parent) or
SIGINT (Ctrl-C), both logged, both ending the main loop the same way."""

from __future__ import annotations

import logging
import signal
import threading
from types import FrameType

log = logging.getLogger(__name__)

SHUTDOWN_SECONDS = 30.0
"""Time a server process whose parent is gone gets to stop its calls (and the first process its
worker and siblings) before it exits outright."""


def stop_on_signals() -> threading.Event:
    """An event that SIGTERM or SIGINT sets, for the main thread to wait on; call it from the
    main thread (Python delivers signals there only)."""
    stop = threading.Event()

    def request_stop(signum: int, _frame: FrameType | None) -> None:
        log.info("received signal %d; shutting down", signum)
        stop.set()

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    return stop
