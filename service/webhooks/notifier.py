"""The notifier: a loop in the server process that tells webhooks about jobs that ended.

SubmitJob records one row per webhook URL in the outbox (:mod:`service.store.webhook_schema`), in
the transaction that records the job. About once a second the notifier reads the rows whose job
is SUCCEEDED, FAILED or CANCELLED (whoever ended it: a worker, a cancel, the reconciler) and
that are neither delivered nor given up and due, and for each:

1. claims it with one conditional ``UPDATE`` (``attempts`` still what it read), which also
   pushes ``next_attempt_at`` past the attempt's timeout: of several servers exactly one sends,
   and a server that dies mid-attempt leaves the row to be sent again later;
2. POSTs the signed ``job.finished`` payload (:mod:`service.webhooks.payload`,
   :mod:`service.webhooks.signing`) with ``urllib``, following no redirect;
3. records the outcome: a 2xx is delivered; a 408, a 429, a 5xx, a timeout or a connection
   error is tried again after 2 s, 4 s, 8 s, ... (at most 10 min) until
   ``webhook_max_attempts``; any other answer is given up at once (the receiver refuses it, and
   would refuse it again).

Up to :data:`SENDERS` attempts run at once on threads of their own, so one receiver that hangs
until its timeout holds back no other.

Delivery is at least once: a receiver may see a notification twice (a server died after the
POST, before recording it) and dedupes on the ``Tempering-Delivery`` id.
"""

from __future__ import annotations

import concurrent.futures
import http.client
import logging
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Row

from service.core.domain import TERMINAL_STATES, Job, utcnow
from service.core.logs import log_context
from service.core.periodic import Periodic
from service.core.settings import Settings
from service.store.db import Database, as_utc
from service.webhooks.payload import EVENT, encode, job_finished
from service.webhooks.signing import (
    DELIVERY_HEADER,
    EVENT_HEADER,
    SIGNATURE_HEADER,
    read_master_key,
    signature_header,
    tenant_secret,
)
from service.webhooks.targets import WebhookTargets

log = logging.getLogger(__name__)

POLL_SECONDS = 1.0
BACKOFF_BASE_SECONDS = 2.0
BACKOFF_CAP_SECONDS = 600.0
CLAIM_MARGIN_SECONDS = 30.0
"""How long past its timeout an attempt keeps its row from other servers."""
BATCH = 20
SENDERS = 4
"""Deliveries in flight at once; a claimed delivery is always being sent, never waiting in a
queue while its claim runs out."""
USER_AGENT = "Tempering-Webhook/1"
_RETRIED_STATUSES = frozenset({408, 429})


class Verdict(StrEnum):
    DELIVERED = "delivered"
    RETRY = "retry"
    GIVE_UP = "give up"


@dataclass(frozen=True)
class Attempt:
    verdict: Verdict
    error: str = ""


@dataclass(frozen=True)
class Delivery:
    id: str
    job_id: str
    url: str
    attempts: int
    next_attempt_at: datetime
    delivered_at: datetime | None = None
    gave_up_at: datetime | None = None
    last_error: str = ""


@dataclass(frozen=True)
class WebhookConfig:
    """What the server needs for webhooks, read once at start-up."""

    targets: WebhookTargets
    master_key: bytes | None
    """None: no secret file, so webhooks are off."""

    @classmethod
    def from_settings(cls, settings: Settings) -> WebhookConfig:
        """Raises SettingsError when the secret file cannot be read or is too short."""
        path = settings.webhook_secret_file
        key = read_master_key(path) if path is not None else None
        targets = WebhookTargets.from_settings(
            key is not None, settings.tenant_webhooks, settings.webhook_allowed_hosts
        )
        return cls(targets, key)


# --- the outbox -------------------------------------------------------------------------------


