"""What the ``temper`` subcommands share: the connection flags, argument types, JSON output."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from client.sdk import HardeningClient, TlsConfig

SERVER_ENV = "TEMPERING_SERVER"
API_KEY_ENV = "TEMPERING_API_KEY"


class UsageError(Exception):
    """The command line asks for something that cannot be done as written (exit code 2)."""


def add_connection_arguments(parser: argparse.ArgumentParser, *, top_level: bool) -> None:
    """The flags every command takes. On subcommands they default to SUPPRESS so that a value
    given before the subcommand (``temper --server X jobs``) is not overwritten."""

    def default(value: Any) -> Any:
        return value if top_level else argparse.SUPPRESS

    group = parser.add_argument_group("connection and output")
    group.add_argument(
        "--server",
        metavar="HOST:PORT",
        default=default(None),
        help=f"address of the Tempering server [{SERVER_ENV}]",
    )
    group.add_argument(
        "--api-key",
        metavar="KEY",
        default=default(os.environ.get(API_KEY_ENV) or None),
        help=f"API key sent as a bearer token [{API_KEY_ENV}]",
    )
    group.add_argument(
        "--tls", action="store_true", default=default(False), help="connect with TLS"
    )
    group.add_argument(
        "--ca-cert",
        type=Path,
        metavar="PEM",
        default=default(None),
        help="CA certificate that signed the server's (implies --tls)",
    )
    for flag, what in (("--client-cert", "certificate"), ("--client-key", "private key")):
        group.add_argument(
            flag,
            type=Path,
            metavar="PEM",
            default=default(None),
            help=f"client {what} for servers that require mutual TLS (implies --tls)",
        )
    group.add_argument(
        "--json",
        action="store_true",
        default=default(False),
        help="machine-readable output on stdout (no progress bar)",
    )


def server_address(args: argparse.Namespace) -> str | None:
    """``--server``, else ``TEMPERING_SERVER``."""
    return args.server or os.environ.get(SERVER_ENV) or None


def connect(args: argparse.Namespace) -> HardeningClient:
    server = server_address(args)
    if not server:
        raise UsageError(f"no server given: pass --server HOST:PORT or set {SERVER_ENV}")
    tls: TlsConfig | bool | None = None
    client_cert, client_key = getattr(args, "client_cert", None), getattr(args, "client_key", None)
    if (client_cert is None) != (client_key is None):
        raise UsageError("--client-cert and --client-key go together: pass both or neither")
    for flag, path in (
        ("--ca-cert", args.ca_cert),
        ("--client-cert", client_cert),
        ("--client-key", client_key),
    ):
        if path is not None and not Path(path).is_file():
            raise UsageError(f"{flag} {path}: no such file")
    if args.ca_cert or client_cert:
        tls = TlsConfig(ca_cert=args.ca_cert, client_cert=client_cert, client_key=client_key)
    elif args.tls:
        tls = True
    return HardeningClient(server, api_key=args.api_key, tls=tls)


def print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, sort_keys=True), flush=True)


def print_json_line(value: Any) -> None:
    print(json.dumps(value, sort_keys=True), flush=True)


def info(text: str) -> None:
    """Human-oriented messages go to stderr, so stdout stays clean for --json."""
    print(text, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# Argument types: each raises ArgumentTypeError, which argparse turns into exit code 2.


def positive_int(text: str) -> int:
    value = _number(text, int, "an integer")
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def non_negative_int(text: str) -> int:
    value = _number(text, int, "an integer")
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {text}")
    return value


def positive_float(text: str) -> float:
    value = _number(text, float, "a number")
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def non_negative_float(text: str) -> float:
    value = _number(text, float, "a number")
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {text}")
    return value


def float_list(text: str) -> tuple[float, ...]:
    """``0`` or ``0,0,0`` (one value per channel)."""
    parts = [p.strip() for p in text.split(",")]
    if not all(parts):
        raise argparse.ArgumentTypeError(
            f"expected a number or a comma-separated list, got {text!r}"
        )
    return tuple(_number(p, float, "a number") for p in parts)


def label(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"labels look like key=value, got {text!r}")
    return key.strip(), value.strip()


def labels_dict(pairs: list[tuple[str, str]] | None) -> Mapping[str, str]:
    return dict(pairs or [])


def _number(text: str, kind: type[int] | type[float], what: str) -> Any:
    try:
        return kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
