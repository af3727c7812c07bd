"""The one door from the client into the worker's code: ``temper harden --local`` runs the
engine in its own process through this module and nothing else (``client/local_run.py``).

It names what that run needs: the engine's errors, its progress reporter and
:func:`~workers.engine.pipeline.harden`, the MLflow logging a worker does for a job, and
:func:`engine_request`, which reads the job message the CLI would send a server with the server's
own converter and turns it into the engine's request with the runner's translation. So a local
run refuses what the server refuses, with the same words, and a flag left out is the same
default on both paths. Importing it loads torch; the client imports it only when asked to run
locally, and the import contract (pyproject.toml) lets the client import nothing else of
``workers`` or ``service``.
"""

from __future__ import annotations

from tempering.v1 import hardening_pb2 as pb

from service.api.convert import job_spec
from workers import mlflow_tracking
from workers.engine import errors, pipeline, progress, spec
from workers.engine.spec import HardeningRequest
from workers.job_request import JobFiles
from workers.job_request import engine_request as _engine_request

__all__ = [
    "JobFiles",
    "engine_request",
    "errors",
    "mlflow_tracking",
    "pipeline",
    "progress",
    "spec",
]


def engine_request(
    message: pb.JobSpec, files: JobFiles, *, allow_trusted_formats: bool
) -> HardeningRequest:
    """The request a worker would make of ``message`` (its ids are ignored: ``files`` says where
    the inputs are); raises the server's InvalidRequest for what the server would refuse."""
    return _engine_request(job_spec(message), files, allow_trusted_formats=allow_trusted_formats)
