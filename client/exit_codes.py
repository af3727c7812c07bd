"""Exit codes of ``temper``, and which error gives which."""

from __future__ import annotations

from enum import IntEnum

from client.errors import ClientError, JobFailed, MissingExtra, RequestRefused


class ExitCode(IntEnum):
    OK = 0
    JOB_FAILED = 1
    """The job failed or was cancelled."""
    USAGE = 2
    """Bad arguments, a missing input file, or a missing optional extra."""
    SERVER = 3
    """The server could not be reached, refused the credentials, failed, or sent a corrupt file."""
    REFUSED = 4
    """The server (or, with --local, the engine) refused the input as invalid."""
    GATE_FAILED = 5
    """A robustness gate (--min-robust-accuracy, --max-clean-drop, --fail-on-masking) failed."""
    INTERRUPTED = 130


HELP = """\
exit codes:
  0  success
  1  the job failed or was cancelled
  2  usage error: bad arguments, a missing input file, or a missing optional extra
  3  server or connection error (unreachable, authentication, server failure, corrupt download),
     or `temper harden --timeout` passed
  4  the server (or the engine, with --local) refused the input as invalid: model, data or
     parameters (INVALID_ARGUMENT, FAILED_PRECONDITION, NOT_FOUND, PERMISSION_DENIED,
     ALREADY_EXISTS, limits)
  5  a robustness gate failed (--min-robust-accuracy, --max-clean-drop, --fail-on-masking)
  130 interrupted (Ctrl-C)
"""


def for_error(error: ClientError) -> ExitCode:
    if isinstance(error, JobFailed):
        return ExitCode.JOB_FAILED
    if isinstance(error, RequestRefused):
        return ExitCode.REFUSED
    if isinstance(error, MissingExtra):
        return ExitCode.USAGE
    return ExitCode.SERVER
