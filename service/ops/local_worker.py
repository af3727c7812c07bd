"""The Celery worker that ``python -m service`` starts next to the server by default.

A real ``celery worker`` subprocess (not eager mode), given the server's settings through
``TEMPERING_*`` variables, in its own process group so that stopping it also stops the child
process that runs the job. It dies with the server even when the server is killed outright
(:mod:`service.ops.local_worker_process`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import time

from service.core.broker import worker_command
from service.core.settings import Settings
from service.ops.child_env import child_environment

log = logging.getLogger(__name__)

MAX_RESTARTS = 5


class LocalWorker:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._process: subprocess.Popen[bytes] | None = None
        self._restarts = 0

    def start(self) -> None:
        hostname = f"tempering-local-{os.getpid()}@%h"
        command = [sys.executable, "-m", "service.ops.local_worker_process", str(os.getpid())]
        command += worker_command(self._settings, hostname)
        self._process = subprocess.Popen(
            command, env=child_environment(self._settings), start_new_session=True
        )
        log.info("started a local worker (pid %d)", self._process.pid)

    def keep_alive(self) -> None:
        """Restart the worker if it died, a few times at most."""
        if self._process is None or self._process.poll() is None:
            return
        if self._restarts >= MAX_RESTARTS:
            return
        self._restarts += 1
        log.error(
            "the local worker exited with status %s; restarting it (%d/%d)",
            self._process.returncode,
            self._restarts,
            MAX_RESTARTS,
        )
        self.start()

    def stop(self, grace: float = 10.0) -> None:
        """Warm shutdown first (quick when idle), then cold, then kill; finally clear the
        process group so no pool process outlives it. A job cut short is queued again when the
        server next starts."""
        process = self._process
        if process is None:
            return
        for sig, wait in ((signal.SIGTERM, grace), (signal.SIGQUIT, 5.0)):
            if process.poll() is not None:
                break
            process.send_signal(sig)
            _waited(process, wait)
        if process.poll() is None:
            log.warning("the local worker did not stop; killing it")
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def _waited(process: subprocess.Popen[bytes], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return True
        time.sleep(0.1)
    return False
