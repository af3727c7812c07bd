"""Protobuf messages to domain types and back. The only module besides the servicer that sees
protobuf; missing or malformed fields become :class:`~service.core.errors.InvalidRequest`."""

from __future__ import annotations

import base64
import binascii
import math
import threading
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime
from typing import Any, TypeVar

from google.protobuf.timestamp_pb2 import Timestamp
from tempering.v1 import hardening_pb2 as pb

from service.api.request_bounds import check_request
from service.core.domain import (
    SCHEMA_FORMAT,
    TOKENIZER_FORMAT,
    DatasetFormat,
    Download,
    Job,
    JobEvent,
    JobPage,
    JobQuery,
    JobSpec,
    JobState,
    MlflowTracking,
    NewJob,
    OutputFile,
    OutputKind,
    Progress,
    ResultSummary,
    UploadHeader,
    UploadKind,
    UploadResult,
)
from service.core.errors import InvalidRequest
from service.core.limits import MAX_PAGE_BYTES, MAX_PAGE_SIZE
from service.jobs.jobs import JobDeletion
from workers.engine.errors import InvalidParameter
from workers.engine.spec import (
    EvaluationConfig,
    EvaluationSuite,
    Method,
    ModelFormat,
    Norm,
    TextThreatModel,
    ThreatModel,
    TrainingConfig,
)

DEFAULT_PAGE_SIZE = 50

_MODEL_FORMATS = {
    pb.MODEL_FORMAT_ONNX: ModelFormat.ONNX,
    pb.MODEL_FORMAT_SAFETENSORS: ModelFormat.SAFETENSORS,
    pb.MODEL_FORMAT_TORCHSCRIPT: ModelFormat.TORCHSCRIPT,
    pb.MODEL_FORMAT_TORCH_EXPORT: ModelFormat.TORCH_EXPORT,
    pb.MODEL_FORMAT_ONNX_BUNDLE: ModelFormat.ONNX_BUNDLE,
}
_DATASET_FORMATS = {
    pb.DATASET_FORMAT_NPZ: DatasetFormat.NPZ,
    pb.DATASET_FORMAT_JSONL: DatasetFormat.JSONL,
    pb.DATASET_FORMAT_CSV: DatasetFormat.CSV,
}
_NORMS = {pb.NORM_UNSPECIFIED: Norm.LINF, pb.NORM_LINF: Norm.LINF, pb.NORM_L2: Norm.L2}
_SUITES = {
    pb.EVALUATION_SUITE_UNSPECIFIED: EvaluationSuite.STANDARD,
    pb.EVALUATION_SUITE_STANDARD: EvaluationSuite.STANDARD,
    pb.EVALUATION_SUITE_FAST: EvaluationSuite.FAST,
}
_STATES = {
    JobState.QUEUED: pb.JOB_STATE_QUEUED,
    JobState.RUNNING: pb.JOB_STATE_RUNNING,
    JobState.SUCCEEDED: pb.JOB_STATE_SUCCEEDED,
    JobState.FAILED: pb.JOB_STATE_FAILED,
    JobState.CANCELLED: pb.JOB_STATE_CANCELLED,
}
_KINDS = {
    OutputKind.HARDENED_MODEL: pb.ARTIFACT_KIND_HARDENED_MODEL,
    OutputKind.REPORT: pb.ARTIFACT_KIND_REPORT,
    OutputKind.MODEL_CARD: pb.ARTIFACT_KIND_MODEL_CARD,
    OutputKind.ROBUSTNESS_PLOT: pb.ARTIFACT_KIND_ROBUSTNESS_PLOT,
    OutputKind.TOKENIZER: pb.ARTIFACT_KIND_TOKENIZER,
    OutputKind.FEATURE_SCHEMA: pb.ARTIFACT_KIND_FEATURE_SCHEMA,
}

K = TypeVar("K")
V = TypeVar("V")


def _invert(table: Mapping[K, V]) -> dict[V, K]:
    """Later entries win, so the explicit value beats UNSPECIFIED for the same default."""
    return {v: k for k, v in table.items()}


_NORMS_TO_PB = _invert(_NORMS)
_SUITES_TO_PB = _invert(_SUITES)
_STATES_FROM_PB: dict[int, JobState] = _invert(_STATES)
_KINDS_FROM_PB: dict[int, OutputKind] = _invert(_KINDS)


