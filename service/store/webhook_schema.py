"""The job store's webhook outbox: ``<prefix>webhook_deliveries``, one row per notification to
send (see :mod:`service.webhooks.notifier` for how the notifier works through it).

- ``id``: the delivery id, sent as ``Tempering-Delivery``; receivers dedupe on it;
- ``job_id``, ``url``: which job to announce, and where;
- ``attempts``: POSTs started so far (also the compare-and-set token of a claim);
- ``next_attempt_at``: not before then (pushed ahead while an attempt is under way);
- ``delivered_at`` / ``gave_up_at``: set once, when the notification is done with;
- ``last_error``: why the last attempt failed, for the operator.

The rows are written with the job, in the transaction that records it, so a job that was
accepted is announced even if the server stops right after.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from service.core.setting_values import MAX_URL_CHARS


def deliveries_table(prefix: str, metadata: sa.MetaData) -> sa.Table:
    return sa.Table(
        f"{prefix}webhook_deliveries",
        metadata,
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column(
            "job_id",
            sa.String(64),
            sa.ForeignKey(f"{prefix}jobs.id", ondelete="CASCADE"),
            nullable=False,
            index=True,
        ),
        sa.Column("url", sa.String(MAX_URL_CHARS), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False, default=0),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False, index=True),
        sa.Column("delivered_at", sa.DateTime(timezone=True)),
        sa.Column("gave_up_at", sa.DateTime(timezone=True)),
        sa.Column("last_error", sa.Text, nullable=False, default=""),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )


def delivery_rows(job_id: str, urls: Iterable[str], now: datetime) -> list[dict[str, Any]]:
    """The rows that announce ``job_id`` to each of ``urls`` once it ends."""
    return [
        {
            "id": uuid.uuid4().hex,
            "job_id": job_id,
            "url": url,
            "attempts": 0,
            "next_attempt_at": now,
            "last_error": "",
            "created_at": now,
        }
        for url in urls
    ]
