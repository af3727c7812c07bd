"""The body of a ``job.finished`` notification (documented in docs/webhooks.md).

It names the job, how it ended, its headline scores and its outputs, never a secret: no API
key, no tenant secret, no storage location.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from service.core.domain import Job

EVENT = "job.finished"


def job_finished(job: Job, delivery_id: str) -> dict[str, Any]:
    return {
        "event": EVENT,
        "delivery_id": delivery_id,
        "tenant": job.tenant,
        "job": {
            "id": job.id,
            "state": job.state.value,
            "reason": job.reason,
            "labels": dict(job.labels),
            "method": job.spec.training.method.value,
            "created_at": _time(job.created_at),
            "started_at": _time(job.started_at),
            "finished_at": _time(job.finished_at),
            "attempts": job.attempts,
            "result": job.result.to_json() if job.result is not None else None,
            "outputs": [
                {
                    "kind": output.kind.value,
                    "filename": output.filename,
                    "sha256": output.sha256,
                    "size_bytes": output.size_bytes,
                }
                for output in job.outputs
            ],
        },
    }


def encode(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()


def _time(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None