def _lookup(table: Mapping[K, V], key: K, field: str, choices: str) -> V:
    try:
        return table[key]
    except KeyError:
        raise InvalidRequest(f"{field} must be one of {choices}") from None


def required(value: str, field: str) -> str:
    if not value:
        raise InvalidRequest(f"{field} is required")
    return value


def job_id(
    request: pb.GetJobRequest | pb.CancelJobRequest | pb.WatchJobRequest | pb.DeleteJobRequest,
) -> str:
    check_request(request)
    return required(request.job_id, "job_id")


def deletion_to_pb(deletion: JobDeletion) -> pb.DeleteJobResponse:
    return pb.DeleteJobResponse(
        job_id=deletion.job_id,
        already_deleted=deletion.already_deleted,
        artifacts_removed=deletion.artifacts_removed,
        bytes_removed=deletion.bytes_removed,
    )


def download_request(request: pb.DownloadArtifactRequest) -> tuple[str, OutputKind]:
    check_request(request)
    return required(request.job_id, "job_id"), output_kind(request.kind)


# --- uploads ----------------------------------------------------------------------------------


def model_upload(
    requests: Iterator[pb.UploadModelRequest],
) -> tuple[UploadHeader, Iterator[bytes]]:
    first = _first_header(requests)
    fmt = _lookup(
        _MODEL_FORMATS,
        first.header.format,
        "header.format",
        "onnx, onnx_bundle, safetensors, torchscript or torch_export",
    )
    return _header(UploadKind.MODEL, fmt.value, first.header), _chunks(requests)


def dataset_upload(
    requests: Iterator[pb.UploadDatasetRequest],
) -> tuple[UploadHeader, Iterator[bytes]]:
    first = _first_header(requests)
    fmt = _lookup(_DATASET_FORMATS, first.header.format, "header.format", "npz, jsonl or csv")
    return _header(UploadKind.DATASET, fmt.value, first.header), _chunks(requests)


def tokenizer_upload(
    requests: Iterator[pb.UploadTokenizerRequest],
) -> tuple[UploadHeader, Iterator[bytes]]:
    first = _first_header(requests)
    return _header(UploadKind.TOKENIZER, TOKENIZER_FORMAT, first.header), _chunks(requests)


def schema_upload(
    requests: Iterator[pb.UploadSchemaRequest],
) -> tuple[UploadHeader, Iterator[bytes]]:
    first = _first_header(requests)
    return _header(UploadKind.SCHEMA, SCHEMA_FORMAT, first.header), _chunks(requests)


def _first_header(requests: Iterator[Any]) -> Any:
    first = next(requests, None)
    if first is None or first.WhichOneof("payload") != "header":
        raise InvalidRequest("an upload stream must start with a header message, then chunks")
    check_request(first)
    return first


def _header(kind: UploadKind, fmt: str, header: Any) -> UploadHeader:
    return UploadHeader(
        kind=kind,
        format=fmt,
        size_bytes=header.size_bytes,
        sha256=header.sha256.strip().lower(),
        name=header.name,
    )


def _chunks(requests: Iterable[Any]) -> Iterator[bytes]:
    for request in requests:
        if request.WhichOneof("payload") != "chunk":
            raise InvalidRequest("an upload stream carries one header, then only chunks")
        yield request.chunk


def upload_response(result: UploadResult) -> pb.UploadResponse:
    artifact = result.artifact
    return pb.UploadResponse(
        artifact_id=artifact.id,
        sha256=artifact.sha256,
        size_bytes=artifact.size_bytes,
        already_present=result.already_present,
    )


# --- job specs --------------------------------------------------------------------------------


def new_job(request: pb.SubmitJobRequest) -> NewJob:
    check_request(request)
    if not request.HasField("spec"):
        raise InvalidRequest(
            "spec is required: the job's JobSpec (model_id, train_dataset_id, training with a"
            " method, threat_model with epsilon)"
        )
    return NewJob(
        spec=job_spec(request.spec),
        labels=dict(request.labels),
        idempotency_key=request.idempotency_key or None,
    )


