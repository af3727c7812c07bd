"""Logging a hardening run to MLflow: its parameters, per-epoch metrics, scores and files.

Optional (the ``mlflow`` extra): mlflow is imported when a run opens, so a worker without it
runs every job that does not ask for MLflow, and fails one that does with a reason saying what
to install. Opening the run talks to the tracking server, so an unreachable server fails the
job before training; once the run is open, a logging error is a warning and the job goes on.

A job's run carries the tag ``tempering.job_id``; a later attempt of the same job (its worker
was lost) finds the run by that tag and continues it instead of opening a second one.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from workers.engine.errors import TemperingError
from workers.engine.files import sha256_file
from workers.engine.progress import ProgressEvent
from workers.engine.spec import HardeningRequest, Method

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

    from service.core.domain import Job, JobState

log = logging.getLogger(__name__)

MISSING_EXTRA = "this job asks for MLflow tracking: install tempering[mlflow] on the workers"
NO_TRACKING_URI = (
    "this job asks for MLflow tracking and this worker has no tracking server: its operator"
    " sets TEMPERING_MLFLOW_TRACKING_URI"
)
JOB_ID_TAG = "tempering.job_id"
_TRAINING_STAGES = {"training": "", "teacher": "teacher_"}
_RUN_STATUS = {"SUCCEEDED": "FINISHED", "CANCELLED": "KILLED"}
_METRIC_NAME_UNSAFE = re.compile(r"[^A-Za-z0-9_\-. /]")


class TrackingUnavailable(TemperingError):
    """MLflow tracking cannot start: the extra is missing or the server did not answer."""


@dataclass(frozen=True)
class RunTarget:
    """Where a run goes and which job it belongs to."""

    tracking_uri: str
    experiment: str
    job_id: str
    run_name: str = ""
    """Empty: the job id."""
    tenant: str = ""
    attempt: int = 1


class TrackedRun:
    """An open MLflow run; every method logs a warning instead of raising."""

    def __init__(self, client: MlflowClient, run_id: str, job_id: str) -> None:
        self._client = client
        self.run_id = run_id
        self._job_id = job_id
        self._epochs_broken = False

    def on_progress(self, event: ProgressEvent) -> None:
        """Log an epoch's training loss and validation accuracies, with step = epoch. After one
        failure, epochs are no longer logged (a dead server would stall every epoch)."""
        prefix = _TRAINING_STAGES.get(event.stage)
        if prefix is None or self._epochs_broken or not _is_epoch_end(event):
            return
        values = {
            "train_loss": event.loss,
            "val_clean_accuracy": event.clean_accuracy,
            "val_robust_accuracy": event.robust_accuracy,
        }
        metrics = {prefix + name: value for name, value in values.items() if value is not None}
        if not self._log_metrics(metrics, step=event.epoch, what=f"epoch {event.epoch}"):
            self._epochs_broken = True

    def log_outcome(self, report: Mapping[str, Any], files: Iterable[Path]) -> None:
        """The headline scores of the report, the training configuration that ran, then the
        files (report, card, plot, model)."""
        self._log_metrics(headline_metrics(report), step=0, what="the scores")
        self._log_resolved(report)
        for path in files:
            try:
                self._client.log_artifact(self.run_id, str(path))
            except Exception:
                log.warning(
                    "job %s: could not log %s to MLflow", self._job_id, path.name, exc_info=True
                )

    def _log_resolved(self, report: Mapping[str, Any]) -> None:
        """``resolved.*`` params: what the recipe chose where the request said "auto". MLflow
        params cannot change once logged, hence names of their own."""
        try:
            _log_new_params(self._client, self.run_id, resolved_params(report))
        except Exception:
            log.warning(
                "job %s: could not log the resolved training configuration to MLflow",
                self._job_id,
                exc_info=True,
            )

    def end(self, status: str) -> None:
        """``status``: FINISHED, FAILED or KILLED."""
        try:
            self._client.set_terminated(self.run_id, status)
        except Exception:
            log.warning("job %s: could not end its MLflow run", self._job_id, exc_info=True)

    def _log_metrics(self, metrics: Mapping[str, float], *, step: int, what: str) -> bool:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        batch = [Metric(key, float(value), now, step) for key, value in metrics.items()]
        try:
            self._client.log_batch(self.run_id, metrics=batch)
        except Exception:
            log.warning("job %s: could not log %s to MLflow", self._job_id, what, exc_info=True)
            return False
        return True


_LOGGERS_MLFLOW_CONFIGURES = ("mlflow", "sqlalchemy.engine", "alembic", "huey")


def mlflow_client_class() -> type[MlflowClient]:
    """``MlflowClient``, imported so that logging stays as it was. On import mlflow gives four
    loggers a text handler of its own and stops them propagating, which would take their lines
    out of our handlers (JSON with the job id and tenant, :mod:`service.core.logs`)."""
    loggers = [logging.getLogger(name) for name in _LOGGERS_MLFLOW_CONFIGURES]
    saved = [(logger.handlers[:], logger.level, logger.propagate) for logger in loggers]
    try:
        from mlflow.tracking import MlflowClient
    finally:
        for logger, (handlers, level, propagate) in zip(loggers, saved, strict=True):
            logger.handlers, logger.propagate = handlers, propagate
            logger.setLevel(level)
    return MlflowClient


def open_run(target: RunTarget, request: HardeningRequest) -> TrackedRun:
    """Open (or, for a later attempt, reopen) the job's run and log its parameters. Raises
    :class:`TrackingUnavailable` when mlflow is missing or the server cannot be used."""
    try:
        client_class = mlflow_client_class()
    except ImportError as exc:
        raise TrackingUnavailable(MISSING_EXTRA) from exc
    try:
        client = client_class(tracking_uri=target.tracking_uri)
        experiment_id = _experiment_id(client, target.experiment)
        run_id = _run_id(client, experiment_id, target)
        _log_new_params(client, run_id, run_params(request))
    except TrackingUnavailable:
        raise
    except Exception as exc:
        log.warning(
            "job %s: MLflow tracking at %s failed to start",
            target.job_id,
            target.tracking_uri,
            exc_info=True,
        )
        raise TrackingUnavailable(
            f"could not start MLflow tracking at {_public_address(target.tracking_uri)}"
            f" ({type(exc).__name__})"
        ) from exc
    return TrackedRun(client, run_id, target.job_id)


AUTO = "auto"
"""The logged value of a parameter the request left to the recipe (None)."""
RESOLVED_PREFIX = "resolved."
RESOLVED_FIELDS = ("epochs", "batch_size", "learning_rate", "validation_size")
"""Fields of the report's ``training.config`` logged as ``resolved.*`` when the job ends, with
``eps_warmup_epochs`` for the adversarial methods."""


def run_params(request: HardeningRequest) -> dict[str, str]:
    """The parameters of the run: the job's request, with the method's own settings only; a
    parameter left to the recipe is logged as "auto" (the ``resolved.*`` params logged at the
    end hold what it chose)."""
    training, threat = request.training, request.threat
    params: dict[str, Any] = {
        "method": training.method.value,
        "epsilon": threat.eps,
        "norm": threat.norm.value,
        "epochs": training.epochs,
        "batch_size": training.batch_size,
        "learning_rate": training.learning_rate,
        "validation_size": training.validation_size,
        "seed": request.seed,
        "suite": request.evaluation.suite.value,
        "eval_samples": request.evaluation.samples,
        "model_sha256": sha256_file(request.model.path),
        "train_data_sha256": sha256_file(request.train_data),
    }
    if request.eval_data is not None:
        params["eval_data_sha256"] = sha256_file(request.eval_data)
    if training.method is Method.DISTILLATION:
        params["temperature"] = training.temperature
        teacher_epochs = training.teacher_epochs
        params["teacher_epochs"] = training.epochs if teacher_epochs is None else teacher_epochs
    else:
        params["attack_steps"] = 1 if training.method is Method.FGSM else training.attack_steps
        params["step_size"] = training.step_size
        params["eps_warmup_epochs"] = training.eps_warmup_epochs
    if training.method is Method.TRADES:
        params["trades_beta"] = training.trades_beta
    return {name: _param_value(value) for name, value in params.items()}


def resolved_params(report: Mapping[str, Any]) -> dict[str, str]:
    """The concrete values of the report's ``training.config`` (what ran) for the parameters the
    recipe may choose, as ``resolved.<name>``; empty for a report without one (older engine)."""
    config: Mapping[str, Any] = report.get("training", {}).get("config") or {}
    names: tuple[str, ...] = RESOLVED_FIELDS
    if config.get("method", Method.DISTILLATION.value) != Method.DISTILLATION.value:
        names += ("eps_warmup_epochs",)
    return {RESOLVED_PREFIX + name: _param_value(config[name]) for name in names if name in config}


def _param_value(value: Any) -> str:
    return AUTO if value is None else str(value)


def headline_metrics(report: Mapping[str, Any]) -> dict[str, float]:
    """Clean and worst-case robust accuracy of both models with their 95% intervals, and the
    robust accuracy under each attack of the suite."""
    metrics: dict[str, float] = {}
    for model in ("original", "hardened"):
        scores = report[model]
        for score in ("clean_accuracy", "robust_accuracy"):
            interval = scores[score]
            metrics[f"{model}_{score}"] = interval["value"]
            metrics[f"{model}_{score}_low"] = interval["low"]
            metrics[f"{model}_{score}_high"] = interval["high"]
        for attack in scores["attacks"]:
            name = _METRIC_NAME_UNSAFE.sub("_", attack["name"])
            metrics[f"{model}_robust_accuracy_{name}"] = attack["robust_accuracy"]["value"]
    return metrics


class JobTracking:
    """One job's MLflow run as the service's :class:`~workers.runner.JobRunner` drives it:
    opened once the job's inputs are resolved, fed every progress event, ended with the job."""

    def __init__(self, tracking_uri: str | None, job: Job) -> None:
        self._tracking_uri = tracking_uri
        self._job = job
        self._run: TrackedRun | None = None

    def start(self, request: HardeningRequest) -> None:
        if not self._tracking_uri:
            raise TrackingUnavailable(NO_TRACKING_URI)
        tracking = self._job.spec.mlflow
        assert tracking is not None
        target = RunTarget(
            tracking_uri=self._tracking_uri,
            experiment=tracking.experiment,
            job_id=self._job.id,
            run_name=tracking.run_name,
            tenant=self._job.tenant,
            attempt=self._job.attempts,
        )
        try:
            self._run = open_run(target, request)
        except TrackingUnavailable as exc:
            if str(exc) == MISSING_EXTRA:
                raise
            raise TrackingUnavailable(
                f"{exc}; the job stopped before training. Check that the tracking server of"
                " TEMPERING_MLFLOW_TRACKING_URI is up; the worker log has the details"
            ) from exc

    def on_progress(self, event: ProgressEvent) -> None:
        if self._run is not None:
            self._run.on_progress(event)

    def log_outcome(self, report: Mapping[str, Any], files: Iterable[Path]) -> None:
        if self._run is not None:
            self._run.log_outcome(report, files)

    def end(self, state: JobState) -> None:
        if self._run is not None:
            self._run.end(_RUN_STATUS.get(state.value, "FAILED"))


