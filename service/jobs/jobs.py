"""The job use cases: submit, look up, list, cancel, watch and download.

This layer decides; the gRPC servicer only converts messages and the Celery task only runs
:class:`workers.runner.JobRunner`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import re
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Protocol

from service.core.admission import stepped_aside
from service.core.domain import (
    DatasetFormat,
    Download,
    Job,
    JobEvent,
    JobPage,
    JobQuery,
    JobSpec,
    JobState,
    NewJob,
    OutputKind,
    Progress,
    UploadKind,
)
from service.core.errors import FailedPrecondition, InvalidRequest, NotFound, Unavailable
from service.core.limits import DEFAULT_MAX_CHARS, MAX_CHARS, MAX_ITEMS, quoted
from service.core.logs import log_context
from service.jobs.job_versions import JobVersionPoller
from service.jobs.quotas import UNLIMITED, QuotaPolicy
from service.jobs.validation import InputCheck, TextInputs, check_job_inputs
from service.store.artifacts import ArtifactStore, verified_chunks
from service.store.catalog import UploadCatalog
from service.store.jobstore import JobStore
from service.webhooks.targets import WEBHOOKS_OFF, WebhookTargets
from workers.engine.errors import InvalidParameter, UntrustedFormat
from workers.engine.spec import ModelFormat

log = logging.getLogger(__name__)

STOP_WAIT_SECONDS = 20.0
"""How long deleting a running job with ``cancel`` waits for its worker to stop."""
LIVENESS_SECONDS = 1.0
"""How often a waiting watch asks whether its caller is still there."""
MIN_POLL_SECONDS = 0.01

MAX_LABELS = MAX_ITEMS["SubmitJobRequest.labels"]
_LABEL_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/-]{0,62}")
MAX_LABEL_VALUE_CHARS = DEFAULT_MAX_CHARS
MAX_IDEMPOTENCY_KEY_CHARS = MAX_CHARS["SubmitJobRequest.idempotency_key"]


class JobQueue(Protocol):
    """Where queued jobs go for a worker to pick up."""

    def enqueue(self, job_id: str) -> None:
        """Raise Unavailable when the broker cannot take the job."""
        ...

    def revoke(self, job_id: str) -> None:
        """Best effort: drop the job's message if no worker has taken it yet."""
        ...


@dataclasses.dataclass(frozen=True)
class JobDeletion:
    """The answer of :meth:`Jobs.delete`."""

    job_id: str
    already_deleted: bool = False
    artifacts_removed: int = 0
    bytes_removed: int = 0


