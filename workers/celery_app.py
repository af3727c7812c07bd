"""The Celery application: one queue, one job at a time per worker process, acks after the job.

Settings fit hour-long GPU jobs: a message is acknowledged only when its job has ended
(``task_acks_late``), a worker takes one message at a time (``worker_prefetch_multiplier=1``),
a job whose worker process died goes back to the queue (``task_reject_on_worker_lost``), and
Redis waits ``visibility_timeout`` seconds (longer than any job may run) before it hands an
unacknowledged message to another worker. The job's state lives in the job store, not in a
Celery result backend.

``celery -A workers.celery_app worker`` finds :data:`app`, built from ``TEMPERING_*`` variables
the first time it is asked for; :func:`worker_main` does the same with command-line flags.

Logging is :func:`service.core.logs.configure_logging`'s, not Celery's, so that the worker's own
lines, Celery's task lines and the job's share one format, text or JSON, and carry the job id
while a job runs. It is configured on ``celeryd_init``, the first thing a starting worker does
(before Celery's own warnings), and Celery leaves it alone because a receiver of its
``setup_logging`` signal is connected (``worker_hijack_root_logger`` then never applies). The
pool's process inherits it when it is forked. The worker starts ``--quiet``, without its banner;
what Celery still prints itself on a shutdown signal goes to stdout, the log to stderr. Celery's
``Task ... succeeded`` line is dropped for our task, whose runner logs how the job really ended,
and its root-privilege warning is replaced by one line of ours (:func:`_explain_running_as_root`).
"""

from __future__ import annotations

import functools
import logging
import os
import sys
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

from celery import Celery, current_app, signals
from celery.app.trace import LOG_SUCCESS
from celery.exceptions import SecurityWarning

from service.core.broker import RUN_JOB_TASK, app_conf, worker_command
from service.core.logs import configure_logging
from service.core.settings import Settings, SettingsError
from service.core.settings_flags import settings_parser
from workers.engine.memory import default_memory_limit, limit_memory

SETTINGS_KEY = "tempering_settings"

log = logging.getLogger(__name__)


def create_app(settings: Settings) -> Celery:
    app = Celery("tempering", broker=settings.broker_url, include=["workers.tasks"])
    app.conf.update(
        **app_conf(settings),
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        worker_concurrency=1,
        # a running job goes on when the broker connection drops (Redis restarted): its lease
        # in the job store, not the broker's message, says who runs it
        worker_cancel_long_running_tasks_on_connection_loss=False,
        worker_hijack_root_logger=True,
        worker_redirect_stdouts=False,
        **{SETTINGS_KEY: settings},
    )
    return app


def settings_of(app: Celery) -> Settings:
    return settings_of_conf(app.conf)


def settings_of_conf(conf: Any) -> Settings:
    settings = conf.get(SETTINGS_KEY)
    if not isinstance(settings, Settings):
        raise RuntimeError("this Celery app was not made by workers.celery_app.create_app")
    return settings


def worker_main(argv: Sequence[str] | None = None) -> int:
    """Run one worker (``python -m workers``, ``temper worker``). Start one per GPU."""
    parser = settings_parser(
        prog="tempering-worker", description="Run a Tempering hardening worker."
    )
    parser.add_argument("--hostname", metavar="NAME", help="Celery node name, e.g. gpu0@%%h")
    args = parser.parse_args(argv)
    try:
        settings = Settings.load(os.environ, args)
    except SettingsError as exc:
        print(f"tempering: {exc}", file=sys.stderr)
        return 2
    create_app(settings).worker_main(argv=worker_command(settings, args.hostname))
    return 0


@signals.celeryd_init.connect
def _configure_worker_logging(conf: Any, **_: Any) -> None:
    configure_logging(settings_of_conf(conf))
    logging.getLogger("celery.app.trace").addFilter(_drop_job_task_success)
    _explain_running_as_root()


def _drop_job_task_success(record: logging.LogRecord) -> bool:
    """Celery logs every run of our task as ``succeeded``, a cancelled or failed job too; the
    runner logs the job's real end instead (``job ID cancelled: ...``)."""
    args = record.args
    return not (
        record.msg == LOG_SUCCESS and isinstance(args, Mapping) and args.get("name") == RUN_JOB_TASK
    )


def _explain_running_as_root() -> None:
    """Run as root, Celery warns with a multi-line SecurityWarning telling to use ``--uid``; a
    developer's single-machine run often is root on purpose. One line of ours says what it means
    and what to do instead (docs/service.md, "Running as root")."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return
    warnings.filterwarnings(
        "ignore", message="You're running the worker with superuser", category=SecurityWarning
    )
    log.warning(
        "this worker runs as root: the jobs it runs read models and data that tenants uploaded,"
        " so a flaw in a model loader would own the machine; run workers as an unprivileged user"
        " (the images and the Helm chart use uid 10001)"
    )


@signals.setup_logging.connect
def _keep_celery_from_configuring_logging(**_: Any) -> None:
    """Connected, Celery skips its own logging set-up; the worker's was done at ``celeryd_init``."""


@signals.worker_process_init.connect
def _limit_job_memory(**_: Any) -> None:
    """In the pool process, where the jobs run: a model whose memory grows with the batch fails
    its job with a clear reason instead of reaching the host's OOM killer."""
    limit = settings_of(current_app).job_memory_limit
    if limit is None:
        limit = default_memory_limit()
    if limit:
        limit_memory(limit)
        log.info("jobs may use %.3g GiB of memory (TEMPERING_JOB_MEMORY_LIMIT)", limit / 2**30)


@signals.worker_process_init.connect
def _serve_worker_metrics(**_: Any) -> None:
    """In the pool process that runs the jobs (concurrency 1), not in the parent."""
    from workers.worker_metrics import start_worker_metrics

    start_worker_metrics(settings_of(current_app))


@functools.cache
def _app_from_environment() -> Celery:
    return create_app(Settings.load(os.environ))


def __getattr__(name: str) -> Any:
    if name == "app":
        return _app_from_environment()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