def job_tracking(tracking_uri: str | None) -> Callable[[Job], JobTracking | None]:
    """The runner's tracker factory: tracking for the jobs that ask for it, None for the rest."""

    def track(job: Job) -> JobTracking | None:
        return JobTracking(tracking_uri, job) if job.spec.mlflow is not None else None

    return track


def _is_epoch_end(event: ProgressEvent) -> bool:
    return event.epoch > 0 and event.steps == 0


def _experiment_id(client: MlflowClient, name: str) -> str:
    from mlflow.exceptions import MlflowException

    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        try:
            return client.create_experiment(name)
        except MlflowException:
            experiment = client.get_experiment_by_name(name)
            if experiment is None:
                raise
    if experiment.lifecycle_stage != "active":
        raise TrackingUnavailable(
            f"MLflow experiment {name!r} was deleted; restore it or choose another experiment"
        )
    return str(experiment.experiment_id)


def _run_id(client: MlflowClient, experiment_id: str, target: RunTarget) -> str:
    tags = {
        JOB_ID_TAG: target.job_id,
        "tempering.tenant": target.tenant,
        "tempering.attempt": str(target.attempt),
    }
    earlier = client.search_runs(
        [experiment_id], filter_string=f"tags.`{JOB_ID_TAG}` = '{target.job_id}'", max_results=1
    )
    if not earlier:
        run = client.create_run(experiment_id, run_name=target.run_name or target.job_id, tags=tags)
        return str(run.info.run_id)
    run_id = str(earlier[0].info.run_id)
    client.update_run(run_id, status="RUNNING")
    client.set_tag(run_id, "tempering.attempt", str(target.attempt))
    return run_id


def _log_new_params(client: MlflowClient, run_id: str, params: Mapping[str, str]) -> None:
    """Log the parameters the run does not have yet (a reopened run has them all)."""
    from mlflow.entities import Param

    known = client.get_run(run_id).data.params
    new = [Param(name, value) for name, value in params.items() if name not in known]
    if new:
        client.log_batch(run_id, params=new)


def _public_address(uri: str) -> str:
    """The URI without credentials, path or query: enough to tell which server it was."""
    parts = urlsplit(uri)
    if parts.scheme in ("http", "https"):
        host = parts.hostname or ""
        return f"{parts.scheme}://{host}" + (f":{parts.port}" if parts.port else "")
    return f"a {parts.scheme or 'file'} store"
