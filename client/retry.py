"""Retries on transient errors, and deadlines, for the SDK's calls.

A pipeline step should neither hang on a server that stopped answering nor fail on a blip. So
each call has a deadline (the client's ``timeout`` for short calls, capped by an optional
overall :class:`Deadline`), and calls that are safe to send again are retried on UNAVAILABLE and
DEADLINE_EXCEEDED with exponential backoff and jitter, a bounded number of times.

Safe to send again: GetJob, ListJobs, CancelJob (cancelling twice is cancelling once),
DeleteJob (deleting a deleted job answers ``already_deleted``), the
uploads (content-addressed: the same bytes give the same artifact), a download (restarted from
its first byte into a fresh partial file), and SubmitJob only when it carries an idempotency
key (the server then returns the job the key first created instead of queueing a second one).

Why a small explicit helper rather than gRPC's retry service config (a ``retryPolicy`` in the
``grpc.service_config`` channel option):

- whether SubmitJob may be retried depends on the request (does it carry an idempotency key?),
  and a service config can only name methods;
- gRPC replays a client-streaming call only while everything sent fits in its per-call retry
  buffer (256 KiB by default), and never a server stream that has already delivered a message;
  our uploads are megabytes of chunks and our downloads break half way. The helper re-runs the
  whole operation, re-reading the file or restarting the download;
- the pause before a retry must respect the overall deadline of ``temper harden --timeout``
  (a retry that cannot finish in time is not attempted), and the helper says on stderr what it
  retries and why, which a CI log should show.

gRPC's transparent retries (of calls that never left the client) stay on: they cannot send a
request twice. We add no service-config policy, so attempts never multiply.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

import grpc

T = TypeVar("T")

log = logging.getLogger("tempering.client")

RETRYABLE_CODES = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED})
"""Codes that say "try again later": the server was unreachable or did not answer in time."""

MIN_ATTEMPT_SECONDS = 0.001
"""The shortest deadline given to a call: gRPC treats 0 as "no deadline"."""


@dataclass(frozen=True)
class RetryPolicy:
    """Up to ``max_attempts`` tries of a call; before retry number ``n`` (1 for the first),
    a pause of ``min(max_backoff, initial_backoff * multiplier ** (n - 1))`` seconds, of which
    ``jitter`` is random (0.5: between half and all of it), so that clients a blip hit together
    do not come back together."""

    max_attempts: int = 4
    initial_backoff: float = 0.5
    max_backoff: float = 8.0
    multiplier: float = 2.0
    jitter: float = 0.5
    random: Callable[[], float] = field(default=random.random, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if not 0.0 <= self.jitter <= 1.0:
            raise ValueError("jitter must be between 0 and 1")

    def backoff(self, retry: int) -> float:
        """Seconds to pause before retry number ``retry`` (1 for the first retry)."""
        ceiling = min(self.max_backoff, self.initial_backoff * self.multiplier ** (retry - 1))
        return ceiling * (1.0 - self.jitter * self.random())


DEFAULT_RETRY = RetryPolicy()
"""Four attempts, pauses of about 0.5, 1 and 2 s: a server restart or a dropped connection is
ridden out, an unreachable server is reported within a few seconds."""

NO_RETRY = RetryPolicy(max_attempts=1)


@dataclass(frozen=True)
class Deadline:
    """A point in time (``time.monotonic()``) after which nothing more is attempted."""

    at: float
    seconds: float
    """The budget it was made with, for messages."""

    @classmethod
    def after(cls, seconds: float) -> Deadline:
        return cls(time.monotonic() + seconds, seconds)

    def remaining(self) -> float:
        return max(self.at - time.monotonic(), 0.0)

    def expired(self) -> bool:
        return time.monotonic() >= self.at

    def cap(self, timeout: float | None) -> float:
        """``timeout`` shortened to what is left (never below :data:`MIN_ATTEMPT_SECONDS`)."""
        left = max(self.remaining(), MIN_ATTEMPT_SECONDS)
        return left if timeout is None else min(timeout, left)


class OutOfTime(Exception):
    """A retry was due but the deadline leaves no time for it. ``error`` is the last failure."""

    def __init__(self, error: grpc.RpcError) -> None:
        super().__init__(str(error))
        self.error = error


def attempt_timeout(call_timeout: float | None, deadline: Deadline | None) -> float | None:
    """The deadline of one attempt: the per-call timeout, capped by the overall deadline."""
    return call_timeout if deadline is None else deadline.cap(call_timeout)


def status_code(error: grpc.RpcError) -> grpc.StatusCode | None:
    code = getattr(error, "code", None)
    return code() if callable(code) else None


def call_with_retry(
    operation: Callable[[float | None], T],
    *,
    what: str,
    policy: RetryPolicy = DEFAULT_RETRY,
    call_timeout: float | None = None,
    deadline: Deadline | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Run ``operation(timeout)``, where ``timeout`` is the deadline of this attempt in seconds
    (None: none), and again after a pause while it raises a :class:`grpc.RpcError` with a
    retryable code, at most ``policy.max_attempts`` times in all and never past ``deadline``.
    The last error leaves as it came, for the caller to translate, or inside :class:`OutOfTime`
    when the deadline leaves no time for the retry that was due."""
    attempt = 1
    while True:
        try:
            return operation(attempt_timeout(call_timeout, deadline))
        except grpc.RpcError as error:
            code = status_code(error)
            if code not in RETRYABLE_CODES or attempt >= policy.max_attempts:
                raise
            pause = policy.backoff(attempt)
            if deadline is not None and deadline.remaining() <= pause:
                raise OutOfTime(error) from error
            log.warning(
                "%s: %s (%s); retrying in %.1f s (attempt %d of %d)",
                what,
                code.name if code else "error",
                _details(error),
                pause,
                attempt + 1,
                policy.max_attempts,
            )
            sleep(pause)
            attempt += 1


def _details(error: grpc.RpcError) -> str:
    details = getattr(error, "details", None)
    text = details() if callable(details) else None
    return (text or "no details").splitlines()[0][:200]
