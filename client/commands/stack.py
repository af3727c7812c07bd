"""``temper serve`` and ``temper worker``: hand the whole command line to the server's and the
worker's own entry points, imported only here and only when the command runs (they need the
server/worker extras). These two imports and the engine's entry point for ``--local`` are the
only ones of ``service`` or ``workers`` in the client; the import contract in pyproject.toml
names them."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from typing import Any

from client.errors import MissingExtra

EntryPoint = Callable[[Sequence[str] | None], int]

EXTRAS: dict[str, str] = {"serve": "server", "worker": "worker"}
PASSTHROUGH = frozenset(EXTRAS)

HELP = {
    "serve": "run the gRPC server (with a local worker unless --no-worker); see temper serve -h",
    "worker": "run a hardening worker; see temper worker -h",
}


def register(subparsers: Any) -> None:
    """Listed for ``temper --help``; :func:`run_passthrough` handles them before argparse."""
    for name, text in HELP.items():
        parser = subparsers.add_parser(name, help=text, add_help=False)
        parser.add_argument("rest", nargs=argparse.REMAINDER)
        parser.set_defaults(handler=lambda args, name=name: run_passthrough(name, args.rest))


def _serve() -> EntryPoint:
    from service.ops.cli import main

    return main


def _worker() -> EntryPoint:
    from workers.celery_app import worker_main

    return worker_main


ENTRY_POINTS: dict[str, Callable[[], EntryPoint]] = {"serve": _serve, "worker": _worker}


def entry_point(command: str) -> EntryPoint:
    extra = EXTRAS[command]
    try:
        return ENTRY_POINTS[command]()
    except ImportError as error:
        raise MissingExtra(
            f"temper {command} needs the {extra} dependencies: install tempering[{extra}]"
            f" (pip install 'tempering[{extra}]') ({error})"
        ) from error


def run_passthrough(command: str, argv: Sequence[str]) -> int:
    return int(entry_point(command)(list(argv)) or 0)
