"""The bounds of every field the API takes, and of what it sends back: one table, read by the
edge check (:mod:`service.api.request_bounds`), the use cases and the error interceptor, and
listed in docs/service.md ("Limits").

A string field not named in :data:`MAX_CHARS` gets :data:`DEFAULT_MAX_CHARS`, a repeated or map
field not named in :data:`MAX_ITEMS` gets :data:`DEFAULT_MAX_ITEMS`, so a field added to the
proto later is bounded too. Keys are ``Message.field`` as in the proto.
"""

from __future__ import annotations

DEFAULT_MAX_CHARS = 256
"""Ids, labels, names: any string field the table below does not name."""
DEFAULT_MAX_ITEMS = 64
"""Any repeated or map field the table below does not name."""
MAX_LABEL_KEY_CHARS = 63

MAX_CHARS: dict[str, int] = {
    "ModelUploadHeader.name": 300,
    "DatasetUploadHeader.name": 300,
    "TokenizerUploadHeader.name": 300,
    "SchemaUploadHeader.name": 300,
    "SubmitJobRequest.idempotency_key": 200,
    "JobSpec.architecture": 4096,
    "JobSpec.webhook_url": 2048,
    "ListJobsRequest.page_token": 128,
}
"""Longest value, in characters, of the string fields that differ from the default."""

MAX_ITEMS: dict[str, int] = {
    "ThreatModel.lower": 4096,
    "ThreatModel.upper": 4096,
    "SubmitJobRequest.labels": 32,
    "ListJobsRequest.labels": 32,
    "ListJobsRequest.states": 8,
}
"""Most elements of the repeated and map fields that differ from the default. Input bounds
come one per channel or per feature; 4096 covers per-feature bounds of 64x64 images."""

MAX_SCHEMA_BYTES = 1_000_000
"""Largest feature schema upload (UploadSchema): a schema describes columns and holds no data,
and the engine's schema reader refuses a larger file
(:data:`workers.engine.tabular.schema.MAX_SCHEMA_BYTES`)."""

MAX_PAGE_BYTES = 2 * 1024 * 1024
"""Largest ListJobs response: a page is cut short (with a next_page_token) before it passes
this, so a client with gRPC's default 4 MiB receive limit can always list every job."""

MAX_PAGE_SIZE = 500
"""Most jobs in a ListJobs page (``page_size``); :data:`MAX_PAGE_BYTES` may cut it shorter."""

MAX_QUOTED_CHARS = 80
"""Longest user value an error message quotes (:func:`quoted`)."""
MAX_MESSAGE_CHARS = 1024
"""Longest error message a status carries; the interceptor cuts longer ones."""


def quoted(value: str, limit: int = MAX_QUOTED_CHARS) -> str:
    """``value`` for an error message: repr-quoted, cut to ``limit`` characters."""
    if len(value) <= limit:
        return repr(value)
    return repr(value[:limit]) + f"... ({len(value)} characters)"