class Outbox:
    def __init__(self, database: Database) -> None:
        self._engine = database.engine
        self._deliveries = database.tables.webhook_deliveries
        self._jobs = database.tables.jobs

    def due(self, now: datetime, limit: int = BATCH) -> list[Delivery]:
        """Deliveries of ended jobs that are still to be sent and whose time has come."""
        d, jobs = self._deliveries, self._jobs
        stmt = (
            sa.select(d)
            .join(jobs, jobs.c.id == d.c.job_id)
            .where(
                jobs.c.state.in_(sorted(s.value for s in TERMINAL_STATES)),
                d.c.delivered_at.is_(None),
                d.c.gave_up_at.is_(None),
                d.c.next_attempt_at <= now,
            )
            .order_by(d.c.next_attempt_at)
            .limit(limit)
        )
        with self._engine.connect() as conn:
            return [_delivery_from_row(row) for row in conn.execute(stmt)]

    def of_job(self, job_id: str) -> list[Delivery]:
        d = self._deliveries
        with self._engine.connect() as conn:
            rows = conn.execute(sa.select(d).where(d.c.job_id == job_id).order_by(d.c.url))
            return [_delivery_from_row(row) for row in rows]

    def claim(self, delivery: Delivery, now: datetime, hold: timedelta) -> Delivery | None:
        """Start an attempt: the delivery with its attempt counted, or None when another
        server claimed it first or it is done."""
        d = self._deliveries
        until = now + hold
        changed = self._update(
            delivery,
            attempts=d.c.attempts + 1,
            next_attempt_at=until,
        )
        if not changed:
            return None
        return Delivery(
            delivery.id,
            delivery.job_id,
            delivery.url,
            delivery.attempts + 1,
            until,
            last_error=delivery.last_error,
        )

    def delivered(self, delivery: Delivery, now: datetime) -> bool:
        return self._update(delivery, delivered_at=now, last_error="")

    def retry_at(self, delivery: Delivery, when: datetime, error: str) -> bool:
        return self._update(delivery, next_attempt_at=when, last_error=error)

    def give_up(self, delivery: Delivery, now: datetime, error: str) -> bool:
        return self._update(delivery, gave_up_at=now, last_error=error)

    def _update(self, delivery: Delivery, **values: Any) -> bool:
        """Change the row only if it is still open and at the attempt ``delivery`` read."""
        d = self._deliveries
        where = sa.and_(
            d.c.id == delivery.id,
            d.c.attempts == delivery.attempts,
            d.c.delivered_at.is_(None),
            d.c.gave_up_at.is_(None),
        )
        with self._engine.begin() as conn:
            return conn.execute(d.update().where(where).values(**values)).rowcount > 0


def _delivery_from_row(row: Row[Any]) -> Delivery:
    due = as_utc(row.next_attempt_at)
    assert due is not None
    return Delivery(
        id=row.id,
        job_id=row.job_id,
        url=row.url,
        attempts=row.attempts,
        next_attempt_at=due,
        delivered_at=as_utc(row.delivered_at),
        gave_up_at=as_utc(row.gave_up_at),
        last_error=row.last_error or "",
    )


