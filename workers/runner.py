"""Running one job in a worker: claim it, run the engine, report progress, store results.

The Celery task calls :meth:`JobRunner.run` with a job id and nothing else. Progress goes to the
job store (throttled), cancellation comes from it (polled), so the server and any number of
workers only ever share the database and the artifact store.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import functools
import logging
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy.exc import SQLAlchemyError

from service.core.domain import (
    Job,
    JobSpec,
    JobState,
    OutputFile,
    OutputKind,
    Progress,
    ResultSummary,
    Said,
    UploadKind,
    utcnow,
)
from service.core.logs import bind_log_context, log_context
from service.core.settings import Settings
from service.store.artifacts import ArtifactStore, check_sha256
from service.store.catalog import UploadCatalog
from service.store.checkpoints import CheckpointStore, PushingCheckpointer
from service.store.jobstore import JobStore
from service.store.leases import LeaseKeeper, new_owner_id
from service.store.stores import Stores
from workers.engine.errors import Cancelled, TemperingError, TimeLimitExceeded
from workers.engine.progress import ProgressEvent, Reporter
from workers.engine.spec import INLINE_WEIGHT_LIMIT, HardeningRequest, ModelFormat
from workers.job_request import JobFiles, engine_request
from workers.mlflow_tracking import job_tracking

log = logging.getLogger(__name__)

RECENT_MESSAGES = 16
"""Messages each progress write carries for watchers: far more than the engine says between two
polls of a watcher (the evaluation's per-attack lines can come a few milliseconds apart)."""

_MODEL_SUFFIX = {
    ModelFormat.ONNX: ".onnx",
    ModelFormat.ONNX_BUNDLE: ".tar",
    ModelFormat.SAFETENSORS: ".safetensors",
    ModelFormat.TORCHSCRIPT: ".pt",
    ModelFormat.TORCH_EXPORT: ".pt2",
}


class HardeningOutcome(Protocol):
    """What :func:`workers.engine.pipeline.harden` returns."""

    @property
    def model_path(self) -> Path: ...

    @property
    def report_path(self) -> Path: ...

    @property
    def card_path(self) -> Path: ...

    @property
    def plot_path(self) -> Path: ...

    @property
    def report(self) -> dict[str, Any]: ...

    @property
    def tokenizer_path(self) -> Path | None:
        """A text model's tokenizer, returned beside it; None for other models."""
        ...

    @property
    def schema_path(self) -> Path | None:
        """A tabular model's feature schema, returned beside it; None for other models."""
        ...

    @property
    def model_is_bundle(self) -> bool:
        """``model_path`` is an ONNX bundle (the model with its external data file)."""
        ...


HardenFunction = Callable[..., HardeningOutcome]
"""``(request, output_dir, reporter)``, plus ``checkpoint_path=`` and ``after_checkpoint=`` (to
call after each save) when the runner keeps checkpoints (:attr:`RunnerConfig.checkpoints`)."""


class JobTracker(Protocol):
    """Logs one job to an experiment tracker (:mod:`workers.mlflow_tracking`)."""

    def start(self, request: HardeningRequest) -> None:
        """Raise a TemperingError when tracking cannot start: the job fails before training."""
        ...

    def on_progress(self, event: ProgressEvent) -> None: ...

    def log_outcome(self, report: dict[str, Any], files: list[Path]) -> None: ...

    def end(self, state: JobState) -> None: ...


TrackerFactory = Callable[[Job], "JobTracker | None"]
"""The tracker of a job that asks for one, else None."""


def engine_harden(
    request: HardeningRequest,
    output_dir: Path,
    reporter: Reporter,
    *,
    checkpoint_path: Path | None = None,
    after_checkpoint: Callable[[], None] | None = None,
) -> Any:
    """The real engine, imported on first use so that importing this module stays torch-free."""
    from workers.engine.checkpoint import FileCheckpointer
    from workers.engine.pipeline import harden

    checkpointer: Any = None
    if checkpoint_path is not None:
        checkpointer = FileCheckpointer(checkpoint_path)
        if after_checkpoint is not None:
            checkpointer = PushingCheckpointer(checkpointer, after_checkpoint)
    return harden(request, output_dir, reporter, checkpointer=checkpointer)


@dataclass(frozen=True)
class RunnerConfig:
    work_dir: Path
    max_attempts: int
    allow_trusted_formats: bool
    progress_interval: float = 0.5
    cancel_poll_interval: float = 1.0
    lease_timeout: float = 30.0
    heartbeat_interval: float = 2.0
    checkpoints: CheckpointStore | None = None
    """Where jobs keep their training checkpoints between attempts; None: no checkpoints."""
    inline_weight_limit: int = INLINE_WEIGHT_LIMIT
    """Bytes of weights over which a model is streamed from its files and comes back as a
    bundle (``TEMPERING_INLINE_WEIGHT_LIMIT``)."""


class ProgressRecorder:
    """Reporter callback writing progress to the job store: at most every ``interval`` seconds,
    but always for a milestone (see :meth:`_is_milestone`), so that the evaluation's quick
    per-attack lines reach the store (and ``WatchJob``) instead of being merged away."""

    def __init__(
        self,
        store: JobStore,
        job_id: str,
        interval: float,
        clock: Callable[[], float] = time.monotonic,
        owner: str | None = None,
    ) -> None:
        self._store = store
        self._job_id = job_id
        self._interval = interval
        self._clock = clock
        self._owner = owner
        self._last: ProgressEvent | None = None
        self._last_write = float("-inf")
        self._pending: ProgressEvent | None = None
        self._said: collections.deque[Said] = collections.deque(maxlen=RECENT_MESSAGES)

    def __call__(self, event: ProgressEvent) -> None:
        now = self._clock()
        if self._is_milestone(event) or now - self._last_write >= self._interval:
            self._write(event, now)
        else:
            self._pending = event

    def flush(self) -> None:
        if self._pending is not None:
            self._write(self._pending, self._clock())

    def _is_milestone(self, event: ProgressEvent) -> bool:
        """A new stage or epoch, the last step, a step outside an epoch (an attack of the
        evaluation) or a new message (an attack's counts, an epoch's end, a restart). Training
        step events carry no message and change step within an epoch, so they stay throttled."""
        last = self._last
        return (
            last is None
            or event.stage != last.stage
            or event.epoch != last.epoch
            or (event.steps > 0 and event.step >= event.steps)
            or (event.epoch == 0 and event.step != last.step)
            or (bool(event.message) and event.message != last.message)
        )

    def _write(self, event: ProgressEvent, now: float) -> None:
        if event.message and (self._last is None or event.message != self._last.message):
            number = self._said[-1].number + 1 if self._said else 1
            self._said.append(
                Said(
                    number,
                    event.stage,
                    event.step,
                    event.steps,
                    event.message,
                    epoch=event.epoch,
                    epochs=event.epochs,
                    loss=event.loss,
                    clean_accuracy=event.clean_accuracy,
                    robust_accuracy=event.robust_accuracy,
                    eta_seconds=event.eta_seconds,
                )
            )
        self._last, self._last_write, self._pending = event, now, None
        progress = dataclasses.replace(progress_from_event(event), recent=tuple(self._said))
        try:
            if self._owner is None:
                self._store.record_progress(self._job_id, progress)
            else:
                self._store.record_progress(self._job_id, progress, owner=self._owner)
        except SQLAlchemyError:
            log.warning("could not record progress of job %s", self._job_id, exc_info=True)


class CancelFlag:
    """``should_stop`` predicate: reads the job's cancel flag at most every ``interval`` s."""

    def __init__(
        self,
        store: JobStore,
        job_id: str,
        interval: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._job_id = job_id
        self._interval = interval
        self._clock = clock
        self._last_check = float("-inf")
        self._requested = False

    def __call__(self) -> bool:
        now = self._clock()
        if not self._requested and now - self._last_check >= self._interval:
            self._last_check = now
            try:
                self._requested = self._store.is_cancel_requested(self._job_id)
            except SQLAlchemyError:
                log.warning("could not read the cancel flag of job %s", self._job_id)
        return self._requested


def progress_from_event(event: ProgressEvent) -> Progress:
    return Progress(
        stage=event.stage,
        epoch=event.epoch,
        epochs=event.epochs,
        step=event.step,
        steps=event.steps,
        loss=event.loss,
        clean_accuracy=event.clean_accuracy,
        robust_accuracy=event.robust_accuracy,
        eta_seconds=event.eta_seconds,
        message=event.message,
    )


@dataclass(frozen=True)
class _Ending:
    """How a job ends, as the job store records it."""

    state: JobState
    reason: str = ""
    outputs: list[OutputFile] = field(default_factory=list)
    result: ResultSummary | None = None


class JobObserver(Protocol):
    """Sees the jobs a runner runs (a worker's metrics, :mod:`workers.worker_metrics`)."""

    def progress(self, job: Job, event: ProgressEvent) -> None: ...

    def finished(self, job: Job, state: JobState) -> None:
        """Called once for each job whose end this runner recorded, whether it ran the job or
        ended it without running (cancelled before it started, out of attempts or of time)."""
        ...


class JobRunner:
    def __init__(
        self,
        store: JobStore,
        catalog: UploadCatalog,
        artifacts: ArtifactStore,
        config: RunnerConfig,
        harden: HardenFunction = engine_harden,
        observer: JobObserver | None = None,
        tracker_factory: TrackerFactory | None = None,
    ) -> None:
        self._store = store
        self._catalog = catalog
        self._artifacts = artifacts
        self._config = config
        self._harden = harden
        self._observer = observer
        self._tracker_factory = tracker_factory

    def run(self, job_id: str) -> JobState:
        """Run the job if it is still to run, and return the state it ends in. Safe to call
        again for the same job (a redelivered or duplicate message): a finished job, or one
        that another worker holds a live lease on, is left alone.

        While the job runs, a :class:`~service.store.leases.LeaseKeeper` renews its lease; if the
        lease is lost (taken over after this worker looked dead), the engine stops at the next
        batch and nothing is recorded: the job belongs to whoever holds it now.

        Every line logged meanwhile carries the job id, and the tenant once the job is read."""
        with log_context(job_id=job_id):
            return self._run(job_id)

    def _run(self, job_id: str) -> JobState:
        owner = new_owner_id()
        job = self._store.leases.claim(
            job_id,
            owner,
            max_attempts=self._config.max_attempts,
            lease_seconds=self._config.lease_timeout,
        )
        if job is None:
            return self._not_claimed(job_id)
        bind_log_context(tenant=job.tenant)
        log.info("job %s: attempt %d started (lease %s)", job_id, job.attempts, owner)
        limit, run_before = job.spec.time_limit_seconds, self._store.leases.run_seconds(job_id)
        if limit and run_before >= limit:
            return self._end_out_of_time(job, owner)
        return self._attempt(job, owner, run_before)

    def _attempt(self, job: Job, owner: str, run_before: float) -> JobState:
        """Run the engine while a :class:`~service.store.leases.LeaseKeeper` renews the lease, and
        record how it ended."""
        keeper = LeaseKeeper(
            self._store.leases,
            job.id,
            owner,
            interval=self._config.heartbeat_interval,
            timeout=self._config.lease_timeout,
            run_seconds_before=run_before,
        )
        recorder = ProgressRecorder(
            self._store, job.id, self._config.progress_interval, owner=owner
        )
        tracker = self._tracker_factory(job) if self._tracker_factory is not None else None
        cancel = CancelFlag(self._store, job.id, self._config.cancel_poll_interval)
        limit = job.spec.time_limit_seconds
        reporter = Reporter(
            callback=self._progress_callback(job, recorder, tracker),
            should_stop=lambda: keeper.lost or cancel(),
            time_limit_seconds=limit - run_before if limit else 0.0,
        )
        with keeper:
            ending = self._harden_to_end(job, reporter, tracker, keeper, run_before)
            if ending is None:
                log.warning("job %s: lost its lease; left to whoever holds it now", job.id)
                return JobState.RUNNING
            recorder.flush()
            finished = self._finish(job.id, ending, owner)
        return self._report_end(job, ending, finished, tracker)

    def _harden_to_end(
        self,
        job: Job,
        reporter: Reporter,
        tracker: JobTracker | None,
        keeper: LeaseKeeper,
        run_before: float,
    ) -> _Ending | None:
        """How this attempt ends; None when it stopped because its lease was lost."""
        try:
            outputs, report = self._harden_and_store(job, reporter, tracker)
            return _Ending(JobState.SUCCEEDED, "", outputs, ResultSummary.from_report(report))
        except TimeLimitExceeded as exc:
            if run_before:
                return _Ending(
                    JobState.FAILED, _over_time_limit(job.spec.time_limit_seconds, job.attempts)
                )
            return _Ending(JobState.FAILED, f"time limit: {exc}")
        except Cancelled as exc:
            if keeper.lost:
                return None
            return _Ending(JobState.CANCELLED, str(exc) or "the job was cancelled")
        except TemperingError as exc:
            return _Ending(JobState.FAILED, str(exc))
        except Exception as exc:
            return _Ending(JobState.FAILED, _unexpected_failure(job.id, exc))

    def _progress_callback(
        self, job: Job, recorder: ProgressRecorder, tracker: JobTracker | None
    ) -> Callable[[ProgressEvent], None]:
        """The job store first, then the observer and the tracker, when there are."""
        callbacks: list[Callable[[ProgressEvent], None]] = [recorder]
        if self._observer is not None:
            callbacks.append(functools.partial(self._observer.progress, job))
        if tracker is not None:
            callbacks.append(tracker.on_progress)
        return _each(callbacks)

    def _end_out_of_time(self, job: Job, owner: str) -> JobState:
        """A resumed job whose earlier attempts used up its time limit ends without running."""
        reason = _over_time_limit(job.spec.time_limit_seconds, job.attempts - 1)
        return self._end(job, _Ending(JobState.FAILED, reason), owner)

    def _not_claimed(self, job_id: str) -> JobState:
        job = self._store.get(job_id)
        bind_log_context(tenant=job.tenant)
        if job.state.is_terminal:
            log.info("job %s is already %s; nothing to run", job_id, job.state.value)
            return job.state
        seen = self._store.leases.read(job_id)
        if seen is not None and seen.lease_live(utcnow()):
            owner = seen.lease_owner
            log.info("job %s runs in another worker (%s); dropping this message", job_id, owner)
            return job.state
        if job.cancel_requested:
            return self._end(job, _Ending(JobState.CANCELLED, "the job was cancelled"))
        if job.attempts >= self._config.max_attempts:
            return self._end(job, _Ending(JobState.FAILED, _workers_lost(job.attempts)))
        log.info("job %s was claimed by another worker first", job_id)
        return job.state

    def _end(self, job: Job, ending: _Ending, owner: str | None = None) -> JobState:
        """Record ``ending`` without having run the job (see :meth:`_report_end`)."""
        return self._report_end(job, ending, self._finish(job.id, ending, owner), tracker=None)

    def _finish(self, job_id: str, ending: _Ending, owner: str | None) -> bool:
        return self._store.finish(
            job_id,
            ending.state,
            reason=ending.reason,
            outputs=ending.outputs,
            result=ending.result,
            owner=owner,
        )

    def _report_end(
        self, job: Job, ending: _Ending, finished: bool, tracker: JobTracker | None
    ) -> JobState:
        """Once the store was asked to record ``ending``: when it did, the tracker, the
        checkpoints and the observer learn that the job ended; when it did not (the job ended
        or changed hands meanwhile), the state the job has now is returned."""
        if not finished:
            current = self._store.get(job.id).state
            if current.is_terminal:
                self._discard_checkpoints(job.id)
            log.warning("job %s: not recorded as %s, it changed hands meanwhile", job.id, current)
            return current
        if tracker is not None:
            tracker.end(ending.state)
        self._discard_checkpoints(job.id)
        reason = f": {ending.reason}" if ending.reason else ""
        log.info("job %s %s%s", job.id, ending.state.value.lower(), reason)
        if self._observer is not None:
            self._observer.finished(job, ending.state)
        return ending.state

    def _discard_checkpoints(self, job_id: str) -> None:
        if self._config.checkpoints is not None:
            self._config.checkpoints.discard(job_id)

    def _harden_and_store(
        self, job: Job, reporter: Reporter, tracker: JobTracker | None = None
    ) -> tuple[list[OutputFile], dict[str, Any]]:
        self._config.work_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=self._config.work_dir, prefix=f"{job.id}-") as tmp:
            work = Path(tmp)
            with self._inputs(job.spec, work / "inputs", job.tenant) as request:
                if tracker is not None:
                    tracker.start(request)
                checkpoints = self._config.checkpoints
                if checkpoints is None:
                    outcome = self._harden(request, work / "outputs", reporter)
                else:
                    checkpoints.fetch(job.id)
                    outcome = self._harden(
                        request,
                        work / "outputs",
                        reporter,
                        checkpoint_path=checkpoints.path(job.id),
                        after_checkpoint=functools.partial(checkpoints.push, job.id),
                    )
            outputs = self._store_outputs(outcome)
            if tracker is not None:
                tracker.log_outcome(outcome.report, _tracked_files(outcome))
            return outputs, outcome.report

    @contextlib.contextmanager
    def _inputs(self, spec: JobSpec, folder: Path, tenant: str) -> Iterator[HardeningRequest]:
        """The request, with the inputs linked under names the engine recognises."""
        model = self._catalog.get(spec.model_id, UploadKind.MODEL, tenant)
        model_format = ModelFormat(model.format)
        folder.mkdir(parents=True)
        with contextlib.ExitStack() as stack:
            verified: dict[Path, str] = {}

            def link(sha256: str, name: str) -> Path:
                target = stack.enter_context(self._artifacts.local_path(sha256))
                check_sha256(target, sha256)
                path = folder / name
                path.symlink_to(target)
                verified[path] = sha256
                return path

            model_path = link(model.sha256, "model" + _MODEL_SUFFIX[model_format])
            train = self._catalog.get(spec.train_dataset_id, UploadKind.DATASET, tenant)
            train_path = link(train.sha256, f"train.{train.format}")
            eval_path = None
            if spec.eval_dataset_id:
                evaluation = self._catalog.get(spec.eval_dataset_id, UploadKind.DATASET, tenant)
                eval_path = link(evaluation.sha256, f"eval.{evaluation.format}")
            tokenizer_path = None
            if spec.tokenizer_id:
                tokenizer = self._catalog.get(spec.tokenizer_id, UploadKind.TOKENIZER, tenant)
                tokenizer_path = link(tokenizer.sha256, "tokenizer.json")
            schema_path = None
            if spec.feature_schema_id:
                schema = self._catalog.get(spec.feature_schema_id, UploadKind.SCHEMA, tenant)
                schema_path = link(schema.sha256, "schema.json")
            files = JobFiles(
                model_path,
                model_format,
                train_path,
                eval_path,
                verified,
                tokenizer=tokenizer_path,
                schema=schema_path,
            )
            yield engine_request(
                spec,
                files,
                allow_trusted_formats=self._config.allow_trusted_formats,
                inline_weight_limit=self._config.inline_weight_limit,
            )

    def _store_outputs(self, outcome: HardeningOutcome) -> list[OutputFile]:
        files = (
            (OutputKind.HARDENED_MODEL, outcome.model_path),
            (OutputKind.REPORT, outcome.report_path),
            (OutputKind.MODEL_CARD, outcome.card_path),
            (OutputKind.ROBUSTNESS_PLOT, outcome.plot_path),
            (OutputKind.TOKENIZER, outcome.tokenizer_path),
            (OutputKind.FEATURE_SCHEMA, outcome.schema_path),
        )
        outputs = []
        for kind, path in files:
            if path is None:
                continue
            blob = self._artifacts.put_file(path)
            bundle = kind is OutputKind.HARDENED_MODEL and outcome.model_is_bundle
            outputs.append(OutputFile(kind, blob.sha256, blob.size_bytes, bundle=bundle))
        return outputs


def _each(callbacks: list[Callable[[ProgressEvent], None]]) -> Callable[[ProgressEvent], None]:
    if len(callbacks) == 1:
        return callbacks[0]

    def each(event: ProgressEvent) -> None:
        for callback in callbacks:
            callback(event)

    return each


def _tracked_files(outcome: HardeningOutcome) -> list[Path]:
    return [outcome.report_path, outcome.card_path, outcome.plot_path, outcome.model_path]


def _workers_lost(attempts: int) -> str:
    return (
        f"the job was started {attempts} times and its worker was lost each"
        " time (often: out of memory); try a smaller batch size or model"
    )


def _over_time_limit(limit: float, attempts: int) -> str:
    counted = "1 attempt" if attempts == 1 else f"{attempts} attempts"
    return f"time limit: the job ran over its time limit of {limit:.0f} s, counted over {counted}"


def _unexpected_failure(job_id: str, exc: Exception) -> str:
    """The reason recorded for an exception the engine did not raise on purpose: running out
    of memory is said plainly (it is not retried: the same job would run out again)."""
    if isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError":
        log.warning("job %s ran out of memory: %s", job_id, exc)
        return (
            "the job ran out of memory on its worker; try a smaller batch size or model"
            f" ({type(exc).__name__})"
        )
    log.exception("job %s failed unexpectedly", job_id)
    return (
        f"internal error in the worker ({type(exc).__name__}); the operator's worker"
        f" log has the details under job {job_id}"
    )


def build_runner(settings: Settings, observer: JobObserver | None = None) -> JobRunner:
    """The runner of a worker process, on the stores its settings name."""
    stores = Stores.open(settings)
    return JobRunner(
        stores.jobs,
        stores.uploads,
        stores.artifacts,
        RunnerConfig(
            work_dir=settings.state_dir / "work",
            max_attempts=settings.max_attempts,
            allow_trusted_formats=settings.allow_trusted_formats,
            lease_timeout=settings.lease_timeout,
            heartbeat_interval=settings.heartbeat_interval,
            checkpoints=stores.checkpoints,
            inline_weight_limit=settings.inline_weight_limit,
        ),
        observer=observer,
        tracker_factory=job_tracking(settings.mlflow_tracking_uri),
    )
