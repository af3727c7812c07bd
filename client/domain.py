"""The SDK's own types: what callers of :class:`client.sdk.HardeningClient` see.

Plain dataclasses and string enums, so that nothing outside :mod:`client.convert` touches
protobuf. A hardening parameter left at None is not sent, and the engine chooses it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Any


class JobState(StrEnum):
    QUEUED = "QUEUED"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"

    @property
    def is_terminal(self) -> bool:
        return self in (JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED)


class Method(StrEnum):
    DISTILLATION = "distillation"
    PGD = "pgd"
    FGSM = "fgsm"
    TRADES = "trades"


class Norm(StrEnum):
    LINF = "linf"
    L2 = "l2"


class ModelFormat(StrEnum):
    ONNX = "onnx"
    ONNX_BUNDLE = "onnx_bundle"
    """An ONNX model with its external data files in one uncompressed tar
    (:mod:`client.bundle`); an ONNX model with external data is sent as one by itself."""
    SAFETENSORS = "safetensors"
    TORCHSCRIPT = "torchscript"
    TORCH_EXPORT = "torch_export"


class EvaluationSuite(StrEnum):
    STANDARD = "standard"
    FAST = "fast"


class ArtifactKind(StrEnum):
    """The outputs of a succeeded job, named as ``temper download --kind`` spells them."""

    MODEL = "model"
    REPORT = "report"
    CARD = "card"
    PLOT = "plot"
    TOKENIZER = "tokenizer"
    """A text model's tokenizer.json, returned unchanged beside the hardened model."""
    SCHEMA = "schema"
    """A tabular model's feature schema, returned unchanged beside the hardened model."""


class DatasetFormat(StrEnum):
    NPZ = "npz"
    JSONL = "jsonl"
    CSV = "csv"


DATASET_SUFFIXES: Mapping[str, DatasetFormat] = {
    ".npz": DatasetFormat.NPZ,
    ".jsonl": DatasetFormat.JSONL,
    ".ndjson": DatasetFormat.JSONL,
    ".json": DatasetFormat.JSONL,
    ".csv": DatasetFormat.CSV,
}


def dataset_format_of(path: Path) -> DatasetFormat:
    """The format of a dataset file: from its suffix, else from its first bytes (a zip is an
    .npz, ``{`` or ``[`` JSON Lines, anything else CSV), as the engine tells them apart."""
    by_suffix = DATASET_SUFFIXES.get(path.suffix.lower())
    if by_suffix is not None:
        return by_suffix
    with path.open("rb") as handle:
        start = handle.read(4096)
    if start.startswith(b"PK"):
        return DatasetFormat.NPZ
    start = start.lstrip(b"\xef\xbb\xbf \t\r\n")
    return DatasetFormat.JSONL if start[:1] in (b"{", b"[") else DatasetFormat.CSV


MODEL_SUFFIXES: Mapping[str, ModelFormat] = {
    ".onnx": ModelFormat.ONNX,
    ".tar": ModelFormat.ONNX_BUNDLE,
    ".zip": ModelFormat.ONNX_BUNDLE,
    ".safetensors": ModelFormat.SAFETENSORS,
    ".pt": ModelFormat.TORCHSCRIPT,
    ".ts": ModelFormat.TORCHSCRIPT,
    ".pt2": ModelFormat.TORCH_EXPORT,
}


def format_from_suffix(path: Path) -> ModelFormat | None:
    """The model format a file name suggests (``.onnx``, ``.tar``/``.zip`` for an ONNX
    bundle, ``.safetensors``, ``.pt``/``.ts``, ``.pt2``), or None. The server decides from
    the bytes; this only picks the declaration."""
    return MODEL_SUFFIXES.get(path.suffix.lower())


DEFAULT_LOWER, DEFAULT_UPPER = 0.0, 1.0
"""The input domain when a threat model gives no bounds, as the API reads empty bounds."""


@dataclass(frozen=True)
class TextThreat:
    """A text model's threat model; a field left at None takes the engine's default
    (docs/recipe.md lists them, docs/text-evaluation.md explains them)."""

    word_share: float | None = None
    """Share of a text's words the synonym attack may replace."""
    char_share: float | None = None
    """Share of a text's words the character attack may edit."""
    embedding_eps: float | None = None
    """Radius of the per-token embedding ball, of the mean token-embedding norm."""
    max_length: int | None = None
    """Tokens kept per text (default: the model's fixed length, else the tokenizer's)."""


