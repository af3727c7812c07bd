"""Celery worker application and the hardening engine it runs.

Importing this package is cheap: neither torch nor celery is imported until a submodule asks.

It does decide one thing, before torch can load its OpenMP runtime: whether idle OpenMP threads
spin or sleep. Where the engine can watch the machine's load (:mod:`workers.engine.threads`)
they keep OpenMP's spin and the engine gives up threads when other processes need the cores;
elsewhere they sleep (``OMP_WAIT_POLICY=PASSIVE``). An operator's own setting is kept.
"""

import os

from workers.engine.threads import wait_policy

_policy = wait_policy()
if _policy is not None:
    os.environ.setdefault("OMP_WAIT_POLICY", _policy)
