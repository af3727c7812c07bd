"""``temper harden --local``: run the hardening engine in this process.

The engine (torch, onnx, matplotlib) is imported, through its one entry point for the client
(:mod:`workers.local`), by :func:`harden_locally` only, so that the client installs and imports
without the worker extra. Engine errors leave as the same
:mod:`client.errors` types the server path raises, so both paths share their exit codes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import shutil
import tempfile
import uuid
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import grpc

from client import convert
from client.bundle import tar_stream, zip_members
from client.domain import (
    HardeningOutcome,
    HardeningParams,
    JobEvent,
    JobSpec,
    JobState,
    MlflowTracking,
    ModelFormat,
    Progress,
)
from client.errors import DeadlineExceeded, InvalidInput, JobFailed, MissingExtra
from client.layout import OutputLayout, relink_plot
from client.model_bundle_out import save_bundle
from client.retry import Deadline
from client.transfer import read_chunks

LOCAL_JOB_ID = "local"
_PROGRESS_FIELDS = tuple(f.name for f in dataclasses.fields(Progress) if f.name != "updated_at")
PROGRESS_INTERVAL_SECONDS = 0.2

MLFLOW_EXTRA_MESSAGE = (
    "--mlflow-uri logs the run to MLflow and needs it: install tempering[mlflow]"
    " (pip install 'tempering[mlflow]')"
)
WORKER_EXTRA_MESSAGE = (
    "--local runs the hardening engine in this process and needs its dependencies:"
    " install tempering[worker] (pip install 'tempering[worker]')"
)


def harden_locally(
    model_path: Path,
    model_format: ModelFormat,
    data_path: Path,
    params: HardeningParams,
    output: Path,
    *,
    eval_data_path: Path | None = None,
    tokenizer_path: Path | None = None,
    schema_path: Path | None = None,
    allow_trusted_formats: bool = False,
    on_event: Callable[[JobEvent], None] | None = None,
    deadline: Deadline | None = None,
    mlflow: LocalTracking | None = None,
) -> HardeningOutcome:
    """Harden in this process; the files land where :class:`OutputLayout` puts them. The run
    stops within a training or attack step once ``deadline`` passes (:class:`DeadlineExceeded`).
    With ``mlflow``, the run is logged there as a server job would be (docs/mlflow.md).
    """
    engine = _engine()
    with _as_tar_bundle(model_path, model_format, output) as model_file:
        return _harden_in_process(
            engine,
            model_file,
            model_format,
            data_path,
            params,
            output,
            eval_data_path=eval_data_path,
            tokenizer_path=tokenizer_path,
            schema_path=schema_path,
            allow_trusted_formats=allow_trusted_formats,
            on_event=on_event,
            deadline=deadline,
            mlflow=mlflow,
        )


@contextlib.contextmanager
def _as_tar_bundle(model_path: Path, model_format: ModelFormat, output: Path) -> Iterator[Path]:
    """A ``.zip`` bundle re-packed as the tar the engine reads (a hidden file beside the
    output, removed after the run); any other model as it is. An ``.onnx`` with external data
    is read in place, beside its data files."""
    if model_format is not ModelFormat.ONNX_BUNDLE or not zipfile.is_zipfile(model_path):
        yield model_path
        return
    output.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(
        prefix=".temper-bundle-", suffix=".tar", dir=output.parent
    ) as handle:
        for chunk in tar_stream(zip_members(model_path)):
            handle.write(chunk)
        handle.flush()
        yield Path(handle.name)


def _harden_in_process(
    engine: ModuleType,
    model_path: Path,
    model_format: ModelFormat,
    data_path: Path,
    params: HardeningParams,
    output: Path,
    *,
    eval_data_path: Path | None,
    tokenizer_path: Path | None,
    schema_path: Path | None,
    allow_trusted_formats: bool,
    on_event: Callable[[JobEvent], None] | None,
    deadline: Deadline | None,
    mlflow: LocalTracking | None,
) -> HardeningOutcome:
    engine_errors = engine.errors

    def forward(event: Any) -> None:
        if on_event is not None:
            progress = Progress(**{name: getattr(event, name) for name in _PROGRESS_FIELDS})
            on_event(JobEvent(job_id=LOCAL_JOB_ID, state=JobState.RUNNING, progress=progress))
        if run is not None:
            run.on_progress(event)

    request = engine_request(
        model_path,
        model_format,
        data_path,
        eval_data_path,
        params,
        tokenizer_path=tokenizer_path,
        schema_path=schema_path,
        allow_trusted_formats=allow_trusted_formats,
    )
    run = _open_run(mlflow, request, engine)
    layout = OutputLayout.beside(output)
    layout.model.parent.mkdir(parents=True, exist_ok=True)
    reporter = engine.progress.Reporter(
        callback=forward,
        time_limit_seconds=params.time_limit_seconds,
        min_interval_seconds=PROGRESS_INTERVAL_SECONDS,
    )
    if deadline is not None:
        reporter.should_stop = deadline.expired
    with tempfile.TemporaryDirectory(prefix=".temper-", dir=layout.model.parent) as work:
        try:
            result = _harden_tracked(
                run,
                lambda: engine.pipeline.harden(request, Path(work), reporter),
                engine_errors.Cancelled,
            )
        except (
            engine_errors.InvalidModel,
            engine_errors.InvalidData,
            engine_errors.InvalidParameter,
            engine_errors.UntrustedFormat,
        ) as error:
            raise InvalidInput(str(error)) from error
        except engine_errors.Cancelled as error:
            if deadline is not None and deadline.expired():
                raise DeadlineExceeded(
                    f"the deadline of {deadline.seconds:g} s passed; the run stopped",
                    grpc.StatusCode.DEADLINE_EXCEEDED,
                ) from error
            raise JobFailed(f"the run stopped: {error}", cancelled=True) from error
        except engine_errors.TemperingError as error:
            raise JobFailed(f"the run failed: {error}") from error
        if result.model_is_bundle:
            model_path = save_bundle(read_chunks(result.model_path), layout.model)
        else:
            model_path = Path(shutil.move(result.model_path, layout.model))
        shutil.move(result.report_path, layout.report)
        shutil.move(result.plot_path, layout.plot)
        layout.card.write_text(relink_plot(result.card_path.read_text(), layout.plot))
        tokenizer = None
        if result.tokenizer_path is not None:
            tokenizer = Path(shutil.move(result.tokenizer_path, layout.tokenizer))
        schema = None
        if result.schema_path is not None:
            schema = Path(shutil.move(result.schema_path, layout.schema))
    return HardeningOutcome(
        model_path=model_path,
        report_path=layout.report,
        card_path=layout.card,
        plot_path=layout.plot,
        report=result.report,
        tokenizer_path=tokenizer,
        schema_path=schema,
    )


@dataclass(frozen=True)
class LocalTracking:
    """Log a ``--local`` run to MLflow at the user's own tracking URI."""

    tracking_uri: str
    tracking: MlflowTracking