def job_spec(spec: pb.JobSpec) -> JobSpec:
    """A spec with a tokenizer or a text threat model is a text job: its ``threat_model`` is
    not read, and an unset ``text_threat_model`` takes the engine's defaults. With a feature
    schema, the schema's ranges are the domain: ``threat_model.lower``/``upper`` are not read and
    ``epsilon`` (a feature's budget when its entry sets none) is not held to their width."""
    text = spec.HasField("text_threat_model") or bool(spec.tokenizer_id)
    schema = bool(spec.feature_schema_id)
    return JobSpec(
        model_id=required(spec.model_id, "spec.model_id"),
        train_dataset_id=required(spec.train_dataset_id, "spec.train_dataset_id"),
        eval_dataset_id=spec.eval_dataset_id or None,
        training=_training(spec.training),
        threat=ThreatModel() if text else _threat(spec.threat_model, schema=schema),
        text_threat=_text_threat(spec.text_threat_model) if text else None,
        tokenizer_id=spec.tokenizer_id or None,
        feature_schema_id=spec.feature_schema_id or None,
        evaluation=_evaluation(spec.evaluation),
        seed=spec.seed,
        time_limit_seconds=_time_limit(spec.time_limit_seconds),
        architecture=spec.architecture,
        num_classes=spec.num_classes,
        webhook_url=spec.webhook_url,
        mlflow=(
            MlflowTracking(experiment=spec.mlflow.experiment, run_name=spec.mlflow.run_name)
            if spec.HasField("mlflow")
            else None
        ),
    )


def _training(training: pb.Training) -> TrainingConfig:
    method = training.WhichOneof("method")
    if method is None:
        raise InvalidRequest(
            "spec.training needs a method: set one of distillation, pgd, fgsm or trades"
        )
    default = TrainingConfig()
    values: dict[str, Any] = {
        "method": Method(method),
        "epochs": _recipe_unless_set(training, "epochs"),
        "batch_size": _recipe_unless_set(training, "batch_size"),
        "learning_rate": _above_zero(
            training, "learning_rate", "spec.training.learning_rate", "the recipe's rate"
        ),
        "from_scratch": training.from_scratch,
        "select_best_robust": _given(training, "select_best_robust", default.select_best_robust),
        "validation_size": _recipe_unless_set(training, "validation_size"),
    }
    if method == "distillation":
        d = training.distillation
        values |= {
            "temperature": _given(d, "temperature", default.temperature),
            "hard_label_weight": d.hard_label_weight,
            "teacher_epochs": _above_zero(
                d,
                "teacher_epochs",
                "spec.training.distillation.teacher_epochs",
                "as many as spec.training.epochs",
            ),
        }
    elif method == "trades":
        t = training.trades
        values |= {
            "attack_steps": _recipe_unless_set(t, "attack_steps"),
            "step_size": _above_zero(
                t, "step_size", "spec.training.trades.step_size", "2.5 * epsilon / attack_steps"
            ),
            "eps_warmup_epochs": _recipe_unless_set(t, "eps_warmup_epochs"),
            "trades_beta": _given(t, "beta", default.trades_beta),
        }
    elif method == "pgd":
        p = training.pgd
        values |= {
            "attack_steps": _recipe_unless_set(p, "attack_steps"),
            "step_size": _above_zero(
                p, "step_size", "spec.training.pgd.step_size", "2.5 * epsilon / attack_steps"
            ),
            "eps_warmup_epochs": _recipe_unless_set(p, "eps_warmup_epochs"),
        }
    else:
        f = training.fgsm
        values |= {
            "step_size": _above_zero(
                f, "step_size", "spec.training.fgsm.step_size", "1.25 * epsilon"
            ),
            "eps_warmup_epochs": _recipe_unless_set(f, "eps_warmup_epochs"),
        }
    return TrainingConfig(**values)


def _recipe_unless_set(message: Any, name: str) -> Any:
    """A field the engine's recipe derives from the data when it is None: the value the client
    set (0 included, for the engine's checks to accept or refuse), else None."""
    return getattr(message, name) if message.HasField(name) else None


def _given(message: Any, name: str, default: V) -> V:
    """An optional field's value when the client set it (the engine's checks then see it as
    sent, 0 included), else the engine's default."""
    value: V = getattr(message, name) if message.HasField(name) else default
    return value


