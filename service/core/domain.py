"""Domain types of the service: what the application layer, the stores and the worker task share.

Nothing here knows about protobuf or gRPC; :mod:`service.api.convert` translates at the edge. The
hardening parameters reuse the engine's own frozen dataclasses (:mod:`workers.engine.spec`),
which are torch-free, so a job's spec is validated by the same code that will run it.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from service.core.tenancy import DEFAULT_TENANT
from workers.engine.errors import InvalidParameter
from workers.engine.output_files import (
    CARD_FILE,
    FEATURE_SCHEMA_FILE,
    MODEL_BUNDLE_FILE,
    MODEL_FILE,
    PLOT_FILE,
    REPORT_FILE,
    TOKENIZER_FILE,
)
from workers.engine.spec import (
    EvaluationConfig,
    EvaluationSuite,
    Method,
    Norm,
    TextThreatModel,
    ThreatModel,
    TrainingConfig,
    check_text_method,
)


def utcnow() -> datetime:
    return datetime.now(UTC)


class JobState(StrEnum):
    QUEUED = "QUEUED"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL_STATES


TERMINAL_STATES = frozenset({JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED})


class UploadKind(StrEnum):
    MODEL = "model"
    DATASET = "dataset"
    TOKENIZER = "tokenizer"
    SCHEMA = "schema"


class DatasetFormat(StrEnum):
    NPZ = "npz"
    JSONL = "jsonl"
    """Labelled texts for a text model, one JSON object a line (docs/text.md)."""
    CSV = "csv"
    """Labelled texts for a text model, with a header row naming text and label."""

    @property
    def is_text(self) -> bool:
        return self is not DatasetFormat.NPZ


TOKENIZER_FORMAT = "tokenizer_json"
"""The one format of a tokenizer upload: a Hugging Face ``tokenizer.json``."""

SCHEMA_FORMAT = "feature_schema_json"
"""The one format of a schema upload: a tabular model's feature schema (docs/tabular.md)."""


class OutputKind(StrEnum):
    HARDENED_MODEL = "hardened_model"
    REPORT = "report"
    MODEL_CARD = "model_card"
    ROBUSTNESS_PLOT = "robustness_plot"
    TOKENIZER = "tokenizer"
    FEATURE_SCHEMA = "feature_schema"

    @property
    def filename(self) -> str:
        return _OUTPUT_FILES[self][0]

    @property
    def media_type(self) -> str:
        return _OUTPUT_FILES[self][1]


_OUTPUT_FILES = {
    OutputKind.HARDENED_MODEL: (MODEL_FILE, "application/onnx"),
    OutputKind.REPORT: (REPORT_FILE, "application/json"),
    OutputKind.MODEL_CARD: (CARD_FILE, "text/markdown"),
    OutputKind.ROBUSTNESS_PLOT: (PLOT_FILE, "image/png"),
    OutputKind.TOKENIZER: (TOKENIZER_FILE, "application/json"),
    OutputKind.FEATURE_SCHEMA: (FEATURE_SCHEMA_FILE, "application/json"),
}


@dataclass(frozen=True)
class UploadHeader:
    """What the client declares before it streams the bytes."""

    kind: UploadKind
    format: str
    """A :class:`ModelFormat` or :class:`DatasetFormat` value, :data:`TOKENIZER_FORMAT` or
    :data:`SCHEMA_FORMAT`."""
    size_bytes: int
    sha256: str
    name: str = ""


@dataclass(frozen=True)
class UploadedArtifact:
    id: str
    kind: UploadKind
    format: str
    sha256: str
    size_bytes: int
    name: str
    created_at: datetime


@dataclass(frozen=True)
class UploadResult:
    artifact: UploadedArtifact
    already_present: bool


@dataclass(frozen=True)
class MlflowTracking:
    """Log a job to the operator's MLflow tracking server, in this experiment."""

    experiment: str
    run_name: str = ""
    """Empty: the job id."""

    def validate(self) -> None:
        if not self.experiment.strip():
            raise InvalidParameter("mlflow.experiment must name an experiment")
        if len(self.experiment) > 250 or len(self.run_name) > 250:
            raise InvalidParameter("mlflow.experiment and mlflow.run_name: 250 characters at most")


