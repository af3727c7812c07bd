"""Log lines of the server and the workers: text for people or one JSON object per line, each
carrying the job and the tenant it was written for.

The job id and tenant live in context variables: :func:`log_context` sets them for a block (the
job runner, for a whole job run) and :func:`bind_log_context` inside a context that is thrown
away afterwards (the authentication interceptor, in the copy of the context it makes for each
call). A filter on the one handler copies them onto every record that reaches it, so the lines
of SQLAlchemy, Celery or torch written while a job runs carry them as well. Threads start with
an empty context: work handed to another thread carries no job id unless it is run in a copy.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from service.core.settings import Settings

JOB_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "tempering_log_job_id", default=None
)
TENANT: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "tempering_log_tenant", default=None
)

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(job_tag)s%(message)s"

_RECORD_ATTRIBUTES = frozenset(
    logging.LogRecord("", 0, "", 0, "", None, None).__dict__.keys()
    | {"message", "asctime", "job_id", "tenant", "job_tag"}
)
"""What every record has; anything else on a record came from ``extra=``."""


@contextlib.contextmanager
def log_context(*, job_id: str | None = None, tenant: str | None = None) -> Iterator[None]:
    """Lines logged inside carry ``job_id`` and ``tenant`` (a value not given is kept from
    outside). Both are restored on the way out, including values bound inside."""
    job_token = JOB_ID.set(job_id if job_id is not None else JOB_ID.get())
    tenant_token = TENANT.set(tenant if tenant is not None else TENANT.get())
    try:
        yield
    finally:
        TENANT.reset(tenant_token)
        JOB_ID.reset(job_token)


def bind_log_context(*, job_id: str | None = None, tenant: str | None = None) -> None:
    """Set the given values until the enclosing :func:`log_context` ends, or for good in the
    current context: use it only in a context made for one unit of work."""
    if job_id is not None:
        JOB_ID.set(job_id)
    if tenant is not None:
        TENANT.set(tenant)


class ContextFilter(logging.Filter):
    """Adds ``job_id`` and ``tenant`` from the context to each record (``extra=`` wins)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "job_id", None) is None:
            record.job_id = JOB_ID.get()
        if getattr(record, "tenant", None) is None:
            record.tenant = TENANT.get()
        return True


class TextFormatter(logging.Formatter):
    """The classic line, with ``[job ID]`` before the message while a job is in context."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        job_id = getattr(record, "job_id", None)
        record.job_tag = f"[job {job_id}] " if job_id else ""
        return super().format(record)


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line: ``time`` (RFC 3339, UTC), ``level``,
    ``logger``, ``message``, ``job_id`` and ``tenant`` when known, ``exception`` and ``stack``
    when there are any, then the record's JSON-able ``extra=`` fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            key: value
            for key, value in record.__dict__.items()
            if key not in _RECORD_ATTRIBUTES and not key.startswith("_") and _json_able(value)
        }
        entry.update(
            time=rfc3339_utc(record.created),
            level=record.levelname,
            logger=record.name,
            message=record.getMessage(),
        )
        for key in ("job_id", "tenant"):
            if (value := getattr(record, key, None)) is not None:
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, ensure_ascii=False)


def rfc3339_utc(timestamp: float) -> str:
    moment = datetime.fromtimestamp(timestamp, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _json_able(value: Any) -> bool:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return False
    return True


def log_handler(log_format: str) -> logging.Handler:
    """A stderr handler writing ``text`` or ``json`` lines with the job context."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    handler.addFilter(ContextFilter())
    return handler


def configure_logging(settings: Settings) -> None:
    """Make this process log at ``settings.log_level`` in ``settings.log_format`` to stderr,
    replacing whatever handlers the root logger had; Python warnings become log records."""
    logging.basicConfig(
        level=settings.log_level.upper(), handlers=[log_handler(settings.log_format)], force=True
    )
    logging.captureWarnings(True)