def _above_zero(message: Any, name: str, field: str, unset: str) -> Any:
    """A field whose default is the engine's (None) and whose set value must be above 0: an
    explicit 0 is refused here, naming the field and what leaving it unset gives, so that
    nobody takes 0 for "the default"."""
    if not message.HasField(name):
        return None
    value = getattr(message, name)
    if not value > 0:
        raise InvalidRequest(
            f"{field} must be greater than 0 when set (leave it unset for {unset}), got {value}"
        )
    return value


def _threat(threat: pb.ThreatModel, *, schema: bool = False) -> ThreatModel:
    if not threat.epsilon > 0:
        raise InvalidRequest(
            "spec.threat_model.epsilon is required: the attacker's budget in input units (> 0)"
            + (f", got {threat.epsilon}" if threat.epsilon else "")
        )
    if not _in_float32(threat.epsilon):
        raise InvalidRequest(
            f"spec.threat_model.epsilon must be a finite float32 number (at most"
            f" {FLOAT32_MAX:.4g}), got {threat.epsilon:.4g}"
        )
    lower, upper = tuple(threat.lower) or (0.0,), tuple(threat.upper) or (1.0,)
    if not all(_in_float32(bound) for bound in (*lower, *upper)):
        raise InvalidRequest(
            "spec.threat_model.lower and .upper must be finite float32 numbers"
            f" (at most {FLOAT32_MAX:.4g} in magnitude)"
        )
    norm = _lookup(_NORMS, threat.norm, "spec.threat_model.norm", "linf or l2")
    if schema:
        return ThreatModel(norm=norm, eps=threat.epsilon)
    _check_ball_inside_domain(norm, threat.epsilon, lower, upper)
    return ThreatModel(norm=norm, eps=threat.epsilon, lower=lower, upper=upper)


def _text_threat(threat: pb.TextThreatModel) -> TextThreatModel:
    default = TextThreatModel()
    text = TextThreatModel(
        word_share=_given(threat, "word_share", default.word_share),
        char_share=_given(threat, "char_share", default.char_share),
        embedding_eps=_given(threat, "embedding_eps", default.embedding_eps),
        max_length=_given(threat, "max_length", default.max_length),
    )
    try:
        text.validate()
    except InvalidParameter as error:
        raise InvalidRequest(f"spec.text_threat_model: {error}") from error
    return text


FLOAT32_MAX = 3.4028234663852886e38
"""The largest finite float32: the engine computes in float32."""


def _in_float32(value: float) -> bool:
    return math.isfinite(value) and abs(value) <= FLOAT32_MAX


def _check_ball_inside_domain(
    norm: Norm, eps: float, lower: tuple[float, ...], upper: tuple[float, ...]
) -> None:
    """An L-inf ball at least as wide as every coordinate's range reaches every input from any
    other: no model can be robust to it, and a job would spend hours to report 0%. (For L2 the
    same bound needs the number of features, which the data check knows.)"""
    if norm is not Norm.LINF or len(lower) != len(upper):
        return
    width = max(hi - lo for lo, hi in zip(lower, upper, strict=True))
    if width > 0 and eps >= width:
        raise InvalidRequest(
            f"spec.threat_model.epsilon {eps:g} is at least the width of the input domain"
            f" ({width:g} = upper - lower): an L-inf ball that large lets the attacker turn any"
            " input into any other, so no model can be robust to it; choose an epsilon well"
            f" below {width:g} (for images in [0, 1], 8/255 = 0.031 is usual), or check that"
            " spec.threat_model.lower and .upper are the input's real range"
        )


def _time_limit(value: float) -> float:
    """0 (unset) takes the server's limit; anything else must be a number of seconds >= 1."""
    if value == 0:
        return 0.0
    if not (math.isfinite(value) and value >= 1):
        raise InvalidRequest(
            "spec.time_limit_seconds must be at least 1 second (leave it unset or 0 for the"
            f" server's limit), got {value:g}"
        )
    return value


def _evaluation(evaluation: pb.Evaluation) -> EvaluationConfig:
    return EvaluationConfig(
        suite=_lookup(_SUITES, evaluation.suite, "spec.evaluation.suite", "standard or fast"),
        samples=_given(evaluation, "samples", None),
    )


