"""Making a child process die with the process that started it, even when that one is killed
with SIGKILL and cannot stop its children itself.

Two mechanisms, because neither is enough alone:

- on Linux, ``prctl(PR_SET_PDEATHSIG)`` (through ctypes) asks the kernel to send a signal the
  moment the parent goes. The kernel sends it when the parent *thread* that forked the child
  ends, and it is lost if the parent died before the call;
- everywhere, a thread that watches ``os.getppid()``: an orphan is adopted by init or a
  subreaper, so its parent pid changes. This catches a parent that died before the ``prctl``
  and works where there is no ``prctl`` (macOS).

The signal asked for is SIGQUIT, Celery's cold shutdown: the worker stops its pool process
(which Celery ties to the worker with a death signal of its own) and exits at once instead of
finishing the job it runs; the job's lease then expires and the next server resumes it from
its checkpoint.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import sys
import threading
import time

log = logging.getLogger(__name__)

PR_SET_PDEATHSIG = 1
"""From <linux/prctl.h>."""
WATCH_INTERVAL_SECONDS = 1.0
FORCE_EXIT_AFTER_SECONDS = 15.0
"""How long the watch thread gives the shutdown that its signal started before it exits hard."""


def die_with_parent(
    parent_pid: int,
    sig: int = signal.SIGQUIT,
    force_exit_after: float = FORCE_EXIT_AFTER_SECONDS,
) -> None:
    """Arrange for this process to get ``sig`` once ``parent_pid`` is no longer its parent, and
    to exit outright ``force_exit_after`` seconds later if ``sig`` has not ended it. Exits at
    once if it already is not (the parent died while this process was starting)."""
    set_parent_death_signal(sig)
    if os.getppid() != parent_pid:
        raise SystemExit(f"the process that started this one ({parent_pid}) is gone; exiting")
    threading.Thread(
        target=_watch,
        args=(parent_pid, sig, force_exit_after),
        name="parent-watch",
        daemon=True,
    ).start()


def set_parent_death_signal(sig: int) -> bool:
    """Linux only: the kernel sends ``sig`` when the parent thread ends. False elsewhere."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return int(libc.prctl(PR_SET_PDEATHSIG, sig, 0, 0, 0)) == 0
    except (OSError, AttributeError):
        return False


def _watch(parent_pid: int, sig: int, force_exit_after: float) -> None:
    while os.getppid() == parent_pid:
        time.sleep(WATCH_INTERVAL_SECONDS)
    log.warning("the process that started this one (%d) is gone; stopping", parent_pid)
    os.kill(os.getpid(), sig)
    time.sleep(force_exit_after)
    os._exit(1)
