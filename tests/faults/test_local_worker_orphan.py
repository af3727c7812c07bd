"""The local worker dies with the server that started it: a ``python -m service`` killed with
SIGKILL (which cannot stop its children itself) leaves neither its Celery worker nor the
worker's pool process behind, through the kernel's parent-death signal and, where that is
missing, a thread that notices the parent is gone. Real processes throughout."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from faults_support import wait_until

from client.local_stack import LocalStack

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
EXIT_SECONDS = 10.0


def children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError):
            found += [int(child) for child in (task / "children").read_text().split()]
    return found


def local_worker(server: int) -> int | None:
    """The server's worker process, among its other children (multiprocessing helpers)."""
    for child in children(server):
        with contextlib.suppress(OSError):
            if b"service.ops.local_worker_process" in Path(f"/proc/{child}/cmdline").read_bytes():
                return child
    return None


def gone(pid: int) -> bool:
    """Exited: no such process, or a zombie nobody has reaped yet."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rpartition(")")[2].split()[0] == "Z"


@contextlib.contextmanager
def killed_at_exit(pids: list[int]) -> Iterator[list[int]]:
    """Whatever the test finds still running at its end is SIGKILLed by pid."""
    try:
        yield pids
    finally:
        for pid in pids:
            if not gone(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)


def test_a_server_killed_outright_takes_its_worker_and_pool_process_with_it(
    tmp_path: Path,
) -> None:
    with LocalStack(tmp_path / "state") as stack, killed_at_exit([]) as started:
        stack.wait_until_serving(timeout=120)
        server = stack.pid
        assert server is not None
        worker = wait_until(lambda: local_worker(server), 60, "the local worker")
        started.append(worker)
        pool = wait_until(lambda: children(worker), 90, "the worker's pool process")[0]
        started.append(pool)

        os.kill(server, signal.SIGKILL)

        wait_until(lambda: gone(worker) and gone(pool), EXIT_SECONDS, "the orphans to exit")


def test_without_the_kernels_signal_a_child_still_notices_its_parent_is_gone(
    tmp_path: Path,
) -> None:
    child_code = textwrap.dedent(
        """
        import os, signal, sys, time
        import service.ops.parent_death as parent_death
        parent_death.set_parent_death_signal = lambda sig: False  # as on macOS
        parent_death.die_with_parent(int(sys.argv[1]), signal.SIGTERM)
        print(os.getpid(), flush=True)
        time.sleep(120)
        """
    )
    parent_code = textwrap.dedent(
        """
        import os, subprocess, sys, time
        subprocess.Popen([sys.executable, "-c", sys.argv[1], str(os.getpid())])
        time.sleep(120)
        """
    )
    root = Path(__file__).resolve().parents[2]
    parent = subprocess.Popen(
        [sys.executable, "-c", parent_code, child_code],
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(root)},
        stdout=subprocess.PIPE,
        start_new_session=True,
    )
    with killed_at_exit([]) as started:
        assert parent.stdout is not None
        child = int(parent.stdout.readline())
        started.append(child)

        parent.kill()
        parent.wait()

        wait_until(lambda: gone(child), EXIT_SECONDS, "the orphan to exit")


def test_a_temper_process_killed_outright_takes_its_server_and_worker_with_it(
    tmp_path: Path,
) -> None:
    temper_code = textwrap.dedent(
        """
        import sys, time
        from client.local_stack import LocalStack
        stack = LocalStack(__import__("pathlib").Path(sys.argv[1]))
        stack.start()
        stack.wait_until_serving(timeout=120)
        print(stack.pid, flush=True)
        time.sleep(600)
        """
    )
    root = Path(__file__).resolve().parents[2]
    temper = subprocess.Popen(
        [sys.executable, "-c", temper_code, str(tmp_path / "state")],
        cwd=root,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(root), str(root / "proto")])},
        stdout=subprocess.PIPE,
        start_new_session=True,
    )
    with killed_at_exit([]) as started:
        assert temper.stdout is not None
        server = int(temper.stdout.readline())
        started.append(server)
        worker = wait_until(lambda: local_worker(server), 60, "the local worker")
        started.append(worker)

        temper.kill()
        temper.wait()

        wait_until(lambda: gone(server) and gone(worker), 45, "the server and worker to exit")
