"""The one translation of a job into the engine's request.

A worker's runner makes it for a queued job (:mod:`workers.runner`), ``temper harden --local``
for a job that never leaves the user's machine (:mod:`workers.local`): both start from the
service's :class:`~service.core.domain.JobSpec`, so a flag means the same on either path and a
default left out is the engine's default on both.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from service.core.domain import JobSpec
from workers.engine.spec import (
    INLINE_WEIGHT_LIMIT,
    HardeningRequest,
    ModelFormat,
    ModelSource,
    TextThreatModel,
)


@dataclass(frozen=True)
class JobFiles:
    """Where the job's inputs are on this machine."""

    model: Path
    model_format: ModelFormat
    train: Path
    eval: Path | None = None
    verified_sha256: Mapping[Path, str] = field(default_factory=dict)
    """Files whose SHA-256 was checked against the store's record, so the engine need not
    hash them again for the report."""
    tokenizer: Path | None = None
    """A text model's tokenizer.json."""
    schema: Path | None = None
    """A tabular model's feature schema (JSON)."""
    external_data_beside: bool = False
    """``--local`` only: an ONNX model may read external data files from its own folder
    (see :attr:`~workers.engine.spec.ModelSource.external_data_beside`)."""


def engine_request(
    spec: JobSpec,
    files: JobFiles,
    *,
    allow_trusted_formats: bool,
    inline_weight_limit: int = INLINE_WEIGHT_LIMIT,
) -> HardeningRequest:
    """``inline_weight_limit``: the operator's (``TEMPERING_INLINE_WEIGHT_LIMIT``); ``--local``
    keeps the engine's."""
    return HardeningRequest(
        model=ModelSource(
            path=files.model,
            format=files.model_format,
            architecture=spec.architecture,
            num_classes=spec.num_classes,
            external_data_beside=files.external_data_beside,
        ),
        train_data=files.train,
        eval_data=files.eval,
        threat=spec.threat,
        training=spec.training,
        evaluation=spec.evaluation,
        seed=spec.seed,
        allow_trusted_formats=allow_trusted_formats,
        time_limit_seconds=spec.time_limit_seconds,
        verified_sha256=files.verified_sha256,
        tokenizer=files.tokenizer,
        text_threat=spec.text_threat or TextThreatModel(),
        feature_schema=files.schema,
        inline_weight_limit=inline_weight_limit,
    )
