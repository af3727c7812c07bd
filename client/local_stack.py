"""The single-machine stack as child processes, for ``temper demo``: ``python -m service`` (the
gRPC server and a local worker, with SQLite job store and broker) in a throw-away state
directory, on a port the server picks and reports through ``--port-file``.

Children run in their own process group, so a Ctrl-C in the terminal reaches only ``temper``,
which then stops the whole group: politely first, then by force.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import FrameType, TracebackType

import grpc

from client.errors import ConnectionFailed, MissingExtra

STOP_GRACE_SECONDS = 40.0
"""The server gives open calls 5 s, then stops its worker (warm, cold, then by force)."""
SERVER_EXTRA_MESSAGE = (
    "temper demo runs the server and a worker on this machine: install tempering[all]"
    " (pip install 'tempering[all]')"
)


def server_command(port_file: Path) -> list[str]:
    """The server stops with this process, even if this one is killed outright."""
    return [
        sys.executable,
        "-m",
        "service",
        "--port-file",
        str(port_file),
        "--parent-pid",
        str(os.getpid()),
    ]


def child_python_path() -> str:
    """Where this process found the client and the API stubs (a source checkout keeps the stubs
    under proto/), ahead of any PYTHONPATH already set."""
    import tempering

    import client

    roots = [Path(client.__file__).resolve().parent.parent]
    roots += [Path(p).resolve().parent for p in tempering.__path__]
    inherited = os.environ.get("PYTHONPATH", "")
    entries = dict.fromkeys([*map(str, roots), *inherited.split(os.pathsep)])
    return os.pathsep.join(entry for entry in entries if entry)


@contextlib.contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """Treat SIGTERM like Ctrl-C while the stack runs, so that ``finally`` blocks stop it."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


class LocalStack:
    """``with LocalStack(state_dir) as stack: stack.wait_until_serving(); ...(stack.target)``"""

    def __init__(
        self,
        state_dir: Path,
        *,
        extra_env: Mapping[str, str] | None = None,
        host: str = "127.0.0.1",
    ) -> None:
        self.state_dir = state_dir
        self.host = host
        self.log_path = state_dir / "stack.log"
        self._port_file = state_dir / "port"
        self._env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("TEMPERING_")},
            "PYTHONPATH": child_python_path(),
            "TEMPERING_STATE_DIR": str(state_dir),
            "TEMPERING_GRPC_ADDRESS": f"{host}:0",
            "PYTHONUNBUFFERED": "1",
            **(extra_env or {}),
        }
        self._process: subprocess.Popen[bytes] | None = None
        self._target: str | None = None

    @property
    def pid(self) -> int | None:
        """The server process's id, once started."""
        return None if self._process is None else self._process.pid

    @property
    def target(self) -> str:
        if self._target is None:
            raise RuntimeError("the local server has not reported its port yet")
        return self._target

    def __enter__(self) -> LocalStack:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(
                server_command(self._port_file),
                env=self._env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def wait_until_serving(self, timeout: float = 90.0) -> None:
        """Poll the standard gRPC health check until the server answers SERVING."""
        try:
            from grpc_health.v1 import health_pb2, health_pb2_grpc
        except ImportError as error:
            raise MissingExtra(f"{SERVER_EXTRA_MESSAGE} ({error})") from error
        deadline = time.monotonic() + timeout
        self._target = f"{self.host}:{self._wait_for_port(deadline, timeout)}"
        with grpc.insecure_channel(self.target) as channel:
            health = health_pb2_grpc.HealthStub(channel)
            while True:
                self._check_alive()
                try:
                    answer = health.Check(health_pb2.HealthCheckRequest(), timeout=2.0)
                    if answer.status == health_pb2.HealthCheckResponse.SERVING:
                        return
                except grpc.RpcError:
                    pass
                if time.monotonic() > deadline:
                    raise ConnectionFailed(
                        f"the local server did not become healthy within {timeout:.0f} s\n"
                        + self.log_tail()
                    )
                time.sleep(0.5)

    def _wait_for_port(self, deadline: float, timeout: float) -> int:
        while True:
            self._check_alive()
            with contextlib.suppress(OSError, ValueError):
                return int(self._port_file.read_text().strip())
            if time.monotonic() > deadline:
                raise ConnectionFailed(
                    f"the local server did not start listening within {timeout:.0f} s\n"
                    + self.log_tail()
                )
            time.sleep(0.2)

    def stop(self) -> None:
        """SIGTERM, and SIGKILL if the server is not gone after the grace period (or if the user
        interrupts the wait)."""
        process = self._process
        if process is None or process.poll() is not None:
            return
        try:
            _signal_group(process.pid, signal.SIGTERM)
            process.wait(timeout=STOP_GRACE_SECONDS)
        except (subprocess.TimeoutExpired, KeyboardInterrupt):
            _signal_group(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
        _signal_group(process.pid, signal.SIGKILL)

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        tail = "\n".join(text.splitlines()[-lines:])
        return f"last lines of {self.log_path}:\n{tail}" if tail else ""

    def _check_alive(self) -> None:
        process = self._process
        if process is None:
            raise ConnectionFailed("the local server was not started")
        if process.poll() is not None:
            raise ConnectionFailed(
                f"the local server exited with code {process.returncode} while starting\n"
                + self.log_tail()
            )


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    """The server leads its own process group; stragglers in it go too."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)
