"""``temper serve`` and ``temper worker``: hand the whole command line to the server's and the
worker's own entry points, imported only here (they need the server/worker extras)."""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Callable, Sequence
from typing import Any

from client.errors import MissingExtra

ENTRY_POINTS: dict[str, tuple[str, str, str]] = {
    "serve": ("service.ops.cli", "main", "server"),
    "worker": ("workers.celery_app", "worker_main", "worker"),
}
PASSTHROUGH = frozenset(ENTRY_POINTS)

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


def entry_point(command: str) -> Callable[[Sequence[str] | None], int]:
    module_name, function_name, extra = ENTRY_POINTS[command]
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise MissingExtra(
            f"temper {command} needs the {extra} dependencies: install tempering[{extra}]"
            f" (pip install 'tempering[{extra}]') ({error})"
        ) from error
    function: Callable[[Sequence[str] | None], int] = getattr(module, function_name)
    return function


def run_passthrough(command: str, argv: Sequence[str]) -> int:
    return int(entry_point(command)(list(argv)) or 0)
