"""What the ``temper`` subcommands share: the connection flags, argument types, JSON output."""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import grpc

from client.domain import Job
from client.errors import NotFound
from client.sdk import HardeningClient, TlsConfig

SERVER_ENV = "TEMPERING_SERVER"
API_KEY_ENV = "TEMPERING_API_KEY"


class UsageError(Exception):
    """The command line asks for something that cannot be done as written (exit code 2)."""


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Keeps descriptions as written, names each value's type in its metavar and appends the
    default to a flag's help when there is one worth showing."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "default" in text.lower() or not action.option_strings or not _shows_default(action):
            return text
        return f"{text} (default: %(default)s)" if text else "default: %(default)s"

    def _get_default_metavar_for_optional(self, action: argparse.Action) -> str:
        return _TYPE_METAVARS.get(action.type, action.dest.upper())


def _shows_default(action: argparse.Action) -> bool:
    default = action.default
    if default is argparse.SUPPRESS or default is None or isinstance(default, bool):
        return False
    return not (isinstance(default, (str, tuple, list)) and not default)


class Parser(argparse.ArgumentParser):
    """Every ``temper`` parser: no abbreviated flags (``--port`` is never ``--port-file``), the
    :class:`HelpFormatter`, and values such as ``-4,-4`` or ``-8/255`` read as values, not
    flags. Subcommand parsers are made by this class too (``add_subparsers`` uses the parent's
    class)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["allow_abbrev"] = False
        kwargs["formatter_class"] = HelpFormatter
        super().__init__(*args, **kwargs)
        self._negative_number_matcher = NEGATIVE_VALUE


NEGATIVE_VALUE = re.compile(r"^-\.?\d[\d.,/eE+-]*$")
"""A negative number, fraction or comma-separated list of numbers; argparse's own matcher knows
only ``-4`` and ``-.5``, so ``--lower -4,-4`` would be read as an unknown flag."""


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


JOB_ID_CHARS = 32
"""A job id is 32 hex digits; anything shorter is taken as a prefix of one."""
CANDIDATES_SHOWN = 10


def resolve_job_id(api: HardeningClient, text: str) -> str:
    """The id of the one job of this tenant whose id is ``text`` or starts with it, as git and
    docker take a unique prefix. Resolved here, through ListJobs, so that the API keeps taking
    whole ids only; see docs/cli.md."""
    wanted = text.strip().lower()
    if not wanted:
        raise UsageError("a job id is needed: `temper jobs` lists them")
    if len(wanted) >= JOB_ID_CHARS:
        try:
            return api.get(wanted).id
        except NotFound:
            raise NotFound(_no_job(text), grpc.StatusCode.NOT_FOUND) from None
    matches = [job for job in api.iter_jobs(page_size=500) if job.id.startswith(wanted)]
    if not matches:
        raise NotFound(_no_job(text), grpc.StatusCode.NOT_FOUND)
    if len(matches) > 1:
        shown = "\n".join(
            f"  {job.id}  {job.state.value:<9}  {_created(job)}"
            for job in matches[:CANDIDATES_SHOWN]
        )
        more = len(matches) - CANDIDATES_SHOWN
        tail = f"\n  ... and {more} more" if more > 0 else ""
        raise UsageError(
            f"job id prefix {text!r} is ambiguous: {len(matches)} jobs start with it;"
            f" type more of the id:\n{shown}{tail}"
        )
    return matches[0].id


def _created(job: Job) -> str:
    return f"created {job.created_at:%Y-%m-%d %H:%M}" if job.created_at else ""


def _no_job(text: str) -> str:
    return f"no job with id {text!r} or starting with it; `temper jobs` lists your jobs"


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
        if kind is float and "/" in text:
            return _fraction(text)
        return kind(text)
    except (ValueError, ZeroDivisionError):
        example = " or a fraction such as 8/255" if kind is float else ""
        raise argparse.ArgumentTypeError(f"expected {what}{example}, got {text!r}") from None


def _fraction(text: str) -> float:
    """``8/255`` as papers write epsilons; each side may itself be a decimal (``0.5/2``)."""
    numerator, denominator = text.split("/")
    return float(numerator) / float(denominator)


_TYPE_METAVARS: dict[Any, str] = {
    positive_int: "INT",
    non_negative_int: "INT",
    int: "INT",
    positive_float: "NUMBER",
    non_negative_float: "NUMBER",
    float: "NUMBER",
    float_list: "V[,V...]",
    label: "KEY=VALUE",
    Path: "PATH",
}
