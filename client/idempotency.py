"""Idempotency keys derived from what a job is made of.

``temper harden --server`` always sends an idempotency key, so that its SubmitJob can be retried
after a blip without queueing the job twice (the server answers a known key with the job it
first created). Unless the user gives one (``--idempotency-key``), the key is derived from the
SHA-256 of the model and the data files and from every parameter and label: the same inputs give
the same key, in this run and in the next.

So running a CI step again with the same inputs does not start the work again: it follows the
job that is still queued or running, or downloads the results of the one that succeeded. A job
that failed or was cancelled is not reused: the next run submits under
:func:`next_idempotency_key` of that job's id, deterministic too, so two re-runs that race still
meet on one new job.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping
from enum import Enum
from pathlib import Path
from typing import Any

from client.bundle import model_upload
from client.domain import HardeningParams, MlflowTracking, ModelFormat
from client.transfer import digest_file

KEY_PREFIX = "temper-"
VERSION = "v1"
"""Bumped when what goes into a key changes, so old and new keys never collide."""


def derive_idempotency_key(
    model_path: Path,
    model_format: ModelFormat,
    data_path: Path,
    eval_data_path: Path | None,
    params: HardeningParams,
    labels: Mapping[str, str] | None = None,
    webhook_url: str = "",
    mlflow: MlflowTracking | None = None,
    *,
    tokenizer_path: Path | None = None,
    schema_path: Path | None = None,
) -> str:
    """``temper-v1-`` and 40 hex digits of the SHA-256 of the inputs' digests, the parameters
    and the labels (the server compares both when a key comes back)."""
    document = {
        "model": _model_document(model_path, model_format),
        "train": digest_file(data_path).sha256,
        "eval": digest_file(eval_data_path).sha256 if eval_data_path is not None else None,
        "params": _plain(dataclasses.asdict(params)),
        "labels": dict(sorted((labels or {}).items())),
    }
    if webhook_url:  # only when set, so that keys of jobs without one stay as they were
        document["webhook_url"] = webhook_url
    if mlflow is not None:
        document["mlflow"] = dataclasses.asdict(mlflow)
    if tokenizer_path is not None:
        document["tokenizer"] = digest_file(tokenizer_path).sha256
    if schema_path is not None:
        document["schema"] = digest_file(schema_path).sha256
    return _key(json.dumps(document, sort_keys=True, separators=(",", ":")))


def _model_document(path: Path, model_format: ModelFormat) -> dict[str, str]:
    """What is uploaded for the model: an ONNX model with external data goes as a bundle of it
    and its data files, so a changed data file makes another key."""
    upload = model_upload(path, model_format)
    if upload.format is model_format:
        return {"sha256": upload.digest.sha256, "format": model_format.value}
    return {"sha256": upload.digest.sha256, "format": model_format.value, "sent_as": upload.format}


def next_idempotency_key(key: str, failed_job_id: str) -> str:
    """The key to submit under when ``key`` names a job that failed or was cancelled."""
    return _key(f"{key}\nafter:{failed_job_id}")


def _key(text: str) -> str:
    return f"{KEY_PREFIX}{VERSION}-{hashlib.sha256(text.encode()).hexdigest()[:40]}"


def _plain(value: Any) -> Any:
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value
