"""Progress reporting and cooperative cancellation.

Every long-running engine function takes one :class:`Reporter`. It forwards
:class:`ProgressEvent` values to a callback (with ``--local``, the CLI's progress display; in a
worker, the job runner, which records the latest in the job store) and asks a ``should_stop``
predicate between steps, raising
:class:`~workers.engine.errors.Cancelled` so that training stops within one batch.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from workers.engine.errors import Cancelled, TimeLimitExceeded


@dataclass(frozen=True)
class ProgressEvent:
    stage: str
    """One of: loading, teacher, training, evaluating, exporting, done."""
    epoch: int = 0
    epochs: int = 0
    step: int = 0
    steps: int = 0
    loss: float | None = None
    clean_accuracy: float | None = None
    robust_accuracy: float | None = None
    eta_seconds: float | None = None
    message: str = ""
    samples: int = 0
    """Training samples the epoch that this event ends went through (epoch-end events only)."""
    samples_per_second: float | None = None
    """Training throughput of that epoch (epoch-end events only)."""


ProgressCallback = Callable[[ProgressEvent], None]
StopPredicate = Callable[[], bool]


def _never() -> bool:
    return False


def _ignore(_: ProgressEvent) -> None:
    return None


@dataclass
class Reporter:
    callback: ProgressCallback = _ignore
    should_stop: StopPredicate = _never
    time_limit_seconds: float = 0.0
    min_interval_seconds: float = 0.0
    """Throttle for step-level events; stage changes and epoch ends always pass."""
    _started: float = field(default_factory=time.monotonic)
    _last_emit: float = 0.0

    def emit(self, event: ProgressEvent, *, force: bool = True) -> None:
        if force or self.due():
            self._last_emit = time.monotonic()
            self.callback(event)

    def due(self) -> bool:
        """Whether a throttled event would pass now; lets hot loops skip building one."""
        return time.monotonic() - self._last_emit >= self.min_interval_seconds

    def check(self) -> None:
        """Raise if the job was cancelled or ran over its time budget."""
        if self.time_limit_seconds and self.elapsed() > self.time_limit_seconds:
            raise TimeLimitExceeded(
                f"the job ran over its time limit of {self.time_limit_seconds:.0f} s"
            )
        if self.should_stop():
            raise Cancelled("the job was cancelled")

    def elapsed(self) -> float:
        return time.monotonic() - self._started
