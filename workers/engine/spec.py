"""Typed description of one hardening job: what to load, how to harden it, how to score it.

These are plain frozen dataclasses so that the CLI, the service and the Celery task can build
them without knowing anything about torch. ``validate()`` checks every range up front and raises
:class:`~workers.engine.errors.InvalidParameter` with a message naming the field.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from workers.engine.errors import InvalidParameter


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
    """An uncompressed tar of one .onnx and its external data files (models/bundle.py)."""
    SAFETENSORS = "safetensors"
    TORCHSCRIPT = "torchscript"
    TORCH_EXPORT = "torch_export"

    @property
    def is_program(self) -> bool:
        """TorchScript and torch.export archives run code of the uploader's choosing when loaded."""
        return self in (ModelFormat.TORCHSCRIPT, ModelFormat.TORCH_EXPORT)

    @property
    def is_onnx(self) -> bool:
        """An ONNX graph: a single file, or a bundle of one with its external data."""
        return self in (ModelFormat.ONNX, ModelFormat.ONNX_BUNDLE)


class EvaluationSuite(StrEnum):
    """``standard`` is the full suite of docs/evaluation.md; ``fast`` keeps every attack family
    but with fewer iterations and restarts, for smoke tests and previews. Reports say which ran."""

    STANDARD = "standard"
    FAST = "fast"


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise InvalidParameter(message)


def _finite(value: float) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)


@dataclass(frozen=True)
class ThreatModel:
    """The attacker's budget: a norm ball of radius ``eps`` around each input, clipped to the
    input domain ``[lower, upper]`` (one pair, or one value per channel or feature)."""

    norm: Norm = Norm.LINF
    eps: float = 0.3
    lower: tuple[float, ...] = (0.0,)
    upper: tuple[float, ...] = (1.0,)

    def validate(self) -> None:
        _require(
            _finite(self.eps) and self.eps > 0, f"eps must be a positive number, got {self.eps}"
        )
        _require(
            len(self.lower) == len(self.upper) and len(self.lower) >= 1,
            "input bounds need as many lower as upper values (one pair, or one per channel)",
        )
        for lo, hi in zip(self.lower, self.upper, strict=True):
            _require(_finite(lo) and _finite(hi), "input bounds must be finite numbers")
            _require(lo < hi, f"each lower bound must be below its upper bound, got {lo} >= {hi}")


@dataclass(frozen=True)
class TrainingConfig:
    """How to harden. ``None`` means "the engine chooses": :mod:`workers.engine.training.recipe`
    derives it from the data before training starts. A value given is used as it is, so a 0 is
    a real value where one makes sense (no warm-up, no validation rows) and refused elsewhere."""

    method: Method = Method.PGD
    epochs: int | None = None
    """None derives the count from the data size (and stops early on a plateau)."""
    batch_size: int | None = None
    learning_rate: float | None = None
    """Peak of the one-cycle learning rate; None: the recipe's."""
    from_scratch: bool = False
    """Train from freshly initialised weights instead of fine-tuning the upload."""
    # adversarial training
    attack_steps: int | None = None
    """PGD steps per batch for PGD-AT and TRADES (FGSM always takes one); None lets the recipe
    choose from the data size."""
    step_size: float | None = None
    """Attack step size in input units; None: 2.5 * eps / steps (PGD, TRADES) or 1.25 * eps
    (FGSM) of the epsilon in force, which the warm-up ramps."""
    eps_warmup_epochs: float | None = None
    """Epochs over which epsilon ramps linearly from 0 to its full value; 0 = no warm-up."""
    trades_beta: float = 6.0
    # defensive distillation
    temperature: float = 100.0
    hard_label_weight: float = 0.0
    """Weight of the hard-label cross-entropy mixed into the student's soft-label loss."""
    teacher_epochs: int | None = None
    """Epochs to train the teacher at temperature T; None: as many as ``epochs``."""
    # checkpoint selection
    select_best_robust: bool = True
    """Keep the epoch with the best robust accuracy on held-out data (Rice et al. 2020)."""
    validation_size: int | None = None
    """Training rows held out to select the best epoch; None = a share sized to the data."""

    def validate(self) -> None:
        _require(isinstance(self.method, Method), f"unknown method {self.method!r}")
        _require(
            self.epochs is None or 1 <= self.epochs <= 1000,
            f"epochs must be between 1 and 1000, got {self.epochs}",
        )
        _require(
            self.batch_size is None or 1 <= self.batch_size <= 8192,
            f"batch_size must be between 1 and 8192, got {self.batch_size}",
        )
        _require(
            self.learning_rate is None
            or (_finite(self.learning_rate) and 0 < self.learning_rate <= 10),
            f"learning_rate must be in (0, 10], got {self.learning_rate}",
        )
        _require(
            self.attack_steps is None or 1 <= self.attack_steps <= 1000,
            f"attack_steps must be between 1 and 1000, got {self.attack_steps}",
        )
        _require(
            self.step_size is None or (_finite(self.step_size) and self.step_size > 0),
            f"step_size must be a positive number, got {self.step_size}",
        )
        warmup = self.eps_warmup_epochs
        _require(
            warmup is None or (_finite(warmup) and 0 <= warmup <= (self.epochs or 1000)),
            "eps_warmup_epochs must be between 0 and the number of epochs",
        )
        _require(
            _finite(self.trades_beta) and self.trades_beta > 0,
            f"trades_beta must be positive, got {self.trades_beta}",
        )
        _require(
            _finite(self.temperature) and self.temperature >= 1,
            f"temperature must be at least 1, got {self.temperature}",
        )
        _require(
            _finite(self.hard_label_weight) and 0 <= self.hard_label_weight <= 1,
            f"hard_label_weight must be in [0, 1], got {self.hard_label_weight}",
        )
        _require(
            self.teacher_epochs is None or 1 <= self.teacher_epochs <= 1000,
            f"teacher_epochs must be between 1 and 1000, got {self.teacher_epochs}",
        )
        _require(
            self.validation_size is None or 0 <= self.validation_size <= 100_000,
            "validation_size must be between 0 and 100000",
        )

    def to_dict(self) -> dict[str, Any]:
        recorded: dict[str, Any] = _jsonable(asdict(self))
        return recorded


