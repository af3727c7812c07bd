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
from collections.abc import Mapping, Sequence
from pathlib import Path

from service.api.server import ServerRole, start_server
from service.core.logs import configure_logging
from service.core.settings import Settings, SettingsError
from service.core.settings_flags import settings_parser
from service.ops.local_worker import LocalWorker
from service.ops.memory import tune_allocator_for_streaming
from service.ops.parent_death import die_with_parent
from service.ops.server_processes import SiblingServers, server_processes
from service.ops.stop_signals import SHUTDOWN_SECONDS, stop_on_signals
from service.webhooks import cli as webhook_cli

log = logging.getLogger(__name__)

SIBLING_START_SECONDS = 60.0
"""Longest the port file waits for the other server processes to serve."""


def build_parser() -> argparse.ArgumentParser:
    parser = settings_parser(
        prog="tempering-server",
        description="Serve the Tempering hardening API, with a local worker unless --no-worker.",
    )
    listen = parser.add_argument_group(
        "where to listen (shorthands for --grpc-address HOST:PORT; not with it)"
    )
    listen.add_argument(
        "--port", type=_port, metavar="INT", help="port to listen on (0 picks a free one)"
    )
    listen.add_argument("--host", metavar="HOST", help="address to listen on, e.g. 0.0.0.0")
    parser.add_argument(
        "--no-worker",
        action="store_true",
        help="serve only; run workers with `python -m workers` (on this or other machines)",
    )
    parser.add_argument(
        "--port-file",
        type=Path,
        metavar="PATH",
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


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number, got {text!r}") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"a port lies in 0..65535, got {port}")
    return port


def listen_address(args: argparse.Namespace, environ: Mapping[str, str]) -> str | None:
    """``--grpc-address`` with ``--host`` and ``--port`` applied to it (None: unchanged)."""
    if args.host is None and args.port is None:
        return None
    if args.grpc_address is not None:
        raise SettingsError("--host and --port are shorthands for --grpc-address: pass one form")
    base = environ.get("TEMPERING_GRPC_ADDRESS") or Settings.grpc_address
    host, _, port = base.rpartition(":")
    if args.host is not None:
        host = f"[{args.host}]" if ":" in args.host and not args.host.startswith("[") else args.host
    if args.port is not None:
        port = str(args.port)
    return f"{host}:{port}"


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments[:1] == ["webhook-secret"]:
        return webhook_cli.main(arguments[1:])
    args = build_parser().parse_args(arguments)
    try:
        args.grpc_address = listen_address(args, os.environ) or args.grpc_address
        settings = Settings.load(os.environ, args)
    except SettingsError as exc:
        print(f"tempering: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings)
    if not tune_allocator_for_streaming():
        log.info("not glibc: the allocator keeps its defaults")
    stop = stop_on_signals()
    if args.parent_pid is not None:
        die_with_parent(args.parent_pid, signal.SIGTERM, force_exit_after=SHUTDOWN_SECONDS)
    processes = server_processes(settings)
    try:
        running = start_server(settings, ServerRole.FIRST if processes > 1 else ServerRole.ALONE)
    except (OSError, SettingsError) as exc:
        print(f"tempering: {exc}", file=sys.stderr)
        return 1
    siblings = SiblingServers(running.settings, processes - 1)
    worker = None if args.no_worker else LocalWorker(settings)
    try:
        if worker is not None and settings.uses_local_broker:
            requeued = running.jobs.requeue_interrupted()
            if requeued:
                log.info("queued %d unfinished job(s) again", requeued)
        _start_siblings(siblings, running.settings.grpc_address)
        if worker is not None:
            worker.start()
        if args.port_file:
            _write_atomically(args.port_file, f"{running.port}\n")
        while not stop.wait(1.0):
            siblings.keep_alive()
            if worker is not None:
                worker.keep_alive()
    finally:
        siblings.terminate()
        running.stop()
        siblings.wait(SHUTDOWN_SECONDS)
        if worker is not None:
            worker.stop()
    return 0


def _start_siblings(siblings: SiblingServers, address: str) -> None:
    """Start them and wait until they serve, so that the port file means every process does."""
    siblings.start()
    serving = siblings.wait_ready(SIBLING_START_SECONDS)
    if serving < siblings.count:
        log.warning(
            "%d of %d sibling server processes serve on %s", serving, siblings.count, address
        )


def _write_atomically(path: Path, text: str) -> None:
    temp = path.with_name(path.name + ".tmp")
    temp.write_text(text)
    temp.replace(path)
