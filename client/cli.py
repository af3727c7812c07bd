"""``temper``: the command line of the Tempering service.

Each subcommand lives in :mod:`client.commands`; this module builds the parser, runs the chosen
command and turns errors into messages and exit codes (see :mod:`client.exit_codes`).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence

from client.commands import demo, harden, jobs, report, stack, version
from client.commands.common import Parser, UsageError, add_connection_arguments
from client.errors import ClientError, JobFailed
from client.exit_codes import HELP as EXIT_CODES_HELP
from client.exit_codes import ExitCode, for_error
from client.job_format import job_json

PROG = "temper"

DESCRIPTION = """\
Harden classifiers against adversarial examples, and score them honestly.

Start with `temper demo`: it runs the whole service on this machine and hardens a small
bundled model in a few minutes."""


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog=PROG, description=DESCRIPTION, epilog=EXIT_CODES_HELP)
    parser.add_argument(
        "--version",
        action="store_true",
        help="print temper's version, and the server's with --server (or TEMPERING_SERVER)",
    )
    add_connection_arguments(parser, top_level=True)
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    demo.register(subparsers)
    harden.register(subparsers)
    jobs.register(subparsers)
    report.register(subparsers)
    stack.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``temper`` with ``argv`` (default: the process's arguments); return the exit code."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments and arguments[0] in stack.PASSTHROUGH:
        return _guarded(lambda: stack.run_passthrough(arguments[0], arguments[1:]), PROG, False)
    parser = build_parser()
    try:
        args = parser.parse_args(arguments)
    except SystemExit as exit_:
        return _code_of(exit_)
    if args.version:
        return _guarded(lambda: version.run(args), f"{PROG} --version", bool(args.json))
    if args.command is None:
        parser.print_usage(sys.stderr)
        print(f"{PROG}: error: choose a command (temper --help lists them)", file=sys.stderr)
        return ExitCode.USAGE
    command = f"{PROG} {args.command}"
    return _guarded(lambda: args.handler(args), command, bool(getattr(args, "json", False)))


def _guarded(run: Callable[[], int], command: str, as_json: bool) -> int:
    """Run a command; report what went wrong in one place."""
    try:
        return int(run())
    except UsageError as error:
        return _fail(command, str(error), ExitCode.USAGE, as_json, "UsageError")
    except ClientError as error:
        return _fail_client(command, error, as_json)
    except KeyboardInterrupt:
        print(f"\n{command}: interrupted", file=sys.stderr)
        return ExitCode.INTERRUPTED
    except SystemExit as exit_:
        return _code_of(exit_)


def _fail_client(command: str, error: ClientError, as_json: bool) -> int:
    code = for_error(error)
    extra: dict[str, object] = {}
    if isinstance(error, JobFailed) and error.job is not None:
        extra["job"] = job_json(error.job)
    return _fail(command, str(error), code, as_json, type(error).__name__, error, extra)


def _fail(
    command: str,
    message: str,
    code: ExitCode,
    as_json: bool,
    kind: str,
    error: ClientError | None = None,
    extra: dict[str, object] | None = None,
) -> int:
    print(f"{command}: error: {message}", file=sys.stderr)
    if as_json:
        body = {
            "error": {
                "type": kind,
                "message": message,
                "grpc_code": error.code.name if error is not None and error.code else None,
                "exit_code": int(code),
                **(extra or {}),
            }
        }
        print(json.dumps(body, indent=2, sort_keys=True))
    return int(code)


def _code_of(exit_: SystemExit) -> int:
    if exit_.code is None:
        return 0
    if isinstance(exit_.code, int):
        return exit_.code
    print(exit_.code, file=sys.stderr)
    return 1


if __name__ == "__main__":
    raise SystemExit(main())
