"""``python -m service.ops.local_worker_process PARENT_PID ARGS...``: the process of the local
worker that ``python -m service`` starts. It ties itself to the server
(:mod:`service.ops.parent_death`), so that a server killed with SIGKILL leaves no worker behind,
and then runs ``celery -A workers.celery_app ARGS...`` in this same process."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from service.core.broker import WORKER_APP
from service.ops.parent_death import die_with_parent


def main(argv: Sequence[str]) -> None:
    parent_pid, *celery_args = argv
    die_with_parent(int(parent_pid))
    sys.argv = ["celery", "-A", WORKER_APP, *celery_args]
    from celery.__main__ import main as celery_main

    celery_main()


if __name__ == "__main__":
    main(sys.argv[1:])