@dataclass(frozen=True)
class JobSpec:
    """What the user asked for. Artifacts are referenced by id; the worker resolves paths."""

    model_id: str
    train_dataset_id: str
    eval_dataset_id: str | None = None
    training: TrainingConfig = field(default_factory=TrainingConfig)
    threat: ThreatModel = field(default_factory=ThreatModel)
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig)
    seed: int = 0
    time_limit_seconds: float = 0.0
    architecture: str = ""
    num_classes: int = 0
    webhook_url: str = ""
    """Called when the job ends, besides the tenant's own webhook
    (:mod:`service.webhooks.notifier`)."""
    mlflow: MlflowTracking | None = None
    text_threat: TextThreatModel | None = None
    """Set for a text model, whose threat model it is; ``threat`` is then not used."""
    tokenizer_id: str | None = None
    """A text model's uploaded tokenizer."""
    feature_schema_id: str | None = None
    """A tabular model's uploaded feature schema: its ranges are the input domain and
    ``threat.eps`` the budget, in its units, of a feature whose entry sets none."""

    def validate(self) -> None:
        """Raise InvalidParameter naming the first field out of range (the engine's checks)."""
        if self.text_threat is not None:
            self.text_threat.validate()
            if self.feature_schema_id is None:  # with one, the input check says what is wrong
                check_text_method(self.training.method)
        else:
            self.threat.validate()
        self.training.validate()
        self.evaluation.validate()
        if not 0 <= self.seed < 2**63:
            raise InvalidParameter("seed must be a non-negative 64-bit integer below 2**63")
        if not (math.isfinite(self.time_limit_seconds) and self.time_limit_seconds >= 0):
            raise InvalidParameter("time_limit_seconds must be >= 0 (0 = the server's limit)")
        if self.num_classes < 0:
            raise InvalidParameter("num_classes must be >= 0 (0 = infer from the labels)")
        if self.mlflow is not None:
            self.mlflow.validate()

    def to_json(self) -> dict[str, Any]:
        return _jsonable(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> JobSpec:
        training = dict(data["training"])
        training["method"] = Method(training["method"])
        for name in _ZERO_WAS_DEFAULT:
            if training.get(name) == 0:
                training[name] = None
        threat = dict(data["threat"])
        threat["norm"] = Norm(threat["norm"])
        threat["lower"] = tuple(threat["lower"])
        threat["upper"] = tuple(threat["upper"])
        evaluation = dict(data["evaluation"])
        evaluation["suite"] = EvaluationSuite(evaluation["suite"])
        return cls(
            model_id=data["model_id"],
            train_dataset_id=data["train_dataset_id"],
            eval_dataset_id=data.get("eval_dataset_id"),
            training=TrainingConfig(**_known(TrainingConfig, training)),
            threat=ThreatModel(**_known(ThreatModel, threat)),
            evaluation=EvaluationConfig(**_known(EvaluationConfig, evaluation)),
            seed=int(data.get("seed", 0)),
            time_limit_seconds=float(data.get("time_limit_seconds", 0.0)),
            architecture=data.get("architecture", ""),
            num_classes=int(data.get("num_classes", 0)),
            webhook_url=data.get("webhook_url", ""),
            mlflow=MlflowTracking(**tracking) if (tracking := data.get("mlflow")) else None,
            text_threat=(
                TextThreatModel(**_known(TextThreatModel, text))
                if (text := data.get("text_threat"))
                else None
            ),
            tokenizer_id=data.get("tokenizer_id"),
            feature_schema_id=data.get("feature_schema_id"),
        )


_ZERO_WAS_DEFAULT = ("learning_rate", "step_size", "teacher_epochs")
"""Specs recorded before these fields were optional wrote "the engine's default" as 0."""


def _known(cls: type, values: Mapping[str, Any]) -> dict[str, Any]:
    """Drop keys a newer or older spec version may hold that this dataclass does not."""
    names = {f.name for f in dataclasses.fields(cls)}
    return {k: v for k, v in values.items() if k in names}


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, StrEnum):
        return value.value
    return value


@dataclass(frozen=True)
class Said:
    """One engine message as recorded, numbered in the order the job said them, with the epoch
    and metrics it came with (0 and None in rows written before they were kept)."""

    number: int
    stage: str
    step: int
    steps: int
    message: str
    epoch: int = 0
    epochs: int = 0
    loss: float | None = None
    clean_accuracy: float | None = None
    robust_accuracy: float | None = None
    eta_seconds: float | None = None