def _open_run(mlflow: LocalTracking | None, request: Any, engine: ModuleType) -> Any:
    if mlflow is None:
        return None
    if importlib.util.find_spec("mlflow") is None:
        raise MissingExtra(MLFLOW_EXTRA_MESSAGE)
    tracking = engine.mlflow_tracking
    target = tracking.RunTarget(
        mlflow.tracking_uri,
        mlflow.tracking.experiment,
        job_id=f"local-{uuid.uuid4().hex[:12]}",
        run_name=mlflow.tracking.run_name,
        tenant="local",
    )
    try:
        return tracking.open_run(target, request)
    except tracking.TrackingUnavailable as error:
        raise JobFailed(f"the run did not start: {error}: {error.__cause__}") from error


def _harden_tracked(run: Any, harden: Callable[[], Any], cancelled: type[Exception]) -> Any:
    """The engine's result; with an MLflow ``run``, logged there, the run ended as the engine
    did."""
    if run is None:
        return harden()
    try:
        result = harden()
    except BaseException as error:
        killed = isinstance(error, cancelled) or not isinstance(error, Exception)
        run.end("KILLED" if killed else "FAILED")
        raise
    run.log_outcome(
        result.report, [result.report_path, result.card_path, result.plot_path, result.model_path]
    )
    run.end("FINISHED")
    return result


def engine_request(
    model_path: Path,
    model_format: ModelFormat,
    data_path: Path,
    eval_data_path: Path | None,
    params: HardeningParams,
    *,
    tokenizer_path: Path | None = None,
    schema_path: Path | None = None,
    allow_trusted_formats: bool = False,
) -> Any:
    """The engine's ``HardeningRequest`` for ``params``, made from the message this CLI would
    send a server, by the server's converter and the worker's translation (:mod:`workers.local`):
    what the server refuses is refused here in the same words, and a value left out is the same
    default."""
    engine = _engine()
    message = convert.spec_to_proto(
        JobSpec(
            model_id=LOCAL_JOB_ID,
            train_dataset_id=LOCAL_JOB_ID,
            eval_dataset_id=LOCAL_JOB_ID if eval_data_path is not None else None,
            params=params,
            feature_schema_id=LOCAL_JOB_ID if schema_path is not None else None,
        )
    )
    files = engine.JobFiles(
        model_path,
        engine.spec.ModelFormat(model_format.value),
        data_path,
        eval_data_path,
        tokenizer=tokenizer_path,
        schema=schema_path,
        external_data_beside=True,
    )
    try:
        return engine.engine_request(message, files, allow_trusted_formats=allow_trusted_formats)
    except engine.errors.TemperingError as error:
        raise InvalidInput(str(error)) from error


def _engine() -> ModuleType:
    """The engine's entry point for the client, imported now: only ``--local`` needs torch."""
    try:
        from workers import local
    except ImportError as error:
        raise MissingExtra(f"{WORKER_EXTRA_MESSAGE} ({error})") from error
    return local
