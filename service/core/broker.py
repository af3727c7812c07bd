"""What the server and the workers agree on about the broker, and nothing that imports Celery.

The server sends a job id under the task name :data:`RUN_JOB_TASK` with a send-only app
(:func:`service.jobs.queue.producer_app`); the worker's app (``workers.celery_app``) registers
the task under that name. Both apply :func:`app_conf`, so the queue, the routes, the serializer
and the transport options cannot drift apart. The server starts its local worker by the module
name :data:`WORKER_APP`, as ``celery -A`` does, never by importing it.
"""

from __future__ import annotations

from typing import Any

from service.core.settings import Settings

RUN_JOB_TASK = "tempering.run_job"
WORKER_APP = "workers.celery_app"
"""The module ``celery -A`` loads in a worker process."""


def app_conf(settings: Settings) -> dict[str, Any]:
    """Celery settings that senders and workers share."""
    return {
        "task_default_queue": settings.queue,
        "task_routes": {RUN_JOB_TASK: {"queue": settings.queue}},
        "task_ignore_result": True,
        "task_serializer": "json",
        "accept_content": ["json"],
        "broker_transport_options": broker_transport_options(settings),
        "broker_connection_retry_on_startup": True,
    }


def broker_transport_options(settings: Settings) -> dict[str, Any]:
    """Options differ per transport: kombu's SQLAlchemy transport hands its options to
    ``create_engine``, where Redis's ``visibility_timeout`` would be an error."""
    if settings.broker_url.startswith("sqla+"):
        return {"connect_args": {"timeout": 30}}
    return {"visibility_timeout": settings.visibility_timeout}


def worker_command(settings: Settings, hostname: str | None = None) -> list[str]:
    """Arguments after ``celery -A workers.celery_app`` that start one worker process, without
    Celery's banner: the worker's own log says what it is (the banner is no log line, it breaks
    JSON logs and repeats in the server's log for its local worker)."""
    command = [
        "--quiet",
        "worker",
        "--queues",
        settings.queue,
        "--concurrency",
        "1",
        "--prefetch-multiplier",
        "1",
        "--loglevel",
        settings.log_level,
        "--without-gossip",
        "--without-mingle",
    ]
    if hostname:
        command += ["--hostname", hostname]
    return command