IMAGE_EVAL_SAMPLES = 500
TEXT_EVAL_SAMPLES = 1000
TEXT_MAX_LENGTH = 256
INLINE_WEIGHT_LIMIT = 1_800_000_000
"""Bytes of weights above which a model is never held inside one ``ModelProto``: protobuf caps
a message at 2 GB (the graph needs some of it too). Above it the engine reads external tensors
straight from their files into torch, and the hardened model is written with its weights in
``hardened.onnx.data`` and returned as a bundle (docs/model-bundles.md). Operators may lower it
(``TEMPERING_INLINE_WEIGHT_LIMIT``), never raise it."""
"""Tokens kept of a text when the model accepts any length and neither the job nor the
tokenizer file names a limit."""


@dataclass(frozen=True)
class EvaluationConfig:
    suite: EvaluationSuite = EvaluationSuite.STANDARD
    samples: int | None = None
    """Held-out samples scored for both models (the same ones, in the same order); None: 500 for
    an image or tabular model (a 95% interval of about +-2.7 points around 90%, in half the time
    1,000 take; docs/evaluation.md has the trade), 1,000 for a text model (its attacks are
    cheaper per sample), fewer where the data has fewer."""
    batch_size: int = 500
    curve_points: int = 6
    """Epsilons of the robustness curve, evenly spaced from 0 to 2x the requested epsilon."""

    def validate(self) -> None:
        _require(isinstance(self.suite, EvaluationSuite), f"unknown suite {self.suite!r}")
        _require(
            self.samples is None or 1 <= self.samples <= 100_000,
            "evaluation samples must be between 1 and 100000",
        )
        _require(1 <= self.batch_size <= 8192, "evaluation batch_size must be between 1 and 8192")
        _require(2 <= self.curve_points <= 20, "curve_points must be between 2 and 20")

    def samples_or(self, default: int) -> int:
        return default if self.samples is None else self.samples


