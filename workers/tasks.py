"""Celery tasks. Thin on purpose: a task receives a job id and hands it to the job runner."""

from __future__ import annotations

import functools
import os

from celery import Celery, Task, shared_task
from sqlalchemy.exc import OperationalError

from service.core.broker import RUN_JOB_TASK
from workers.celery_app import settings_of
from workers.runner import JobRunner, build_runner
from workers.worker_metrics import active_metrics


@shared_task(
    name=RUN_JOB_TASK,
    bind=True,
    ignore_result=True,
    autoretry_for=(OperationalError,),
    retry_backoff=5,
    retry_backoff_max=300,
    max_retries=8,
)
def run_job(self: Task, job_id: str) -> str:
    """Run one hardening job to its end; returns the state it ended in. A job store that cannot
    be reached (OperationalError) is retried with backoff rather than leaving the job queued."""
    return _runner(self.app, os.getpid()).run(job_id).value


@functools.cache
def _runner(app: Celery, pid: int) -> JobRunner:
    """One runner (and database pool) per worker process; ``pid`` keeps a forked child from
    reusing its parent's connections."""
    return build_runner(settings_of(app), observer=active_metrics())
