"""``temper serve`` and ``temper worker``: run the server (``python -m service``) or a worker
(``python -m workers``) as a child process, with this interpreter and the whole command line.

The client imports nothing of the server or the worker for this: it starts them as programs, so
it installs without their extras, and a missing extra is told by the child itself in one line
(exit 2). The child runs in a session of its own, so that a signal reaches it once: the terminal's
Ctrl-C comes to ``temper``, which forwards it (and SIGTERM, SIGHUP, SIGQUIT, SIGUSR1/2) to the
child, waits for it and exits with its code (128 + N if signal N ended it). On Linux the child is
also told SIGTERM if ``temper`` itself dies without forwarding anything (``kill -9``).
"""

from __future__ import annotations

import argparse
import ctypes
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from types import FrameType
from typing import Any

from client.local_stack import child_python_path

MODULES: dict[str, str] = {"serve": "service", "worker": "workers"}
"""The package each command runs with ``python -m``."""
PASSTHROUGH = frozenset(MODULES)

HELP = {
    "serve": "run the gRPC server (with a local worker unless --no-worker); see temper serve -h",
    "worker": "run a hardening worker; see temper worker -h",
}

FORWARDED = tuple(
    sig
    for name in ("SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2")
    if (sig := getattr(signal, name, None)) is not None
)
"""Signals meant for the server or the worker (Celery reads SIGQUIT, SIGUSR1 and SIGHUP too)."""

PR_SET_PDEATHSIG = 1


def register(subparsers: Any) -> None:
    """Listed for ``temper --help``; :func:`run_passthrough` handles them before argparse."""
    for name, text in HELP.items():
        parser = subparsers.add_parser(name, help=text, add_help=False)
        parser.add_argument("rest", nargs=argparse.REMAINDER)
        parser.set_defaults(handler=lambda args, name=name: run_passthrough(name, args.rest))


def child_command(command: str, argv: Sequence[str]) -> list[str]:
    return [sys.executable, "-m", MODULES[command], *argv]


def run_passthrough(command: str, argv: Sequence[str]) -> int:
    """Run the command's process to its end; its exit code."""
    pending: list[int] = []
    child: list[subprocess.Popen[bytes]] = []

    def forward(signum: int, _frame: FrameType | None) -> None:
        if child:
            child[0].send_signal(signum)
        else:
            pending.append(signum)

    previous = _install(forward)
    try:
        child.append(
            subprocess.Popen(
                child_command(command, argv),
                env={**os.environ, "PYTHONPATH": child_python_path()},
                start_new_session=True,
                preexec_fn=_stop_with(os.getpid()),
            )
        )
        for signum in pending:
            child[0].send_signal(signum)
        code = child[0].wait()
    finally:
        _restore(previous)
    return 128 - code if code < 0 else code


def _install(handler: Callable[[int, FrameType | None], None]) -> dict[int, Any]:
    if threading.current_thread() is not threading.main_thread():
        return {}
    return {sig: signal.signal(sig, handler) for sig in FORWARDED}


def _restore(previous: dict[int, Any]) -> None:
    for sig, handler in previous.items():
        signal.signal(sig, handler)


def _stop_with(parent: int) -> Callable[[], None] | None:
    """Run in the child before it becomes Python: SIGTERM once ``parent`` is gone (Linux). The
    C function is looked up here, in the parent, so the child only calls it."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None

    def arm() -> None:
        prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:
            os.kill(os.getpid(), signal.SIGTERM)

    return arm