class Jobs:
    def __init__(
        self,
        store: JobStore,
        catalog: UploadCatalog,
        artifacts: ArtifactStore,
        queue: JobQueue,
        *,
        job_time_limit: float,
        allow_trusted_formats: bool,
        watch_poll_seconds: float = 0.25,
        quotas: QuotaPolicy = UNLIMITED,
        mlflow_tracking: bool = False,
        webhooks: WebhookTargets = WEBHOOKS_OFF,
        check_inputs: InputCheck = check_job_inputs,
    ) -> None:
        self._store = store
        self._catalog = catalog
        self._artifacts = artifacts
        self._queue = queue
        self._job_time_limit = job_time_limit
        self._allow_trusted_formats = allow_trusted_formats
        self._watch_poll_seconds = watch_poll_seconds
        self._versions = JobVersionPoller(store.versions, max(watch_poll_seconds, MIN_POLL_SECONDS))
        self._quotas = quotas
        self._mlflow_tracking = mlflow_tracking
        self._webhooks = webhooks
        self._check_job_inputs = check_inputs

    def submit(self, new: NewJob, *, tenant: str) -> Job:
        """Check everything the server can check, record the job for ``tenant`` and queue it.
        Every use case takes the caller's tenant and sees only that tenant's jobs and uploads;
        another tenant's are NotFound, word for word like ids that do not exist."""
        _check_labels(new.labels)
        if new.idempotency_key is not None and len(new.idempotency_key) > MAX_IDEMPOTENCY_KEY_CHARS:
            raise InvalidRequest(
                f"idempotency_key must be at most {MAX_IDEMPOTENCY_KEY_CHARS} characters"
            )
        new = dataclasses.replace(new, spec=self._with_time_limit(new.spec), tenant=tenant)
        if new.idempotency_key and (known := self._store.find_by_key(new.idempotency_key, tenant)):
            return self._store.same_request(known, new)
        if self._quotas.limits_for(tenant).max_queued_jobs:
            self._quotas.check_new_job(tenant, self._store.count_unfinished(tenant))
        new.spec.validate()
        self._check_tracking(new.spec)
        webhook_urls = self._webhooks.for_job(tenant, new.spec.webhook_url)
        self._check_inputs(new.spec, tenant)
        job, created = self._store.create(
            new, admit=self._admission(tenant), webhook_urls=webhook_urls
        )
        if created:
            with log_context(job_id=job.id):
                try:
                    self._queue.enqueue(job.id)
                except Unavailable:
                    self._store.delete(job.id)
                    raise
                log.info("job %s queued (%s)", job.id, new.spec.training.method.value)
        return job

    def close(self) -> None:
        """Stop the watchers' shared poll (open watches then wait out their liveness check)."""
        self._versions.close()

    def requeue_interrupted(self) -> int:
        """Queue again every unfinished job. For a server that owns the only worker, at start-up,
        when nothing can be running: a local broker may have lost the message of a job whose
        worker was killed. Duplicates are harmless, a worker skips finished jobs."""
        job_ids = self._store.requeue_interrupted()
        for job_id in job_ids:
            self._queue.enqueue(job_id)
        return len(job_ids)

    def get(self, job_id: str, *, tenant: str) -> Job:
        return self._store.get(job_id, tenant)

    def list_jobs(self, query: JobQuery, *, tenant: str) -> JobPage:
        return self._store.list_jobs(query, tenant)

    def cancel(self, job_id: str, *, tenant: str) -> Job:
        job = self._store.request_cancel(job_id, tenant)
        if job.state is JobState.CANCELLED:
            self._queue.revoke(job_id)
        return job

    def watch(
        self, job_id: str, is_active: Callable[[], bool], *, tenant: str
    ) -> Iterator[JobEvent]:
        """The job as it is now, then every state change and progress update until it ends.

        Watches share one poll of the job store (:mod:`service.jobs.job_versions`), which works
        the same for every database and for workers on other machines; ``is_active`` is asked
        at least every :data:`LIVENESS_SECONDS`, so a watch whose caller left ends soon after."""
        return self._follow(self._store.get(job_id, tenant), is_active)

    def download(self, job_id: str, kind: OutputKind, *, tenant: str) -> Download:
        job = self._store.get(job_id, tenant)
        if job.state is not JobState.SUCCEEDED:
            raise FailedPrecondition(
                f"job {job_id} is {job.state.value}; its results can be downloaded once it has"
                " SUCCEEDED"
            )
        output = job.output(kind)
        if output is None:
            raise NotFound(f"job {job_id} has no {kind.value} artifact")
        return Download(output, verified_chunks(self._artifacts, output.sha256))

    def delete(
        self,
        job_id: str,
        *,
        tenant: str,
        cancel: bool = False,
        stop_wait_seconds: float = STOP_WAIT_SECONDS,
    ) -> JobDeletion:
        """Delete a finished job of ``tenant`` and the artifacts nothing else refers to. Its
        uploads stay: other jobs may use them. A queued or running job is FailedPrecondition
        unless ``cancel``: then it is cancelled and, once stopped, deleted. Deleting a job the
        tenant deleted before answers ``already_deleted``."""
        try:
            job = self._store.get(job_id, tenant)
        except NotFound:
            job = None
        if job is not None and not job.state.is_terminal:
            if not cancel:
                raise FailedPrecondition(
                    f"job {job_id} is {job.state.value}; cancel it first, or delete it with"
                    " cancel set (temper delete --cancel)"
                )
            self.cancel(job_id, tenant=tenant)
            self._await_stop(job_id, tenant, stop_wait_seconds)
        deleted = self._store.delete_finished(job_id, tenant)
        if deleted.already_deleted:
            return JobDeletion(job_id, already_deleted=True)
        sizes = {output.sha256: output.size_bytes for output in deleted.outputs}
        kept = self._store.referenced_blobs(sizes)
        removed = [
            sha256 for sha256 in sizes if sha256 not in kept and self._artifacts.delete(sha256)
        ]
        with log_context(job_id=job_id):
            log.info(
                "job %s deleted with %d artifact(s); %d kept, shared with other jobs or uploads",
                job_id,
                len(removed),
                len(kept),
            )
        return JobDeletion(
            job_id,
            artifacts_removed=len(removed),
            bytes_removed=sum(sizes[sha256] for sha256 in removed),
        )

    def _await_stop(self, job_id: str, tenant: str, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        with stepped_aside():
            while not self._store.get(job_id, tenant).state.is_terminal:
                if time.monotonic() >= deadline:
                    raise FailedPrecondition(
                        f"job {job_id} was asked to stop and is still running after"
                        f" {seconds:.0f} s; delete it again once it is CANCELLED"
                    )
                time.sleep(self._watch_poll_seconds)

    def _follow(self, job: Job, is_active: Callable[[], bool]) -> Iterator[JobEvent]:
        """When one poll finds both a new state and new progress, a running state comes before
        the progress it explains and a final one after the last progress."""
        yield JobEvent(job)
        sent_state, sent_progress, seen_version = job.state, job.progress, job.version
        said = job.progress.last_said if job.progress is not None else 0
        while not sent_state.is_terminal and is_active():
            if not self._versions.wait_for_change(job.id, seen_version, LIVENESS_SECONDS):
                continue
            job = self._store.get(job.id)
            if job.version == seen_version:
                continue
            seen_version = job.version
            if job.state is not sent_state and not job.state.is_terminal:
                sent_state = job.state
                yield JobEvent(job)
            elif _started_between_polls(sent_state, job):
                yield JobEvent(_as_running(job))
            if job.progress is not None and job.progress != sent_progress:
                running = job if job.state is sent_state else _as_running(job)
                yield from _missed_messages(running, said)
                sent_progress, said = job.progress, job.progress.last_said
                yield JobEvent(running, progress=job.progress)
            if job.state is not sent_state:
                sent_state = job.state
                yield JobEvent(job)

    def _admission(self, tenant: str) -> Callable[[int], None] | None:
        """The queued-jobs check that the store runs atomically with recording the job."""
        if not self._quotas.limits_for(tenant).max_queued_jobs:
            return None
        return lambda unfinished: self._quotas.check_new_job(tenant, unfinished)

    def _with_time_limit(self, spec: JobSpec) -> JobSpec:
        requested = spec.time_limit_seconds
        limit = self._job_time_limit
        effective = min(requested, limit) if requested > 0 else limit
        return dataclasses.replace(spec, time_limit_seconds=float(effective))

    def _check_tracking(self, spec: JobSpec) -> None:
        if spec.mlflow is not None and not self._mlflow_tracking:
            raise FailedPrecondition(
                "this job asks for MLflow tracking and this server has no tracking server:"
                " its operator sets TEMPERING_MLFLOW_TRACKING_URI (see docs/mlflow.md)"
            )

    def _check_inputs(self, spec: JobSpec, tenant: str) -> None:
        model = self._catalog.get(spec.model_id, UploadKind.MODEL, tenant)
        datasets = [self._catalog.get(spec.train_dataset_id, UploadKind.DATASET, tenant)]
        if spec.eval_dataset_id:
            datasets.append(self._catalog.get(spec.eval_dataset_id, UploadKind.DATASET, tenant))
        model_format = ModelFormat(model.format)
        if model_format.is_program and not self._allow_trusted_formats:
            raise UntrustedFormat(
                f"model {model.id} is {model_format.value}, a program, and this server runs"
                " programs only when its operator turns trusted formats on; upload ONNX instead"
            )
        if model_format is ModelFormat.SAFETENSORS and not spec.architecture:
            raise InvalidParameter(
                "safetensors holds weights only: set spec.architecture to the built-in"
                " architecture they belong to"
            )
        tokenizer = (
            self._catalog.get(spec.tokenizer_id, UploadKind.TOKENIZER, tenant)
            if spec.tokenizer_id
            else None
        )
        schema = (
            self._catalog.get(spec.feature_schema_id, UploadKind.SCHEMA, tenant)
            if spec.feature_schema_id
            else None
        )
        text_data = any(DatasetFormat(d.format).is_text for d in datasets)
        if schema is not None and (tokenizer is not None or text_data):
            raise InvalidRequest(
                "a feature schema describes rows of features (.npz); a text job names a tokenizer"
                " and texts instead: leave one of them out"
            )
        with contextlib.ExitStack() as stack:
            model_path = stack.enter_context(self._artifacts.local_path(model.sha256))
            dataset_paths = [
                stack.enter_context(self._artifacts.local_path(d.sha256)) for d in datasets
            ]
            contents = [model.sha256, *(d.sha256 for d in datasets)]
            if tokenizer is None and not text_data:
                if schema is None:
                    self._check_job_inputs(
                        model_format,
                        model_path,
                        dataset_paths,
                        spec.threat,
                        tenant=tenant,
                        contents=contents,
                    )
                    return
                schema_path = stack.enter_context(self._artifacts.local_path(schema.sha256))
                self._check_job_inputs(
                    model_format,
                    model_path,
                    dataset_paths,
                    spec.threat,
                    tenant=tenant,
                    schema=schema_path,
                    contents=[*contents, schema.sha256],
                )
                return
            text = TextInputs(
                tokenizer=(
                    stack.enter_context(self._artifacts.local_path(tokenizer.sha256))
                    if tokenizer is not None
                    else None
                ),
                formats=tuple(d.format for d in datasets),
                max_length=spec.text_threat.max_length if spec.text_threat else None,
            )
            self._check_job_inputs(
                model_format,
                model_path,
                dataset_paths,
                spec.threat,
                tenant=tenant,
                text=text,
                contents=[*contents, *([tokenizer.sha256] if tokenizer is not None else [])],
            )


def _started_between_polls(sent_state: JobState, job: Job) -> bool:
    """A job can start and finish between two polls; the watcher still gets its RUNNING."""
    return sent_state is JobState.QUEUED and job.state.is_terminal and job.started_at is not None


def _as_running(job: Job) -> Job:
    return dataclasses.replace(
        job, state=JobState.RUNNING, finished_at=None, reason="", outputs=(), result=None
    )


def _check_labels(labels: Mapping[str, str]) -> None:
    if len(labels) > MAX_LABELS:
        raise InvalidRequest(f"a job carries at most {MAX_LABELS} labels, got {len(labels)}")
    for key, value in labels.items():
        if not _LABEL_KEY.fullmatch(key):
            raise InvalidRequest(
                f"label key {quoted(key)} must be 1-63 letters, digits or . _ / - and start with a"
                " letter or digit"
            )
        if len(value) > MAX_LABEL_VALUE_CHARS:
            raise InvalidRequest(
                f"label {quoted(key)} has a value longer than {MAX_LABEL_VALUE_CHARS} characters"
            )


def _missed_messages(job: Job, said: int) -> Iterator[JobEvent]:
    """The messages recorded since message ``said`` that a newer one overwrote in the store
    before this watcher polled it (the evaluation's quick per-attack lines), as events."""
    assert job.progress is not None
    stamp = job.progress.updated_at
    for missed in job.progress.missed_since(said):
        progress = Progress(
            stage=missed.stage,
            epoch=missed.epoch,
            epochs=missed.epochs,
            step=missed.step,
            steps=missed.steps,
            loss=missed.loss,
            clean_accuracy=missed.clean_accuracy,
            robust_accuracy=missed.robust_accuracy,
            eta_seconds=missed.eta_seconds,
            message=missed.message,
            updated_at=stamp,
        )
        yield JobEvent(job, progress=progress)
