"""The submit-time check (:func:`service.jobs.validation.check_job_inputs`) in child processes whose
address space is capped, so a model or dataset that needs more memory than the operator allows
fails the one submission with a clear error instead of taking the server's memory.

A few checker processes (:mod:`service.jobs.validation_checker`, started with subprocess, so that no
multiprocessing helper process outlives the server) each serve many checks over a pair of pipes;
one that fails for lack of memory, runs over its time or dies is killed and replaced at once, so
that its successor has warmed up by the next submission. Neither the server process nor the
checkers import torch.
"""

from __future__ import annotations

import os
import queue
import subprocess
import sys
import threading
from collections.abc import Sequence
from multiprocessing.connection import Connection
from pathlib import Path

from service.core.errors import ResourceExhausted, Unavailable
from service.jobs.validation_checker import CheckOutcome, CheckRequest
from workers.engine.spec import ModelFormat, ThreatModel

MEMORY_LIMIT_VARIABLE = "TEMPERING_VALIDATION_MEMORY_LIMIT"
DEFAULT_PROCESSES = 2
DEFAULT_TIME_LIMIT = 120.0


class ValidationPool:
    """Runs checks in at most ``processes`` capped processes at once; more callers wait their
    turn, for at most ``time_limit`` seconds."""

    def __init__(
        self,
        memory_limit: int,
        *,
        processes: int = DEFAULT_PROCESSES,
        time_limit: float = DEFAULT_TIME_LIMIT,
    ) -> None:
        self._memory_limit = memory_limit
        self._time_limit = time_limit
        self._slots = threading.BoundedSemaphore(processes)
        self._idle: queue.SimpleQueue[_Checker] = queue.SimpleQueue()
        self._idle.put(self._new_checker())

    def check(
        self,
        model_format: ModelFormat,
        model_path: Path,
        dataset_paths: Sequence[Path],
        threat: ThreatModel,
    ) -> None:
        """Raise what :func:`check_job_inputs` raises, or ResourceExhausted past a limit."""
        if not self._slots.acquire(timeout=self._time_limit):
            raise Unavailable("the server is busy checking other submissions; try again shortly")
        try:
            self._run(CheckRequest(model_format, model_path, tuple(dataset_paths), threat))
        finally:
            self._slots.release()

    def close(self) -> None:
        while True:
            try:
                self._idle.get_nowait().stop()
            except queue.Empty:
                return

    def _run(self, check: CheckRequest) -> None:
        checker = self._take()
        try:
            outcome = checker.run(check, self._time_limit)
        except TimeoutError:
            self._replace(checker)
            raise ResourceExhausted(
                f"checking the model and data took longer than {self._time_limit:g} s, the"
                " limit of the server's submit-time check; submit a smaller model or dataset"
            ) from None
        except (EOFError, OSError):
            code = self._replace(checker, grace=1.0)
            raise ResourceExhausted(
                f"the submit-time check of the model and data ended abruptly (exit code {code});"
                f" it most likely needed more memory than the {self._limit_text()} the server"
                " allows it"
            ) from None
        if outcome.out_of_memory:
            self._replace(checker)
            raise ResourceExhausted(
                f"checking the model and data needs more memory than the {self._limit_text()}"
                " the server allows its submit-time check; submit a smaller model or dataset,"
                " or ask the operator to raise it"
            )
        self._idle.put(checker)
        if outcome.error is not None:
            raise outcome.error

    def _take(self) -> _Checker:
        try:
            return self._idle.get_nowait()
        except queue.Empty:
            return self._new_checker()

    def _replace(self, checker: _Checker, grace: float = 0.0) -> int | None:
        """Kill a checker that failed (its state is unknown) and start its successor now, so that
        it has warmed up by the next submission. Returns the failed one's exit code."""
        code = checker.stop(grace)
        self._idle.put(self._new_checker())
        return code

    def _new_checker(self) -> _Checker:
        return _Checker(self._memory_limit)

    def _limit_text(self) -> str:
        return f"{self._memory_limit / 2**20:g} MiB ({MEMORY_LIMIT_VARIABLE})"


class _Checker:
    """One capped child process, serving one check at a time over a pair of pipes."""

    def __init__(self, memory_limit: int) -> None:
        child_reads, parent_writes = os.pipe()
        parent_reads, child_writes = os.pipe()
        try:
            arguments = (child_reads, child_writes, memory_limit)
            self._process = subprocess.Popen(
                [sys.executable, "-m", "service.jobs.validation_checker", *map(str, arguments)],
                pass_fds=(child_reads, child_writes),
                stdin=subprocess.DEVNULL,
                env={**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)},
                start_new_session=True,
            )
        finally:
            os.close(child_reads)
            os.close(child_writes)
        self._requests = Connection(parent_writes, readable=False)
        self._outcomes = Connection(parent_reads, writable=False)

    def run(self, check: CheckRequest, time_limit: float) -> CheckOutcome:
        """Raise TimeoutError past ``time_limit``, EOFError or OSError if the process died."""
        self._requests.send(check)
        if not self._outcomes.poll(time_limit):
            raise TimeoutError
        outcome: CheckOutcome = self._outcomes.recv()
        return outcome

    def stop(self, grace: float = 0.0) -> int | None:
        """Kill the process after ``grace`` seconds and reap it; its exit code (negative: the
        signal) if it had ended by then."""
        try:
            code: int | None = self._process.wait(grace)
        except subprocess.TimeoutExpired:
            code = None
        self._process.kill()
        self._process.wait()
        self._requests.close()
        self._outcomes.close()
        return code
