"""``python -m service.ops.sibling_server PARENT_PID READY_FD``: one of the extra server
processes that ``python -m service`` starts on its port (:mod:`service.ops.server_processes`).

It reads the first process's settings from ``TEMPERING_*`` variables, joins the port, writes one
byte to ``READY_FD`` once it serves, and serves until SIGTERM or SIGINT. It stops as on SIGTERM
once the first process is gone, even when that one was killed outright
(:mod:`service.ops.parent_death`).
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from collections.abc import Sequence

from service.api.server import ServerRole, start_server
from service.core.logs import configure_logging
from service.core.settings import Settings, SettingsError
from service.ops.memory import tune_allocator_for_streaming
from service.ops.parent_death import die_with_parent
from service.ops.stop_signals import SHUTDOWN_SECONDS, stop_on_signals


def main(argv: Sequence[str]) -> int:
    parent_pid, ready_fd = int(argv[0]), int(argv[1])
    try:
        settings = Settings.load(os.environ)
    except SettingsError as exc:
        print(f"tempering: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings)
    tune_allocator_for_streaming()
    stop = stop_on_signals()
    die_with_parent(parent_pid, signal.SIGTERM, force_exit_after=SHUTDOWN_SECONDS)
    try:
        running = start_server(settings, ServerRole.SIBLING)
    except (OSError, SettingsError) as exc:
        print(f"tempering: {exc}", file=sys.stderr)
        return 1
    with contextlib.suppress(BrokenPipeError):  # the first process stopped waiting
        os.write(ready_fd, b"1")
    os.close(ready_fd)
    try:
        stop.wait()
    finally:
        running.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
