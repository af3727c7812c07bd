"""The submit-time check (:func:`service.jobs.validation.check_job_inputs`) in child processes whose
address space is capped, so a model or dataset that needs more memory than the operator allows
fails the one submission with a clear error instead of taking the server's memory.

A check is bounded three ways: its cost is estimated from the graph before anything runs
(:mod:`service.jobs.graph_cost`, limits from ``max_gflops`` and a quarter of the memory limit),
its process is killed past ``time_limit`` seconds (TEMPERING_VALIDATION_TIME_LIMIT), and the
processes are shared fairly between tenants (:mod:`service.core.fair_slots`), so that a tenant
submitting costly models in a loop cannot make another tenant's submission wait.

A few checker processes (:mod:`service.jobs.validation_checker`, started with subprocess, so that
no multiprocessing helper process outlives the server) each serve many checks over a pair of
pipes. All are started with the pool, so that the one a tenant's share leaves free is warm for
the next tenant. One that fails for lack of memory, runs over its time or dies is killed and
replaced at once, so that its successor has warmed up by the next submission. Neither the server
process nor the checkers import torch.
"""

from __future__ import annotations

import copy
import dataclasses
import os
import subprocess
import sys
import threading
from collections import OrderedDict
from collections.abc import Sequence
from multiprocessing.connection import Connection
from pathlib import Path

from service.core.admission import stepped_aside
from service.core.errors import ResourceExhausted, Unavailable
from service.core.fair_slots import FairSlots
from service.core.tenancy import DEFAULT_TENANT
from service.jobs.graph_cost import DEFAULT_LIMITS, CostLimits
from service.jobs.validation import TextInputs
from service.jobs.validation_checker import (
    READY,
    CheckOutcome,
    CheckRequest,
    SchemaCheckRequest,
    TokenizerCheckRequest,
)
from workers.engine.spec import ModelFormat, ThreatModel

AnyCheck = CheckRequest | TokenizerCheckRequest | SchemaCheckRequest

MEMORY_LIMIT_VARIABLE = "TEMPERING_VALIDATION_MEMORY_LIMIT"
TIME_LIMIT_VARIABLE = "TEMPERING_VALIDATION_TIME_LIMIT"
DEFAULT_PROCESSES = 2
DEFAULT_TIME_LIMIT = 30.0
"""Seconds one check may run: the default cost limit takes about 10 s on one core."""
DEFAULT_WAIT_LIMIT = 120.0
"""Seconds a check may wait for a slot (behind the same tenant's other checks) before the
submission is refused as UNAVAILABLE."""
STARTUP_LIMIT = 60.0
"""Seconds a fresh checker may take to import onnxruntime and warm up (about 0.2 s on a quiet
machine); its checks' time limit starts after that."""
WAITING_PER_SLOT = 2
"""Checks one tenant may have waiting, per checker process."""


