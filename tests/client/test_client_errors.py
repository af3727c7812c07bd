"""gRPC failures become client errors that keep the status code and the server's message, and
each error maps to the exit code the CLI documents."""

from __future__ import annotations

import grpc
import pytest

from client.errors import (
    ConnectionFailed,
    InvalidInput,
    JobFailed,
    MissingExtra,
    NotFound,
    NotPermitted,
    ServerError,
    from_rpc_error,
)
from client.exit_codes import ExitCode, for_error


class FailedCall(grpc.RpcError):
    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        self._code, self._details = code, details

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details


@pytest.mark.parametrize(
    ("code", "error_type", "exit_code"),
    [
        (grpc.StatusCode.INVALID_ARGUMENT, InvalidInput, ExitCode.REFUSED),
        (grpc.StatusCode.FAILED_PRECONDITION, InvalidInput, ExitCode.REFUSED),
        (grpc.StatusCode.NOT_FOUND, NotFound, ExitCode.REFUSED),
        (grpc.StatusCode.PERMISSION_DENIED, NotPermitted, ExitCode.REFUSED),
        (grpc.StatusCode.UNAVAILABLE, ConnectionFailed, ExitCode.SERVER),
        (grpc.StatusCode.DEADLINE_EXCEEDED, ConnectionFailed, ExitCode.SERVER),
        (grpc.StatusCode.INTERNAL, ServerError, ExitCode.SERVER),
    ],
)
def test_status_codes_map_to_error_types_and_exit_codes(
    code: grpc.StatusCode, error_type: type, exit_code: ExitCode
) -> None:
    error = from_rpc_error(FailedCall(code, "the server's words"))

    assert type(error) is error_type
    assert error.code is code
    assert str(error) == "the server's words"
    assert for_error(error) is exit_code


def test_a_failed_job_exits_1_and_a_missing_extra_exits_2() -> None:
    assert for_error(JobFailed("job x failed: diverged")) is ExitCode.JOB_FAILED
    assert for_error(MissingExtra("install tempering[worker]")) is ExitCode.USAGE
