"""The one door from the client into the worker's code: ``temper harden --local`` runs the
engine in its own process through this module and nothing else (``client/local_run.py``).

It names what that run needs: the engine's request types (:mod:`~workers.engine.spec`), its
errors, its progress reporter and :func:`~workers.engine.pipeline.harden`, and the MLflow logging
a worker does for a job. Importing it loads torch; the client imports it only when asked to run
locally, and the import contract (pyproject.toml) lets the client import nothing else of
``workers`` or ``service``.
"""

from workers import mlflow_tracking
from workers.engine import errors, pipeline, progress, spec

__all__ = ["errors", "mlflow_tracking", "pipeline", "progress", "spec"]
