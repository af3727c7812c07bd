"""More than one server process on the one gRPC port, so that the API uses more than one core.

A synchronous gRPC server in Python answers on one core at a time (the interpreter lock):
about a thousand small calls a second here, whatever the machine has. ``python -m service``
therefore starts, beside itself, ``server_processes - 1`` sibling processes
(:mod:`service.ops.sibling_server`) that bind the same port (:mod:`service.api.shared_port`)
and share the job store, the broker and the artifacts as replicas on other machines would. The
first process alone runs the background duties and the local worker
(:class:`service.api.server.ServerRole`).

Each process bounds what it serves by itself: its threads, its calls running at once, its
stream slots and each tenant's share of them, its checker processes. Linux gives each new
connection to one process, and a client keeps its connection, so each client meets one
process's limits, and no tenant can take every slot of any process. Quotas (stored bytes,
queued jobs) live in the job store and hold across processes.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import signal
import subprocess
import sys
import time

from service.api.shared_port import can_share_ports
from service.core.settings import ENV_PREFIX, Settings
from service.ops.child_env import child_environment

log = logging.getLogger(__name__)

MAX_AUTO_PROCESSES = 4
"""Past four, the job store's writes (SQLite's one writer) gain more than the API would."""
MAX_RESTARTS = 5
"""Restarts of each sibling; one that keeps dying leaves the others serving."""


def server_processes(settings: Settings) -> int:
    """The processes to run: the setting, or by default one per CPU this process may use, at
    most :data:`MAX_AUTO_PROCESSES`. One where the address cannot be shared (not Linux, a Unix
    domain socket), and by default when Prometheus metrics are served: each process counts only
    its own calls, and the endpoint belongs to the first."""
    if not can_share_ports(settings.grpc_address):
        if settings.server_processes > 1:
            log.warning(
                "%sSERVER_PROCESSES=%d: processes cannot share %s on this system; serving with one",
                ENV_PREFIX,
                settings.server_processes,
                settings.grpc_address,
            )
        return 1
    if settings.server_processes > 0:
        return settings.server_processes
    if settings.metrics_address:
        return 1
    return max(1, min(MAX_AUTO_PROCESSES, usable_cpus()))


def usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


class SiblingServers:
    """The sibling processes of one server: started, restarted when they die, stopped."""

    def __init__(self, settings: Settings, count: int) -> None:
        """``settings`` name the resolved address (never port 0) the siblings join."""
        self._settings = settings
        self._processes: list[subprocess.Popen[bytes] | None] = [None] * count
        self._restarts = [0] * count
        self._readiness: set[int] = set()
        """Read ends of the pipes the siblings not yet known to serve write one byte to."""

    @property
    def count(self) -> int:
        return len(self._processes)

    def start(self) -> None:
        for index in range(len(self._processes)):
            self._start(index)

    def wait_ready(self, timeout: float) -> int:
        """Wait until each sibling started serves or exits, for at most ``timeout`` seconds
        (0: only look); how many of them began to serve meanwhile."""
        deadline = time.monotonic() + timeout
        serving = 0
        while self._readiness:
            left = max(deadline - time.monotonic(), 0.0)
            readable, _, _ = select.select(list(self._readiness), [], [], left)
            if not readable:
                break
            for fd in readable:
                serving += len(os.read(fd, 1))
                self._forget_readiness(fd)
        return serving

    def keep_alive(self) -> None:
        """Start again each sibling that exited, a few times at most."""
        self.wait_ready(0)
        for index, process in enumerate(self._processes):
            if process is None or process.poll() is None:
                continue
            if self._restarts[index] >= MAX_RESTARTS:
                continue
            self._restarts[index] += 1
            log.error(
                "server process %d exited with status %s; starting it again (%d/%d)",
                process.pid,
                process.returncode,
                self._restarts[index],
                MAX_RESTARTS,
            )
            self._start(index)

    def _forget_readiness(self, fd: int) -> None:
        self._readiness.discard(fd)
        os.close(fd)

    def terminate(self) -> None:
        """Ask each to stop as on SIGTERM: refuse new calls, finish open ones."""
        for process in self._processes:
            if process is not None and process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    process.send_signal(signal.SIGTERM)

    def wait(self, timeout: float) -> None:
        """Wait for the terminated siblings; kill those still running after ``timeout``."""
        for fd in list(self._readiness):
            self._forget_readiness(fd)
        deadline = time.monotonic() + timeout
        for process in self._processes:
            if process is None:
                continue
            try:
                process.wait(max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                log.warning("server process %d did not stop; killing it", process.pid)
                process.kill()
                process.wait()

    def _start(self, index: int) -> None:
        ready_read, ready_write = os.pipe()
        command = [sys.executable, "-m", "service.ops.sibling_server", str(os.getpid())]
        try:
            process = subprocess.Popen(
                [*command, str(ready_write)],
                env=child_environment(self._settings),
                pass_fds=(ready_write,),
            )
        except OSError:
            os.close(ready_read)
            raise
        finally:
            os.close(ready_write)
        self._processes[index] = process
        self._readiness.add(ready_read)
        log.info("started server process %d on %s", process.pid, self._settings.grpc_address)
