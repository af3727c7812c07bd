"""``python -m service`` / ``temper serve``: the gRPC server and, by default, one local worker.

With no settings at all this needs no other server: the job store is SQLite and the broker a
SQLite file under the state directory. With ``TEMPERING_BROKER_URL=redis://...`` the same
command uses Redis; ``--no-worker`` serves only, for workers started elsewhere.
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

from service.local_worker import LocalWorker
from service.server import start_server
from service.settings import Settings, SettingsError, add_settings_arguments

log = logging.getLogger(__name__)


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
    return parser


def configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = Settings.load(os.environ, args)
    except SettingsError as exc:
        print(f"tempering: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level)
    stop = threading.Event()

    def request_stop(signum: int, _frame: FrameType | None) -> None:
        log.info("received signal %d; shutting down", signum)
        stop.set()

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
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
