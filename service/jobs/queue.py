"""Queueing jobs on the Celery broker. Only the job's id travels; the worker reads the rest.

The server sends with a Celery app of its own that knows no task: it names the task
(:data:`service.core.broker.RUN_JOB_TASK`) and so never imports the worker's code."""

from __future__ import annotations

import logging

from celery import Celery
from kombu.exceptions import OperationalError

from service.core.broker import RUN_JOB_TASK, app_conf
from service.core.errors import Unavailable
from service.core.settings import Settings

log = logging.getLogger(__name__)


def producer_app(settings: Settings) -> Celery:
    """A Celery app that only sends jobs, configured as the workers' app is for sending."""
    app = Celery("tempering", broker=settings.broker_url)
    app.conf.update(**app_conf(settings))
    return app


class CeleryJobQueue:
    def __init__(self, app: Celery, queue: str) -> None:
        self._app = app
        self._queue = queue

    def enqueue(self, job_id: str) -> None:
        try:
            self._app.send_task(RUN_JOB_TASK, args=[job_id], task_id=job_id, queue=self._queue)
        except (OperationalError, OSError) as exc:
            raise Unavailable(
                f"the job queue cannot be reached ({exc}); the job was not queued, try again"
            ) from exc

    def revoke(self, job_id: str) -> None:
        """Drop a queued job's message on brokers that broadcast (Redis). Elsewhere the worker
        finds the job CANCELLED in the job store and skips it, which is what makes this safe
        to lose."""
        if not self._broadcasts():
            return
        try:
            self._app.control.revoke(job_id)
        except Exception:
            log.warning("could not revoke the message of job %s", job_id, exc_info=True)

    def _broadcasts(self) -> bool:
        with self._app.connection_for_write() as connection:
            return bool(connection.transport.implements.exchange_type & {"fanout"})