def job_spec_to_pb(spec: JobSpec) -> pb.JobSpec:
    return pb.JobSpec(
        model_id=spec.model_id,
        train_dataset_id=spec.train_dataset_id,
        eval_dataset_id=spec.eval_dataset_id or "",
        training=_training_to_pb(spec.training),
        threat_model=pb.ThreatModel(
            norm=_NORMS_TO_PB[spec.threat.norm],
            epsilon=spec.threat.eps,
            lower=spec.threat.lower,
            upper=spec.threat.upper,
        ),
        evaluation=pb.Evaluation(
            suite=_SUITES_TO_PB[spec.evaluation.suite], samples=spec.evaluation.samples
        ),
        seed=spec.seed,
        time_limit_seconds=spec.time_limit_seconds,
        architecture=spec.architecture,
        num_classes=spec.num_classes,
        webhook_url=spec.webhook_url,
        mlflow=(
            pb.MlflowTracking(experiment=spec.mlflow.experiment, run_name=spec.mlflow.run_name)
            if spec.mlflow is not None
            else None
        ),
        text_threat_model=(
            pb.TextThreatModel(
                word_share=spec.text_threat.word_share,
                char_share=spec.text_threat.char_share,
                embedding_eps=spec.text_threat.embedding_eps,
                max_length=spec.text_threat.max_length,
            )
            if spec.text_threat is not None
            else None
        ),
        tokenizer_id=spec.tokenizer_id or "",
        feature_schema_id=spec.feature_schema_id or "",
    )


def _training_to_pb(training: TrainingConfig) -> pb.Training:
    """A field the engine chooses (None) stays unset, so that the message submitted again means
    the same job; protobuf leaves a field given None unset."""
    message = pb.Training(
        epochs=training.epochs,
        batch_size=training.batch_size,
        learning_rate=training.learning_rate,
        from_scratch=training.from_scratch,
        select_best_robust=training.select_best_robust,
        validation_size=training.validation_size,
    )
    method = training.method
    if method is Method.DISTILLATION:
        message.distillation.CopyFrom(
            pb.Distillation(
                temperature=training.temperature,
                hard_label_weight=training.hard_label_weight,
                teacher_epochs=training.teacher_epochs,
            )
        )
    elif method is Method.TRADES:
        message.trades.CopyFrom(
            pb.Trades(
                attack_steps=training.attack_steps,
                step_size=training.step_size,
                eps_warmup_epochs=training.eps_warmup_epochs,
                beta=training.trades_beta,
            )
        )
    elif method is Method.PGD:
        message.pgd.CopyFrom(
            pb.Pgd(
                attack_steps=training.attack_steps,
                step_size=training.step_size,
                eps_warmup_epochs=training.eps_warmup_epochs,
            )
        )
    else:
        message.fgsm.CopyFrom(
            pb.Fgsm(step_size=training.step_size, eps_warmup_epochs=training.eps_warmup_epochs)
        )
    return message


# --- jobs -------------------------------------------------------------------------------------


def _timestamp(value: datetime | None) -> Timestamp | None:
    if value is None:
        return None
    stamp = Timestamp()
    stamp.FromDatetime(value)
    return stamp


def job_to_pb(job: Job) -> pb.Job:
    message = pb.Job(
        id=job.id,
        state=_STATES[job.state],
        spec=job_spec_to_pb(job.spec),
        labels=dict(job.labels),
        idempotency_key=job.idempotency_key or "",
        create_time=_timestamp(job.created_at),
        start_time=_timestamp(job.started_at),
        end_time=_timestamp(job.finished_at),
        update_time=_timestamp(job.updated_at),
        reason=job.reason,
        cancel_requested=job.cancel_requested,
        attempts=job.attempts,
        outputs=[output_to_pb(o) for o in job.outputs],
    )
    if job.progress is not None:
        message.progress.CopyFrom(progress_to_pb(job.progress))
    if job.result is not None:
        message.result.CopyFrom(_result_to_pb(job.result))
    return message


def progress_to_pb(progress: Progress) -> pb.Progress:
    message = pb.Progress(
        stage=progress.stage,
        epoch=progress.epoch,
        epochs=progress.epochs,
        step=progress.step,
        steps=progress.steps,
        message=progress.message,
        update_time=_timestamp(progress.updated_at),
    )
    for name in ("loss", "clean_accuracy", "robust_accuracy", "eta_seconds"):
        if (value := getattr(progress, name)) is not None:
            setattr(message, name, value)
    return message