class ValidationPool:
    """Runs checks in at most ``processes`` capped processes at once, each for at most
    ``time_limit`` seconds; more callers wait their turn, fairly between tenants, for at most
    ``wait_limit`` seconds."""

    def __init__(
        self,
        memory_limit: int,
        *,
        processes: int = DEFAULT_PROCESSES,
        time_limit: float = DEFAULT_TIME_LIMIT,
        wait_limit: float = DEFAULT_WAIT_LIMIT,
        max_gflops: float = DEFAULT_LIMITS.max_flops / 1e9,
    ) -> None:
        self._memory_limit = memory_limit
        self._time_limit = time_limit
        self._wait_limit = wait_limit
        self._limits = CostLimits(max_flops=max_gflops * 1e9, max_tensor_bytes=memory_limit // 4)
        self._slots = FairSlots(processes, max_waiting_per_tenant=WAITING_PER_SLOT * processes)
        self._lock = threading.Lock()
        self._idle: list[_Checker] = [self._new_checker() for _ in range(processes)]
        self._busy: set[_Checker] = set()
        self._closed = False
        self._refusals = _Refusals(REMEMBERED_REFUSALS)

    def check(
        self,
        model_format: ModelFormat,
        model_path: Path,
        dataset_paths: Sequence[Path],
        threat: ThreatModel,
        *,
        tenant: str = DEFAULT_TENANT,
        text: TextInputs | None = None,
        schema: Path | None = None,
        contents: Sequence[str] = (),
    ) -> None:
        """Raise what :func:`check_job_inputs` raises, ResourceExhausted past a limit,
        Unavailable if no checker came free in time for ``tenant``. ``contents``, the SHA-256 of
        each file in the order of :attr:`CheckRequest.paths`, lets a refusal be remembered by
        the bytes checked rather than by the files holding them."""
        request = CheckRequest(
            model_format, model_path, tuple(dataset_paths), threat, self._limits, text, schema
        )
        key = _identity(request, contents)
        self._refusals.raise_if_refused(key)
        self._run_in_turn(request, tenant, remember_as=key)

    def check_tokenizer(self, path: Path, tenant: str = DEFAULT_TENANT) -> None:
        """Raise the engine's InvalidModel when the file at ``path`` is not a tokenizer the
        engine can read; the limits and the fairness of :meth:`check` apply. Refusals are not
        remembered: ``path`` is an upload's temporary copy, gone once it is checked."""
        self._run_in_turn(TokenizerCheckRequest(path), tenant)

    def check_schema(self, path: Path, tenant: str = DEFAULT_TENANT) -> None:
        """Raise the engine's InvalidData, naming the feature, when the file at ``path`` is not a
        feature schema the engine can read; as :meth:`check_tokenizer` otherwise."""
        self._run_in_turn(SchemaCheckRequest(path), tenant)

    def _run_in_turn(
        self, request: AnyCheck, tenant: str, remember_as: tuple[object, ...] | None = None
    ) -> None:
        """Wait fairly for a checker and run ``request`` on it, the call's admission slot given
        back meanwhile: a call waiting for a process costs the server's other callers nothing."""
        with stepped_aside():
            self._take_slot(tenant)
            try:
                self._run(request, tenant, remember_as)
            finally:
                self._slots.release(tenant)

    def _take_slot(self, tenant: str) -> None:
        self._slots.acquire(
            tenant,
            self._wait_limit,
            busy="the server is busy checking other submissions; try again shortly",
            too_many="of this tenant's submissions are already waiting for the submit-time"
            " check; wait for them to finish before submitting more",
        )

    def pids(self) -> list[int]:
        """The process ids of the checkers, busy and idle."""
        with self._lock:
            return [c.pid for c in (*self._busy, *self._idle)]

    def close(self) -> None:
        """Stop every checker: the idle ones here, the busy ones by killing their process, which
        their callers then reap (and get ResourceExhausted), so none outlives the server."""
        with self._lock:
            self._closed = True
            busy, idle = list(self._busy), self._idle
            self._idle = []
        for checker in busy:
            checker.kill()
        for checker in idle:
            checker.stop()

    def _run(
        self, check: AnyCheck, tenant: str, remember_as: tuple[object, ...] | None = None
    ) -> None:
        checker = self._take(tenant)
        try:
            outcome = checker.run(check, self._time_limit)
        except CheckerDidNotStart:
            self._replace(checker)
            raise Unavailable(
                f"the server's submit-time checker did not start within {STARTUP_LIMIT:g} s;"
                " try again shortly"
            ) from None
        except TimeoutError:
            self._replace(checker)
            raise ResourceExhausted(
                f"checking the model and data took longer than {self._time_limit:g} s, the"
                f" time limit of the server's submit-time check ({TIME_LIMIT_VARIABLE}), and"
                " was stopped; submit a model that runs one sample faster, or a smaller dataset"
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
        self._give_back(checker)
        if outcome.error is not None:
            if remember_as is not None:
                self._refusals.remember(remember_as, outcome.error)
            raise outcome.error

    def _take(self, tenant: str) -> _Checker:
        """An idle checker: the one ``tenant`` used last (or the successor of one of its checks
        that was killed) first, then a warm one, then any, else a new one. So the start-up of a
        killed check's successor is paid by the tenant whose check it was, not by the next
        tenant, who finds the checker it used last still warm."""
        with self._lock:
            ranked = sorted(self._idle, key=lambda c: (c.tenant != tenant, not c.warm()))
            if ranked:
                checker = ranked[0]
                self._idle.remove(checker)
            else:
                checker = self._new_checker()
            checker.tenant = tenant
            self._busy.add(checker)
        return checker

    def _give_back(self, checker: _Checker) -> None:
        with self._lock:
            self._busy.discard(checker)
            closed = self._closed
            if not closed:
                self._idle.append(checker)
        if closed:
            checker.stop()

    def _replace(self, checker: _Checker, grace: float = 0.0) -> int | None:
        """Kill a checker that failed (its state is unknown) and start its successor now, so that
        it has warmed up by the next submission. Returns the failed one's exit code."""
        with self._lock:
            self._busy.discard(checker)
            closed = self._closed
        code = checker.stop(grace)
        if not closed:
            successor = self._new_checker()
            successor.tenant = checker.tenant
            with self._lock:
                self._idle.append(successor)
        return code

    def _new_checker(self) -> _Checker:
        return _Checker(self._memory_limit)

    def _limit_text(self) -> str:
        return f"{self._memory_limit / 2**20:g} MiB ({MEMORY_LIMIT_VARIABLE})"


class CheckerDidNotStart(Exception):
    """A fresh checker did not say READY in time."""


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
        self._ready = False
        self.tenant: str | None = None
        """Whose check it ran last (or its predecessor, killed, ran)."""

    def run(
        self, check: CheckRequest | TokenizerCheckRequest | SchemaCheckRequest, time_limit: float
    ) -> CheckOutcome:
        """Raise TimeoutError past ``time_limit``, counted from when the process is ready (a
        fresh one's start-up is not the check's time), CheckerDidNotStart if it is not ready
        within STARTUP_LIMIT, EOFError or OSError if the process died."""
        if not self.ready_now(wait=STARTUP_LIMIT):
            raise CheckerDidNotStart
        self._requests.send(check)
        if not self._outcomes.poll(time_limit):
            raise TimeoutError
        outcome: CheckOutcome = self._outcomes.recv()
        return outcome

    def ready_now(self, wait: float = 0.0) -> bool:
        """Whether the process has said READY, waiting up to ``wait`` seconds for it. Raises
        EOFError or OSError if it died first."""
        if not self._ready and self._outcomes.poll(wait):
            if self._outcomes.recv() != READY:
                raise OSError("the checker did not start with its greeting")
            self._ready = True
        return self._ready

    @property
    def pid(self) -> int:
        return self._process.pid

    def warm(self) -> bool:
        """Ready now; False too for a process that died (:meth:`run` then says so)."""
        try:
            return self.ready_now()
        except (EOFError, OSError):
            return False

    def kill(self) -> None:
        self._process.kill()

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


REMEMBERED_REFUSALS = 1024


class _Refusals:
    """The last refusals of the check itself, by what was checked (:func:`_identity`), given
    again without a checker: a tenant who submits the same costly model in a loop costs one
    check, not one a submission; the check would refuse it again, in the same words. Time-outs
    are not remembered: they can come from a busy machine rather than from the inputs."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._errors: OrderedDict[tuple[object, ...], BaseException] = OrderedDict()
        self._lock = threading.Lock()

    def raise_if_refused(self, key: tuple[object, ...] | None) -> None:
        if key is None:
            return
        with self._lock:
            error = self._errors.get(key)
            if error is not None:
                self._errors.move_to_end(key)
        if error is not None:
            raise copy.copy(error).with_traceback(None)

    def remember(self, key: tuple[object, ...], error: BaseException) -> None:
        """Keep a copy of ``error``: the error itself is raised next, and its traceback would
        then hold every frame of the refused call (its request, its gRPC state), tens of KiB a
        refusal, for as long as the refusal is remembered."""
        with self._lock:
            self._errors[key] = copy.copy(error).with_traceback(None)
            self._errors.move_to_end(key)
            while len(self._errors) > self._size:
                self._errors.popitem(last=False)


def _identity(request: CheckRequest, contents: Sequence[str]) -> tuple[object, ...] | None:
    """What makes the check's answer the same: the request's parameters and the bytes of its
    files. By the files' SHA-256s where the caller gives them, so that two local copies of one
    blob count as one (an S3 store downloads a fresh copy for every check); else by each file's
    inode, size and modification time (the local store leaves a blob's file as it is when the
    same bytes are uploaded again). None when a file cannot be read."""
    if contents:
        if len(contents) != len(request.paths):
            raise ValueError(f"{len(contents)} digests for {len(request.paths)} files")
        return (_placeholders(request), tuple(contents))
    try:
        files = tuple(
            (info.st_ino, info.st_size, info.st_mtime_ns)
            for info in (path.stat() for path in request.paths)
        )
    except OSError:
        return None
    return (request, files)


def _placeholders(request: CheckRequest) -> CheckRequest:
    """The request with each file's path replaced by its role."""
    text = request.text
    return dataclasses.replace(
        request,
        model_path=Path("model"),
        dataset_paths=tuple(Path(f"dataset-{i}") for i in range(len(request.dataset_paths))),
        text=(
            dataclasses.replace(text, tokenizer=Path("tokenizer") if text.tokenizer else None)
            if text is not None
            else None
        ),
        schema=Path("schema") if request.schema is not None else None,
    )
