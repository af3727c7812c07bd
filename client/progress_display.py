"""Showing a job's progress on stderr: a tqdm bar on a terminal, one line per stage, per epoch
and per new engine message otherwise (logs, CI), nothing at all for ``--json``."""

from __future__ import annotations

import sys
from typing import Protocol, TextIO

from tqdm import tqdm

from client.domain import JobEvent, Progress


class ProgressDisplay(Protocol):
    def show(self, event: JobEvent) -> None: ...

    def close(self) -> None: ...


def choose_display(*, quiet: bool, stream: TextIO | None = None) -> ProgressDisplay:
    stream = stream or sys.stderr
    if quiet:
        return SilentDisplay()
    if stream.isatty():
        return BarDisplay(stream)
    return LineDisplay(stream)


class SilentDisplay:
    def show(self, event: JobEvent) -> None:
        return None

    def close(self) -> None:
        return None


def describe(progress: Progress) -> str:
    """``training epoch 2/5: loss 0.412, clean 91.0%, robust 55.3%, eta 1m05s`` at the end of an
    epoch, ``evaluating: original: apgd-ce`` otherwise."""
    head = progress.stage or "working"
    if progress.epochs:
        head += f" epoch {progress.epoch}/{progress.epochs}"
    details = _metrics(progress)
    if progress.message and not progress.is_epoch_end:
        details.insert(0, progress.message)
    return f"{head}: {', '.join(details)}" if details else head


def state_line(event: JobEvent) -> str:
    reason = f" ({event.job.reason})" if event.job is not None and event.job.reason else ""
    return f"job {event.job_id}: {event.state.value}{reason}"


def _metrics(progress: Progress) -> list[str]:
    parts = []
    if progress.loss is not None:
        parts.append(f"loss {progress.loss:.3f}")
    if progress.clean_accuracy is not None:
        parts.append(f"clean {progress.clean_accuracy:.1%}")
    if progress.robust_accuracy is not None:
        parts.append(f"robust {progress.robust_accuracy:.1%}")
    if progress.eta_seconds is not None:
        parts.append(f"eta {format_seconds(progress.eta_seconds)}")
    return parts


def format_seconds(seconds: float) -> str:
    seconds = max(0, round(seconds))
    minutes, secs = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"


class LineDisplay:
    """A line when the job changes state or stage, when an epoch ends and whenever the engine
    says something new (each attack's counts while evaluating). Training step events carry no
    message, so they stay quiet."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._state = ""
        self._stage = ""
        self._message = ""

    def show(self, event: JobEvent) -> None:
        if event.job is not None and event.state.value != self._state:
            self._state = event.state.value
            self._print(state_line(event))
        progress = event.progress
        if progress is not None and self._is_news(progress):
            self._print(describe(progress))

    def _is_news(self, progress: Progress) -> bool:
        """Whether ``progress`` deserves a line; remembers its stage and message either way."""
        new_stage = progress.stage != self._stage
        new_message = bool(progress.message) and progress.message != self._message
        self._stage, self._message = progress.stage, progress.message or self._message
        return new_stage or new_message or progress.is_epoch_end

    def close(self) -> None:
        return None

    def _print(self, text: str) -> None:
        print(text, file=self._stream, flush=True)


class BarDisplay:
    """One bar per stage and epoch, showing steps when the engine counts them."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._bar: tqdm[None] | None = None
        self._key: tuple[str, int] | None = None
        self._state = ""

    def show(self, event: JobEvent) -> None:
        if event.job is not None and event.state.value != self._state:
            self._state = event.state.value
            self.close()
            print(state_line(event), file=self._stream, flush=True)
        if event.progress is not None:
            self._update(event.progress)

    def _update(self, progress: Progress) -> None:
        key = (progress.stage, progress.epoch)
        if key != self._key:
            self.close()
            self._key = key
            label = progress.stage + (
                f" {progress.epoch}/{progress.epochs}" if progress.epochs else ""
            )
            self._bar = tqdm(
                total=progress.steps or None,
                desc=label,
                file=self._stream,
                leave=True,
                dynamic_ncols=True,
                bar_format=None if progress.steps else "{desc}: {elapsed} {postfix}",
            )
        bar = self._bar
        assert bar is not None
        if progress.steps:
            bar.total = progress.steps
            bar.n = min(progress.step, progress.steps)
        details = _metrics(progress)
        if progress.message and not progress.is_epoch_end:
            details.insert(0, progress.message)
        bar.set_postfix_str(", ".join(details), refresh=False)
        bar.refresh()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
        self._bar = None
        self._key = None
