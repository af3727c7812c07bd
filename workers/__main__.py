"""``python -m workers``: a worker process (``temper worker`` runs it as a child)."""

from service.core.extras import exit_if_extra_missing

try:
    from workers.celery_app import worker_main
except ModuleNotFoundError as error:
    exit_if_extra_missing(error, "a worker", "worker")
    raise

raise SystemExit(worker_main())
