"""``python -m service`` / ``temper serve``: the gRPC server and, by default, one local worker.

With no settings at all this needs no other server: the job store is SQLite and the broker a
SQLite file under the state directory. With ``TEMPERING_BROKER_URL=redis://...`` the same
command uses Redis; ``--no-worker`` serves only, for workers started elsewhere.
``python -m service webhook-secret TENANT`` prints a tenant's webhook secret instead
(:mod:`service.webhooks.cli`).
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from service.api.server import start_server
from service.core.logs import configure_logging
from service.core.settings import Settings, SettingsError, add_settings_arguments
from service.ops.local_worker import LocalWorker
from service.ops.memory import tune_allocator_for_streaming
from service.ops.parent_death import die_with_parent
from service.webhooks import cli as webhook_cli

log = logging.getLogger(__name__)

SHUTDOWN_SECONDS = 30.0
"""Time a server whose parent is gone gets to stop its calls and its worker before it exits."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tempering-server",
        description="Serve the Tempering hardening API, with a local worker unless --no-worker.",
    )
    add_settings_arguments(parser)
    parser.add_argument(
        "--no-worker",
        action="store_true",
        help="serve only; run workers with `python -m workers` (on this or other machines)",
    )
    parser.add_argument(
        "--port-file",
        type=Path,
        help="write the port the server listens on to this file once it serves",
    )
    parser.add_argument(
        "--parent-pid",
        type=int,
        metavar="PID",
        help="shut down, as on SIGTERM, once process PID (the one that started this server) is"
        " gone, even if it was killed outright (temper serve and temper demo pass their own)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments[:1] == ["webhook-secret"]:
        return webhook_cli.main(arguments[1:])
    args = build_parser().parse_args(arguments)
    try:
        settings = Settings.load(os.environ, args)
    except SettingsError as exc:
        print(f"tempering: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings)
    if not tune_allocator_for_streaming():
        log.info("not glibc: the allocator keeps its defaults")
    stop = threading.Event()

    def request_stop(signum: int, _frame: FrameType | None) -> None:
        log.info("received signal %d; shutting down", signum)
        stop.set()

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    if args.parent_pid is not None:
        die_with_parent(args.parent_pid, signal.SIGTERM, force_exit_after=SHUTDOWN_SECONDS)
    try:
        running = start_server(settings)
    except (OSError, SettingsError) as exc:
        print(f"tempering: {exc}", file=sys.stderr)
        return 1
    worker = None if args.no_worker else LocalWorker(settings)
    try:
        if worker is not None:
            if settings.uses_local_broker:
                requeued = running.jobs.requeue_interrupted()
                if requeued:
                    log.info("queued %d unfinished job(s) again", requeued)
            worker.start()
        if args.port_file:
            _write_atomically(args.port_file, f"{running.port}\n")
        while not stop.wait(1.0):
            if worker is not None:
                worker.keep_alive()
    finally:
        running.stop()
        if worker is not None:
            worker.stop()
    return 0


def _write_atomically(path: Path, text: str) -> None:
    temp = path.with_name(path.name + ".tmp")
    temp.write_text(text)
    temp.replace(path)