@dataclass(frozen=True)
class TextThreatModel:
    """What an attacker may change in a text, for a model that reads token ids
    (docs/text-evaluation.md): discrete edits that keep the meaning, not an L-inf ball. The
    character attack edits at most ``char_share`` of the words, the synonym attack replaces at
    most ``word_share``; ``embedding_eps`` is the radius of the per-token ball, as a share of
    the mean token-embedding norm, that adversarial training perturbs in and that the white-box
    embedding attack (an upper bound of vulnerability, not a text attack) searches."""

    char_share: float = 0.1
    word_share: float = 0.2
    embedding_eps: float = 0.03
    """Chosen on the text benchmark's validation split (docs/text.md): a larger ball cost clean
    accuracy without more robustness to synonyms."""
    max_length: int | None = None
    """Tokens kept of each text; None: the model's fixed length, else the tokenizer file's
    truncation length, else 256."""

    def validate(self) -> None:
        for name in ("char_share", "word_share"):
            value = getattr(self, name)
            _require(_finite(value) and 0 < value <= 1, f"{name} must lie in (0, 1], got {value}")
        _require(
            _finite(self.embedding_eps) and 0 < self.embedding_eps <= 10,
            f"embedding_eps must lie in (0, 10], got {self.embedding_eps}",
        )
        _require(
            self.max_length is None or 1 <= self.max_length <= 8192,
            f"max_length must be between 1 and 8192, got {self.max_length}",
        )


def check_text_method(method: Method) -> None:
    """Refuse a training method a text model cannot take (the server at SubmitJob, the text
    pipeline before it loads anything)."""
    _require(
        method is not Method.FGSM,
        "fgsm is not offered for text models: use pgd (embedding-space adversarial training,"
        " the default), trades or distillation",
    )


@dataclass(frozen=True)
class ModelSource:
    path: Path
    format: ModelFormat
    architecture: str = ""
    """Name of a built-in architecture; required for safetensors weights."""
    num_classes: int = 0
    """Classes of a built-in architecture; 0 infers it from the labels."""
    external_data_beside: bool = False
    """ONNX: read external data files from the model's own folder (confined to it). Only for
    ``temper harden --local``, where that folder is the user's; a server's model is one
    uploaded file, and a model with external data comes to it as an ONNX bundle."""


@dataclass(frozen=True)
class HardeningRequest:
    model: ModelSource
    train_data: Path
    eval_data: Path | None = None
    threat: ThreatModel = field(default_factory=ThreatModel)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig)
    seed: int = 0
    allow_trusted_formats: bool = False
    """Operator switch: accept TorchScript and torch.export uploads (they are programs)."""
    time_limit_seconds: float = 0.0
    """Stop with TimeLimitExceeded after this long; 0 means no limit."""
    verified_sha256: Mapping[Path, str] = field(default_factory=dict)
    """SHA-256 of input files the caller has just checked against these bytes (the worker does,
    for every upload); the report takes them instead of reading large inputs a second time."""
    tokenizer: Path | None = None
    """A text model's Hugging Face ``tokenizer.json``; its data are then JSON Lines or CSV of
    labelled texts (:mod:`workers.engine.text.data`)."""
    text_threat: TextThreatModel = field(default_factory=TextThreatModel)
    """The threat model of a text model; ``threat`` is that of every other model."""
    feature_schema: Path | None = None
    """A tabular model's feature schema (JSON, :mod:`workers.engine.tabular.schema`): each
    feature's kind, range, mutability and budget. With one, attacks and training stay inside
    the schema; ``threat.eps`` is the budget of features that name none, and the schema's
    ranges replace ``threat.lower`` / ``threat.upper``."""
    inline_weight_limit: int = INLINE_WEIGHT_LIMIT
    """The operator's :data:`INLINE_WEIGHT_LIMIT` (lower or equal): not the user's to choose, so
    not recorded in the report's request."""

    def validate(self) -> None:
        self.threat.validate()
        self.text_threat.validate()
        self.training.validate()
        self.evaluation.validate()
        _require(0 <= self.seed < 2**63, "seed must be a non-negative 64-bit integer")
        _require(
            self.tokenizer is None or self.feature_schema is None,
            "a feature schema describes tabular data; a text model (with a tokenizer) takes none",
        )
        _require(
            _finite(self.time_limit_seconds) and self.time_limit_seconds >= 0,
            "time_limit_seconds must be >= 0",
        )
        _require(
            0 < self.inline_weight_limit <= INLINE_WEIGHT_LIMIT,
            f"inline_weight_limit must be positive and at most {INLINE_WEIGHT_LIMIT}",
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form (enums as strings, paths as strings), recorded in the report; the
        verified digests are left out, since the report's inputs section holds every digest."""
        recorded = asdict(self)
        del recorded["verified_sha256"], recorded["inline_weight_limit"]
        return _jsonable(recorded)


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, StrEnum):
        return value.value
    return value