# --- one POST ---------------------------------------------------------------------------------


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A redirect ends the attempt as an HTTP error: the next hop could be any host."""

    def redirect_request(self, *_: Any, **__: Any) -> None:
        return None


_OPENER = urllib.request.build_opener(_NoRedirects())


def verdict_for(status: int) -> Verdict:
    if 200 <= status < 300:
        return Verdict.DELIVERED
    if status in _RETRIED_STATUSES or status >= 500:
        return Verdict.RETRY
    return Verdict.GIVE_UP


def post(url: str, body: bytes, headers: dict[str, str], timeout: float) -> Attempt:
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with _OPENER.open(request, timeout=timeout) as response:
            status = response.status
    except urllib.error.HTTPError as exc:
        status = exc.code
        exc.close()
    except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
        reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
        return Attempt(Verdict.RETRY, f"{type(exc).__name__}: {reason}")
    verdict = verdict_for(status)
    error = "" if verdict is Verdict.DELIVERED else f"HTTP {status}"
    if 300 <= status < 400:
        error += " (a redirect; webhooks do not follow redirects)"
    return Attempt(verdict, error)


def backoff(attempts: int, base: float = BACKOFF_BASE_SECONDS) -> float:
    """Seconds to wait after the ``attempts``-th failed attempt."""
    return float(min(base * 2 ** (attempts - 1), BACKOFF_CAP_SECONDS))


# --- the loop ---------------------------------------------------------------------------------


class Notifier:
    def __init__(
        self,
        outbox: Outbox,
        get_job: Callable[[str], Job],
        master_key: bytes,
        *,
        max_attempts: int,
        timeout: float,
        interval: float = POLL_SECONDS,
        backoff_base: float = BACKOFF_BASE_SECONDS,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._outbox = outbox
        self._get_job = get_job
        self._master_key = master_key
        self._max_attempts = max_attempts
        self._timeout = timeout
        self._backoff_base = backoff_base
        self._hold = timedelta(seconds=timeout + CLAIM_MARGIN_SECONDS)
        self._clock = clock
        self._periodic = Periodic("webhook-notifier", self.run_once, interval)
        self._senders = concurrent.futures.ThreadPoolExecutor(
            SENDERS, thread_name_prefix="webhook-sender"
        )
        self._free_senders = threading.BoundedSemaphore(SENDERS)

    def run_once(self) -> int:
        """Start an attempt of each due delivery, up to :data:`SENDERS` in flight at once, and
        return how many were started. Attempts run on their own threads, so a receiver that
        hangs until its timeout holds back no other delivery."""
        started = 0
        for due in self._outbox.due(self._clock()):
            if not self._free_senders.acquire(blocking=False):
                break
            claimed = self._outbox.claim(due, self._clock(), self._hold)
            if claimed is None:
                self._free_senders.release()
                continue
            self._senders.submit(self._attempt, claimed)
            started += 1
        return started

    def _attempt(self, delivery: Delivery) -> None:
        with log_context(job_id=delivery.job_id):
            try:
                job = self._get_job(delivery.job_id)
                with log_context(tenant=job.tenant):
                    self._send(delivery, job)
            except Exception:
                log.exception("webhook delivery %s failed unexpectedly", delivery.id)
            finally:
                self._free_senders.release()

    def _send(self, delivery: Delivery, job: Job) -> None:
        body = encode(job_finished(job, delivery.id))
        headers = {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            EVENT_HEADER: EVENT,
            DELIVERY_HEADER: delivery.id,
            SIGNATURE_HEADER: signature_header(
                tenant_secret(self._master_key, job.tenant), body, int(time.time())
            ),
        }
        attempt = post(delivery.url, body, headers, self._timeout)
        self._record(delivery, attempt)

    def _record(self, delivery: Delivery, attempt: Attempt) -> None:
        now = self._clock()
        where = f"webhook delivery {delivery.id} of job {delivery.job_id}"
        if attempt.verdict is Verdict.DELIVERED:
            self._outbox.delivered(delivery, now)
            log.info("%s: delivered (attempt %d)", where, delivery.attempts)
        elif attempt.verdict is Verdict.GIVE_UP or delivery.attempts >= self._max_attempts:
            self._outbox.give_up(delivery, now, attempt.error)
            log.warning(
                "%s: given up after %d attempt(s): %s", where, delivery.attempts, attempt.error
            )
        else:
            wait = backoff(delivery.attempts, self._backoff_base)
            self._outbox.retry_at(delivery, now + timedelta(seconds=wait), attempt.error)
            log.warning("%s: %s; trying again in %.0f s", where, attempt.error, wait)

    def start(self) -> Notifier:
        self._periodic.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self._periodic.stop(timeout)
        self._senders.shutdown(wait=False, cancel_futures=True)


def start_notifier(
    settings: Settings, database: Database, get_job: Callable[[str], Job], config: WebhookConfig
) -> Notifier | None:
    """The server's notifier thread, running; None when webhooks are off."""
    if config.master_key is None:
        return None
    return Notifier(
        Outbox(database),
        get_job,
        config.master_key,
        max_attempts=settings.webhook_max_attempts,
        timeout=settings.webhook_timeout,
    ).start()
