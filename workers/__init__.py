"""Celery worker application and the hardening engine it runs.

Importing this package is cheap: neither torch nor celery is imported until a submodule asks.

It does set one thing, before torch can load its OpenMP runtime: idle OpenMP threads sleep
(``OMP_WAIT_POLICY=PASSIVE``) instead of spinning. With the default spin, two busy processes on
two cores made a PGD step of the small MNIST CNN 8 to 15 times slower (docs/performance.md);
an operator's own setting is kept.
"""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
