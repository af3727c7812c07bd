"""Translation between the SDK's dataclasses (:mod:`client.domain`) and the protobuf messages of
``tempering.v1``. The only module of the client that reads or builds messages."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp
from tempering.v1 import hardening_pb2 as pb

from client.domain import (
    ArtifactKind,
    DatasetFormat,
    EvaluationSuite,
    HardeningParams,
    Interval,
    Job,
    JobDeletion,
    JobEvent,
    JobPage,
    JobSpec,
    JobState,
    Method,
    MlflowTracking,
    ModelFormat,
    Norm,
    OutputArtifact,
    Progress,
    ResultSummary,
    Scores,
    ServerInfo,
    TextThreat,
)
from client.transfer import FileDigest

_JOB_STATES = {
    JobState.QUEUED: pb.JOB_STATE_QUEUED,
    JobState.RUNNING: pb.JOB_STATE_RUNNING,
    JobState.SUCCEEDED: pb.JOB_STATE_SUCCEEDED,
    JobState.FAILED: pb.JOB_STATE_FAILED,
    JobState.CANCELLED: pb.JOB_STATE_CANCELLED,
}
_JOB_STATES_BACK = {v: k for k, v in _JOB_STATES.items()}

_MODEL_FORMATS = {
    ModelFormat.ONNX: pb.MODEL_FORMAT_ONNX,
    ModelFormat.ONNX_BUNDLE: pb.MODEL_FORMAT_ONNX_BUNDLE,
    ModelFormat.SAFETENSORS: pb.MODEL_FORMAT_SAFETENSORS,
    ModelFormat.TORCHSCRIPT: pb.MODEL_FORMAT_TORCHSCRIPT,
    ModelFormat.TORCH_EXPORT: pb.MODEL_FORMAT_TORCH_EXPORT,
}

_NORMS = {Norm.LINF: pb.NORM_LINF, Norm.L2: pb.NORM_L2}
_NORMS_BACK = {pb.NORM_UNSPECIFIED: Norm.LINF, pb.NORM_LINF: Norm.LINF, pb.NORM_L2: Norm.L2}

_SUITES = {
    EvaluationSuite.STANDARD: pb.EVALUATION_SUITE_STANDARD,
    EvaluationSuite.FAST: pb.EVALUATION_SUITE_FAST,
}
_SUITES_BACK = {
    pb.EVALUATION_SUITE_UNSPECIFIED: EvaluationSuite.STANDARD,
    pb.EVALUATION_SUITE_STANDARD: EvaluationSuite.STANDARD,
    pb.EVALUATION_SUITE_FAST: EvaluationSuite.FAST,
}

_ARTIFACT_KINDS = {
    ArtifactKind.MODEL: pb.ARTIFACT_KIND_HARDENED_MODEL,
    ArtifactKind.REPORT: pb.ARTIFACT_KIND_REPORT,
    ArtifactKind.CARD: pb.ARTIFACT_KIND_MODEL_CARD,
    ArtifactKind.PLOT: pb.ARTIFACT_KIND_ROBUSTNESS_PLOT,
    ArtifactKind.TOKENIZER: pb.ARTIFACT_KIND_TOKENIZER,
    ArtifactKind.SCHEMA: pb.ARTIFACT_KIND_FEATURE_SCHEMA,
}
_DATASET_FORMATS = {
    DatasetFormat.NPZ: pb.DATASET_FORMAT_NPZ,
    DatasetFormat.JSONL: pb.DATASET_FORMAT_JSONL,
    DatasetFormat.CSV: pb.DATASET_FORMAT_CSV,
}
_ARTIFACT_KINDS_BACK = {v: k for k, v in _ARTIFACT_KINDS.items()}


# ---------------------------------------------------------------------------------------------
# Requests


def model_upload_requests(
    name: str, model_format: ModelFormat, digest: FileDigest, chunks: Iterable[bytes]
) -> Iterator[pb.UploadModelRequest]:
    """The header first, then the bytes."""
    yield pb.UploadModelRequest(
        header=pb.ModelUploadHeader(
            name=name,
            format=_MODEL_FORMATS[model_format],
            size_bytes=digest.size_bytes,
            sha256=digest.sha256,
        )
    )
    for chunk in chunks:
        yield pb.UploadModelRequest(chunk=chunk)


def dataset_upload_requests(
    name: str,
    digest: FileDigest,
    chunks: Iterable[bytes],
    dataset_format: DatasetFormat = DatasetFormat.NPZ,
) -> Iterator[pb.UploadDatasetRequest]:
    yield pb.UploadDatasetRequest(
        header=pb.DatasetUploadHeader(
            name=name,
            format=_DATASET_FORMATS[dataset_format],
            size_bytes=digest.size_bytes,
            sha256=digest.sha256,
        )
    )
    for chunk in chunks:
        yield pb.UploadDatasetRequest(chunk=chunk)


def tokenizer_upload_requests(
    name: str, digest: FileDigest, chunks: Iterable[bytes]
) -> Iterator[pb.UploadTokenizerRequest]:
    yield pb.UploadTokenizerRequest(
        header=pb.TokenizerUploadHeader(
            name=name, size_bytes=digest.size_bytes, sha256=digest.sha256
        )
    )
    for chunk in chunks:
        yield pb.UploadTokenizerRequest(chunk=chunk)


def schema_upload_requests(
    name: str, digest: FileDigest, chunks: Iterable[bytes]
) -> Iterator[pb.UploadSchemaRequest]:
    yield pb.UploadSchemaRequest(
        header=pb.SchemaUploadHeader(name=name, size_bytes=digest.size_bytes, sha256=digest.sha256)
    )
    for chunk in chunks:
        yield pb.UploadSchemaRequest(chunk=chunk)


def submit_request(
    spec: JobSpec, idempotency_key: str | None, labels: Mapping[str, str] | None
) -> pb.SubmitJobRequest:
    return pb.SubmitJobRequest(
        spec=spec_to_proto(spec), idempotency_key=idempotency_key or "", labels=dict(labels or {})
    )


def get_request(job_id: str) -> pb.GetJobRequest:
    return pb.GetJobRequest(job_id=job_id)


def server_info(message: pb.ServerInfo) -> ServerInfo:
    return ServerInfo(version=message.version, api=message.api)


def cancel_request(job_id: str) -> pb.CancelJobRequest:
    return pb.CancelJobRequest(job_id=job_id)


def delete_request(job_id: str, cancel: bool) -> pb.DeleteJobRequest:
    return pb.DeleteJobRequest(job_id=job_id, cancel=cancel)


def deletion(message: pb.DeleteJobResponse) -> JobDeletion:
    return JobDeletion(
        job_id=message.job_id,
        already_deleted=message.already_deleted,
        artifacts_removed=message.artifacts_removed,
        bytes_removed=message.bytes_removed,
    )


def watch_request(job_id: str) -> pb.WatchJobRequest:
    return pb.WatchJobRequest(job_id=job_id)


def list_request(
    states: Iterable[JobState], labels: Mapping[str, str] | None, page_size: int, page_token: str
) -> pb.ListJobsRequest:
    return pb.ListJobsRequest(
        page_size=page_size,
        page_token=page_token,
        states=[_JOB_STATES[s] for s in states],
        labels=dict(labels or {}),
    )


def download_request(job_id: str, kind: ArtifactKind) -> pb.DownloadArtifactRequest:
    return pb.DownloadArtifactRequest(job_id=job_id, kind=_ARTIFACT_KINDS[kind])


# ---------------------------------------------------------------------------------------------
# Job specification


def spec_to_proto(spec: JobSpec) -> pb.JobSpec:
    params = spec.params
    return pb.JobSpec(
        model_id=spec.model_id,
        train_dataset_id=spec.train_dataset_id,
        eval_dataset_id=spec.eval_dataset_id or "",
        training=training_to_proto(params),
        threat_model=pb.ThreatModel(
            norm=_NORMS[params.norm],
            epsilon=params.eps,
            lower=params.lower,
            upper=params.upper,
        ),
        evaluation=pb.Evaluation(suite=_SUITES[params.suite], samples=params.eval_samples),
        seed=params.seed,
        time_limit_seconds=params.time_limit_seconds,
        architecture=params.architecture,
        num_classes=params.num_classes,
        webhook_url=spec.webhook_url,
        mlflow=mlflow_to_proto(spec.mlflow),
        text_threat_model=text_threat_to_proto(params.text),
        tokenizer_id=spec.tokenizer_id or "",
        feature_schema_id=spec.feature_schema_id or "",
    )


def text_threat_to_proto(text: TextThreat | None) -> pb.TextThreatModel | None:
    if text is None:
        return None
    return pb.TextThreatModel(
        word_share=text.word_share,
        char_share=text.char_share,
        embedding_eps=text.embedding_eps,
        max_length=text.max_length,
    )


def mlflow_to_proto(tracking: MlflowTracking | None) -> pb.MlflowTracking | None:
    if tracking is None:
        return None
    return pb.MlflowTracking(experiment=tracking.experiment, run_name=tracking.run_name)


def training_to_proto(params: HardeningParams) -> pb.Training:
    """A parameter left at None stays unset (the server's default); one given is sent, even 0,
    for the server to check. protobuf leaves a field given None unset."""
    training = pb.Training(
        epochs=params.epochs,
        batch_size=params.batch_size,
        learning_rate=params.learning_rate,
        from_scratch=params.from_scratch,
        select_best_robust=params.select_best_robust,
        validation_size=params.validation_size,
    )
    if params.method is Method.DISTILLATION:
        training.distillation.CopyFrom(
            pb.Distillation(
                temperature=params.temperature,
                hard_label_weight=params.hard_label_weight,
                teacher_epochs=params.teacher_epochs,
            )
        )
    elif params.method is Method.PGD:
        training.pgd.CopyFrom(
            pb.Pgd(
                attack_steps=params.attack_steps,
                step_size=params.step_size,
                eps_warmup_epochs=params.eps_warmup_epochs,
            )
        )
    elif params.method is Method.FGSM:
        training.fgsm.CopyFrom(
            pb.Fgsm(step_size=params.step_size, eps_warmup_epochs=params.eps_warmup_epochs)
        )
    else:
        training.trades.CopyFrom(
            pb.Trades(
                attack_steps=params.attack_steps,
                step_size=params.step_size,
                eps_warmup_epochs=params.eps_warmup_epochs,
                beta=params.trades_beta,
            )
        )
    return training


# ---------------------------------------------------------------------------------------------
# Responses


def timestamp(message: Timestamp, present: bool) -> datetime | None:
    return message.ToDatetime(tzinfo=UTC) if present else None


def job_state(value: int) -> JobState:
    try:
        return _JOB_STATES_BACK[value]  # type: ignore[index]
    except KeyError:
        raise ValueError(f"the server sent an unknown job state ({value})") from None


def artifact_kind(value: int) -> ArtifactKind:
    try:
        return _ARTIFACT_KINDS_BACK[value]  # type: ignore[index]
    except KeyError:
        raise ValueError(f"the server sent an unknown artifact kind ({value})") from None


def spec(message: pb.JobSpec) -> JobSpec:
    training = message.training
    threat = message.threat_model
    method_field = training.WhichOneof("method")
    values: dict[str, Any] = {
        "eps": threat.epsilon,
        "norm": _NORMS_BACK.get(threat.norm, Norm.LINF),
        "lower": tuple(threat.lower),
        "upper": tuple(threat.upper),
        "epochs": _optional(training, "epochs"),
        "batch_size": _optional(training, "batch_size"),
        "learning_rate": _optional(training, "learning_rate"),
        "from_scratch": training.from_scratch,
        "select_best_robust": _optional(training, "select_best_robust"),
        "validation_size": _optional(training, "validation_size"),
        "suite": _SUITES_BACK.get(message.evaluation.suite, EvaluationSuite.STANDARD),
        "eval_samples": _optional(message.evaluation, "samples"),
        "seed": message.seed,
        "time_limit_seconds": message.time_limit_seconds,
        "architecture": message.architecture,
        "num_classes": message.num_classes,
        "text": _text_threat(message),
    }
    values.update(_method_params(training, method_field))
    return JobSpec(
        model_id=message.model_id,
        train_dataset_id=message.train_dataset_id,
        eval_dataset_id=message.eval_dataset_id or None,
        params=HardeningParams(**values),
        webhook_url=message.webhook_url,
        mlflow=(
            MlflowTracking(message.mlflow.experiment, message.mlflow.run_name)
            if message.HasField("mlflow")
            else None
        ),
        tokenizer_id=message.tokenizer_id or None,
        feature_schema_id=message.feature_schema_id or None,
    )


def _text_threat(message: pb.JobSpec) -> TextThreat | None:
    if not message.HasField("text_threat_model"):
        return None
    text = message.text_threat_model
    return TextThreat(
        word_share=_optional(text, "word_share"),
        char_share=_optional(text, "char_share"),
        embedding_eps=_optional(text, "embedding_eps"),
        max_length=_optional(text, "max_length"),
    )


def _method_params(training: pb.Training, method_field: str | None) -> dict[str, Any]:
    if method_field == "distillation":
        return {
            "method": Method.DISTILLATION,
            "temperature": _optional(training.distillation, "temperature"),
            "hard_label_weight": training.distillation.hard_label_weight,
            "teacher_epochs": _optional(training.distillation, "teacher_epochs"),
        }
    if method_field == "fgsm":
        return {
            "method": Method.FGSM,
            "step_size": _optional(training.fgsm, "step_size"),
            "eps_warmup_epochs": _optional(training.fgsm, "eps_warmup_epochs"),
        }
    if method_field == "trades":
        return {
            "method": Method.TRADES,
            "attack_steps": _optional(training.trades, "attack_steps"),
            "step_size": _optional(training.trades, "step_size"),
            "eps_warmup_epochs": _optional(training.trades, "eps_warmup_epochs"),
            "trades_beta": _optional(training.trades, "beta"),
        }
    return {
        "method": Method.PGD,
        "attack_steps": _optional(training.pgd, "attack_steps"),
        "step_size": _optional(training.pgd, "step_size"),
        "eps_warmup_epochs": _optional(training.pgd, "eps_warmup_epochs"),
    }


def _optional(message: Any, name: str) -> Any:
    return getattr(message, name) if message.HasField(name) else None


def progress(message: pb.Progress) -> Progress:
    def optional(name: str) -> float | None:
        return float(getattr(message, name)) if message.HasField(name) else None

    return Progress(
        stage=message.stage,
        epoch=message.epoch,
        epochs=message.epochs,
        step=message.step,
        steps=message.steps,
        loss=optional("loss"),
        clean_accuracy=optional("clean_accuracy"),
        robust_accuracy=optional("robust_accuracy"),
        eta_seconds=optional("eta_seconds"),
        message=message.message,
        updated_at=timestamp(message.update_time, message.HasField("update_time")),
    )


def output_artifact(message: pb.OutputArtifact) -> OutputArtifact:
    return OutputArtifact(
        kind=artifact_kind(message.kind),
        filename=message.filename,
        size_bytes=message.size_bytes,
        sha256=message.sha256,
        media_type=message.media_type,
        bundle=message.bundle,
    )


def _interval(message: pb.Accuracy) -> Interval:
    return Interval(value=message.value, low=message.low, high=message.high)


def _scores(message: pb.Scores) -> Scores:
    return Scores(
        clean_accuracy=_interval(message.clean_accuracy),
        robust_accuracy=_interval(message.robust_accuracy),
    )


def result(message: pb.ResultSummary) -> ResultSummary:
    return ResultSummary(original=_scores(message.original), hardened=_scores(message.hardened))


def job(message: pb.Job) -> Job:
    return Job(
        id=message.id,
        state=job_state(message.state),
        spec=spec(message.spec) if message.HasField("spec") else None,
        labels=dict(message.labels),
        idempotency_key=message.idempotency_key,
        created_at=timestamp(message.create_time, message.HasField("create_time")),
        started_at=timestamp(message.start_time, message.HasField("start_time")),
        finished_at=timestamp(message.end_time, message.HasField("end_time")),
        updated_at=timestamp(message.update_time, message.HasField("update_time")),
        progress=progress(message.progress) if message.HasField("progress") else None,
        reason=message.reason,
        cancel_requested=message.cancel_requested,
        attempts=message.attempts,
        outputs=tuple(
            output_artifact(o) for o in message.outputs if o.kind in _ARTIFACT_KINDS_BACK
        ),
        result=result(message.result) if message.HasField("result") else None,
    )


def job_event(message: pb.JobEvent) -> JobEvent:
    kind = message.WhichOneof("event")
    return JobEvent(
        job_id=message.job_id,
        state=job_state(message.state),
        time=timestamp(message.time, message.HasField("time")),
        job=job(message.state_changed) if kind == "state_changed" else None,
        progress=progress(message.progress) if kind == "progress" else None,
    )


def download_header(message: pb.DownloadArtifactResponse | None) -> OutputArtifact | None:
    """The artifact a download stream announces in its first message, or None if it does not."""
    if message is None or message.WhichOneof("payload") != "header":
        return None
    return output_artifact(message.header)


def download_chunks(messages: Iterable[pb.DownloadArtifactResponse]) -> Iterator[bytes]:
    for message in messages:
        yield message.chunk


def upload_id(message: pb.UploadResponse) -> str:
    return str(message.artifact_id)


def job_page(message: pb.ListJobsResponse) -> JobPage:
    return JobPage(
        jobs=tuple(job(j) for j in message.jobs), next_page_token=message.next_page_token
    )