@dataclass(frozen=True)
class Progress:
    stage: str = ""
    epoch: int = 0
    epochs: int = 0
    step: int = 0
    steps: int = 0
    loss: float | None = None
    clean_accuracy: float | None = None
    robust_accuracy: float | None = None
    eta_seconds: float | None = None
    message: str = ""
    updated_at: datetime | None = None
    recent: tuple[Said, ...] = ()
    """The last few messages, oldest first. The store keeps only the latest progress, so a
    watcher polling it reads the per-attack lines recorded between two polls from here."""

    def to_json(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["updated_at"] = self.updated_at.isoformat() if self.updated_at else None
        data["recent"] = [dataclasses.asdict(said) for said in self.recent]
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> Progress | None:
        if not data:
            return None
        values = _known(cls, data)
        stamp = values.get("updated_at")
        values["updated_at"] = datetime.fromisoformat(stamp) if stamp else None
        values["recent"] = tuple(Said(**_known(Said, said)) for said in values.get("recent", ()))
        return cls(**values)

    def missed_since(self, number: int) -> list[Said]:
        """The messages said after message ``number`` other than this progress's own."""
        own = self.recent[-1] if self.recent and self.recent[-1].message == self.message else None
        return [said for said in self.recent if said.number > number and said is not own]

    @property
    def last_said(self) -> int:
        return self.recent[-1].number if self.recent else 0


@dataclass(frozen=True)
class OutputFile:
    kind: OutputKind
    sha256: str
    size_bytes: int
    bundle: bool = False
    """The hardened model as an ONNX bundle (``hardened.onnx.tar``: the ``.onnx`` and its
    external data file), for weights over the inline limit; False in rows from before."""

    @property
    def filename(self) -> str:
        return MODEL_BUNDLE_FILE if self.bundle else self.kind.filename

    @property
    def media_type(self) -> str:
        return BUNDLE_MEDIA_TYPE if self.bundle else self.kind.media_type


BUNDLE_MEDIA_TYPE = "application/x-tar"


HEADLINE_MODELS = ("original", "hardened")
HEADLINE_SCORES = ("clean_accuracy", "robust_accuracy")
HEADLINE_ENDS = ("value", "low", "high")
Headline = Mapping[str, Mapping[str, Mapping[str, float]]]


@dataclass(frozen=True)
class ResultSummary:
    """The headline of a finished job as the engine's report writes it: for the ``original`` and
    the ``hardened`` model, ``clean_accuracy`` and ``robust_accuracy``, each a ``value`` with the
    ``low`` and ``high`` ends of its 95% interval. The service stores it, sends it with webhooks
    and in the API's ``ResultSummary`` (whose fields have these names), and reads none of its
    numbers, so it keeps the report's JSON, checked, rather than types of its own; the typed
    view is the SDK's (``client/domain.py``)."""

    headline: Headline

    def to_json(self) -> dict[str, Any]:
        return {
            model: {score: dict(ends) for score, ends in scores.items()}
            for model, scores in self.headline.items()
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> ResultSummary | None:
        if not data:
            return None
        return cls(
            {
                model: {
                    score: {end: float(data[model][score][end]) for end in HEADLINE_ENDS}
                    for score in HEADLINE_SCORES
                }
                for model in HEADLINE_MODELS
            }
        )

    @classmethod
    def from_report(cls, report: Mapping[str, Any]) -> ResultSummary | None:
        """The headline numbers of an engine report, or None if the report lacks them."""
        try:
            return cls.from_json(report)
        except (KeyError, TypeError, ValueError):
            return None


@dataclass(frozen=True)
class NewJob:
    """A job about to be recorded."""

    spec: JobSpec
    labels: Mapping[str, str] = field(default_factory=dict)
    idempotency_key: str | None = None
    tenant: str = DEFAULT_TENANT
    """Who submits it; idempotency keys are per tenant."""


@dataclass(frozen=True)
class Job:
    id: str
    state: JobState
    spec: JobSpec
    labels: Mapping[str, str]
    created_at: datetime
    updated_at: datetime
    version: int
    """Grows on every change of the record; watchers compare it to notice changes."""
    idempotency_key: str | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    progress: Progress | None = None
    reason: str = ""
    cancel_requested: bool = False
    attempts: int = 0
    outputs: tuple[OutputFile, ...] = ()
    result: ResultSummary | None = None
    tenant: str = DEFAULT_TENANT

    def output(self, kind: OutputKind) -> OutputFile | None:
        return next((o for o in self.outputs if o.kind is kind), None)


@dataclass(frozen=True)
class JobQuery:
    page_size: int = 50
    after_seq: int | None = None
    """Keyset cursor: only jobs recorded before the one with this sequence number."""
    states: frozenset[JobState] = frozenset()
    labels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class JobPage:
    jobs: tuple[Job, ...]
    next_after_seq: int | None
    seqs: tuple[int, ...] = ()
    """The sequence number of each job, for a caller that sends only the first jobs of the
    page and gives the rest a cursor of their own."""


@dataclass(frozen=True)
class JobEvent:
    """One message of a watch stream: a state change (with the whole job) or progress."""

    job: Job
    progress: Progress | None = None

    @property
    def is_state_change(self) -> bool:
        return self.progress is None


@dataclass(frozen=True)
class Download:
    """An output of a job, ready to stream."""

    output: OutputFile
    chunks: Iterator[bytes]