def output_to_pb(output: OutputFile) -> pb.OutputArtifact:
    return pb.OutputArtifact(
        kind=_KINDS[output.kind],
        filename=output.filename,
        size_bytes=output.size_bytes,
        sha256=output.sha256,
        media_type=output.media_type,
        bundle=output.bundle,
    )


def _result_to_pb(result: ResultSummary) -> pb.ResultSummary:
    return pb.ResultSummary(
        **{
            model: pb.Scores(**{score: pb.Accuracy(**ends) for score, ends in scores.items()})
            for model, scores in result.headline.items()
        }
    )


def job_query(request: pb.ListJobsRequest) -> JobQuery:
    check_request(request)
    return JobQuery(
        page_size=min(request.page_size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE),
        after_seq=decode_page_token(request.page_token) if request.page_token else None,
        states=frozenset(
            _lookup(_STATES_FROM_PB, s, "states", "QUEUED, RUNNING, SUCCEEDED, FAILED or CANCELLED")
            for s in request.states
        ),
        labels=dict(request.labels),
    )


class _JobMessages:
    """Jobs converted to messages, by id and version (a job's content at one version never
    changes): copying a page of fifty from here costs a fraction of converting it. The response
    copies what it is given, so the kept messages are never changed."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._messages: OrderedDict[tuple[str, int], pb.Job] = OrderedDict()
        self._lock = threading.Lock()

    def message(self, job: Job) -> pb.Job:
        key = (job.id, job.version)
        with self._lock:
            message = self._messages.get(key)
            if message is not None:
                self._messages.move_to_end(key)
                return message
        message = job_to_pb(job)
        with self._lock:
            self._messages[key] = message
            while len(self._messages) > self._size:
                self._messages.popitem(last=False)
        return message


_LISTED = _JobMessages(4096)


def list_response(page: JobPage) -> pb.ListJobsResponse:
    """The page, cut short before it passes MAX_PAGE_BYTES (always at least one job), with a
    next_page_token that starts after the last job sent."""
    messages: list[pb.Job] = []
    size = 0
    next_after_seq = page.next_after_seq
    for index, job in enumerate(page.jobs):
        message = _LISTED.message(job)
        size += message.ByteSize() + 8  # the field's tag and length prefix, generously
        if messages and size > MAX_PAGE_BYTES and len(page.seqs) == len(page.jobs):
            next_after_seq = page.seqs[index - 1]
            break
        messages.append(message)
    token = encode_page_token(next_after_seq) if next_after_seq is not None else ""
    return pb.ListJobsResponse(jobs=messages, next_page_token=token)


def encode_page_token(after_seq: int) -> str:
    return base64.urlsafe_b64encode(f"v1:{after_seq}".encode()).decode()


def decode_page_token(token: str) -> int:
    try:
        version, _, seq = base64.urlsafe_b64decode(token.encode()).decode().partition(":")
        if version != "v1":
            raise ValueError(version)
        return int(seq)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise InvalidRequest(
            "page_token is not one this server issued; pass next_page_token unchanged"
        ) from None


def job_event_to_pb(event: JobEvent) -> pb.JobEvent:
    job = event.job
    if event.progress is not None:
        return pb.JobEvent(
            job_id=job.id,
            time=_timestamp(event.progress.updated_at or job.updated_at),
            state=_STATES[job.state],
            progress=progress_to_pb(event.progress),
        )
    return pb.JobEvent(
        job_id=job.id,
        time=_timestamp(job.updated_at),
        state=_STATES[job.state],
        state_changed=job_to_pb(job),
    )


# --- downloads --------------------------------------------------------------------------------


def output_kind(kind: int) -> OutputKind:
    return _lookup(
        _KINDS_FROM_PB,
        kind,
        "kind",
        "HARDENED_MODEL, REPORT, MODEL_CARD, ROBUSTNESS_PLOT, TOKENIZER or FEATURE_SCHEMA",
    )


def download_messages(download: Download) -> Iterator[pb.DownloadArtifactResponse]:
    yield pb.DownloadArtifactResponse(header=output_to_pb(download.output))
    for chunk in download.chunks:
        yield pb.DownloadArtifactResponse(chunk=chunk)
