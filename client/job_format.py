"""How jobs and outcomes look in ``--json`` output and in terminal listings."""

from __future__ import annotations

import dataclasses
from datetime import datetime
from enum import Enum
from pathlib import Path
from typing import Any

from client.domain import HardeningOutcome, Job, JobEvent


def jsonable(value: Any) -> Any:
    """Dataclasses, enums, datetimes and paths as JSON-ready values."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if hasattr(value, "items"):
        return {str(k): jsonable(v) for k, v in value.items()}
    return value


def job_json(job: Job) -> dict[str, Any]:
    data: dict[str, Any] = jsonable(job)
    return data


def event_json(event: JobEvent) -> dict[str, Any]:
    data: dict[str, Any] = jsonable(event)
    return data


def outcome_json(outcome: HardeningOutcome) -> dict[str, Any]:
    """Paths of the files and the headline numbers; the report file has everything else."""
    report = outcome.report
    outputs = {
        "model": str(outcome.model_path),
        "report": str(outcome.report_path),
        "card": str(outcome.card_path),
        "plot": str(outcome.plot_path) if outcome.plot_path else None,
    }
    if outcome.tokenizer_path is not None:
        outputs["tokenizer"] = str(outcome.tokenizer_path)
    if outcome.schema_path is not None:
        outputs["schema"] = str(outcome.schema_path)
    return {
        "state": "SUCCEEDED",
        "job_id": outcome.job.id if outcome.job else None,
        "outputs": outputs,
        **{label: _headline(report[label]) for label in ("original", "hardened")},
    }


def _headline(scores: dict[str, Any]) -> dict[str, Any]:
    return {
        "clean_accuracy": scores["clean_accuracy"],
        "robust_accuracy": scores["robust_accuracy"],
        "gradient_masking_suspected": bool(scores.get("gradient_masking_suspected")),
    }


JOB_COLUMNS = ("ID", "STATE", "METHOD", "EPS", "CREATED", "PROGRESS", "LABELS")


def job_row(job: Job) -> tuple[str, ...]:
    params = job.spec.params if job.spec else None
    progress = job.progress
    progress_text = ""
    if progress is not None and not job.state.is_terminal:
        progress_text = progress.stage
        if progress.epochs:
            progress_text += f" {progress.epoch}/{progress.epochs}"
    return (
        job.id,
        job.state.value,
        params.method.value if params else "",
        f"{params.eps:g} {params.norm.value}" if params else "",
        job.created_at.strftime("%Y-%m-%d %H:%M") if job.created_at else "",
        progress_text or (job.reason[:40] if job.reason else ""),
        ",".join(f"{k}={v}" for k, v in sorted(job.labels.items())),
    )


def table(rows: list[tuple[str, ...]], header: tuple[str, ...]) -> str:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in [header, *rows]
    )