@dataclass(frozen=True)
class HardeningParams:
    """How to harden and how to score. A field left at None takes the server's default: for
    epochs, batch size, learning rate, epsilon warm-up and validation size, the engine's recipe
    derives it from the data (docs/cli.md, "Defaults: the recipe"). A value given is sent as it
    is and checked by the server (an explicit 0 epochs or temperature is refused). Method-specific
    fields are ignored by the other methods."""

    method: Method
    eps: float
    norm: Norm = Norm.LINF
    lower: tuple[float, ...] = ()
    """Input domain: one value, or one per channel/feature; empty means
    [``DEFAULT_LOWER``, ``DEFAULT_UPPER``]."""
    upper: tuple[float, ...] = ()
    epochs: int | None = None
    batch_size: int | None = None
    learning_rate: float | None = None
    from_scratch: bool = False
    select_best_robust: bool | None = None
    validation_size: int | None = None
    attack_steps: int | None = None
    """PGD and TRADES."""
    step_size: float | None = None
    """PGD, FGSM and TRADES."""
    eps_warmup_epochs: float | None = None
    """PGD, FGSM and TRADES: None = the recipe's warm-up, 0 = none."""
    trades_beta: float | None = None
    temperature: float | None = None
    """Distillation."""
    hard_label_weight: float = 0.0
    """Distillation."""
    teacher_epochs: int | None = None
    """Distillation."""
    suite: EvaluationSuite = EvaluationSuite.STANDARD
    eval_samples: int | None = None
    seed: int = 0
    time_limit_seconds: float = 0.0
    architecture: str = ""
    """Built-in architecture of safetensors weights."""
    num_classes: int = 0
    text: TextThreat | None = None
    """Set for a text model (its input is token ids); ``eps``, ``norm`` and the bounds are then
    not used."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "method", Method(self.method))
        object.__setattr__(self, "norm", Norm(self.norm))
        object.__setattr__(self, "suite", EvaluationSuite(self.suite))
        object.__setattr__(self, "lower", tuple(float(v) for v in self.lower))
        object.__setattr__(self, "upper", tuple(float(v) for v in self.upper))

    @classmethod
    def field_names(cls) -> frozenset[str]:
        return frozenset(f.name for f in fields(cls))


@dataclass(frozen=True)
class MlflowTracking:
    """Log the job to MLflow, in this experiment: on the server, to its operator's tracking
    server; with ``--local``, to the tracking URI given."""

    experiment: str
    run_name: str = ""
    """Empty: the job id."""


@dataclass(frozen=True)
class JobSpec:
    model_id: str
    train_dataset_id: str
    params: HardeningParams
    eval_dataset_id: str | None = None
    webhook_url: str = ""
    """Told (signed, see :mod:`client.webhooks`) when the job ends; the server calls only hosts
    its operator allows."""
    mlflow: MlflowTracking | None = None
    tokenizer_id: str | None = None
    """A text model's uploaded tokenizer (:meth:`HardeningClient.upload_tokenizer`)."""
    feature_schema_id: str | None = None
    """A tabular model's uploaded feature schema (:meth:`HardeningClient.upload_schema`)."""


@dataclass(frozen=True)
class Progress:
    stage: str = ""
    """loading, teacher, training, evaluating, exporting or done."""
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

    @property
    def is_epoch_end(self) -> bool:
        """The engine reports a finished epoch without a step count."""
        return self.epoch > 0 and self.step == 0


@dataclass(frozen=True)
class Interval:
    """An accuracy with its 95% confidence interval."""

    value: float
    low: float
    high: float


@dataclass(frozen=True)
class Scores:
    clean_accuracy: Interval
    robust_accuracy: Interval


@dataclass(frozen=True)
class ResultSummary:
    original: Scores
    hardened: Scores


@dataclass(frozen=True)
class OutputArtifact:
    kind: ArtifactKind
    filename: str
    size_bytes: int
    sha256: str
    media_type: str = ""
    bundle: bool = False
    """An ONNX bundle (a tar of the ``.onnx`` and its external data file): the hardened model
    of weights over the server's inline limit. Downloads unpack it (docs/model-bundles.md)."""


@dataclass(frozen=True)
class Job:
    id: str
    state: JobState
    spec: JobSpec | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    idempotency_key: str = ""
    created_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    updated_at: datetime | None = None
    progress: Progress | None = None
    reason: str = ""
    """Why the job failed, or what stopped it."""
    cancel_requested: bool = False
    attempts: int = 0
    outputs: tuple[OutputArtifact, ...] = ()
    result: ResultSummary | None = None


@dataclass(frozen=True)
class JobEvent:
    """One message of a watch stream: a snapshot of the job (first, and on every state change)
    or a progress update."""

    job_id: str
    state: JobState
    time: datetime | None = None
    job: Job | None = None
    progress: Progress | None = None

    @property
    def is_state_change(self) -> bool:
        return self.job is not None


@dataclass(frozen=True)
class ServerInfo:
    version: str
    """The release of the server's package, e.g. ``0.1.0``."""
    api: str
    """The API it serves, e.g. ``tempering.v1``."""


@dataclass(frozen=True)
class JobDeletion:
    """What deleting a job removed."""

    job_id: str
    already_deleted: bool = False
    """The job had been deleted before; nothing was removed this time."""
    artifacts_removed: int = 0
    bytes_removed: int = 0
    """Artifacts that another job or an upload still refers to (same bytes) are kept."""


@dataclass(frozen=True)
class JobPage:
    jobs: tuple[Job, ...]
    next_page_token: str = ""
    """Empty on the last page."""


@dataclass(frozen=True)
class HardeningOutcome:
    """Where a finished hardening run put its files, and the report they hold."""

    model_path: Path
    report_path: Path
    card_path: Path
    plot_path: Path | None
    """None only for a job the server finished before it served the plot."""
    report: dict[str, Any]
    job: Job | None = None
    """The server's job, or None for a run in this process."""
    tokenizer_path: Path | None = None
    """A text model's tokenizer, returned beside the model."""
    schema_path: Path | None = None
    """A tabular model's feature schema, returned beside the model."""
