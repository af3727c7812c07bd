"""Client of the Tempering model-hardening service: the Python SDK and the ``temper`` CLI.

Installs without torch: the engine is imported only by ``temper harden --local``, and the
server only by ``temper serve``, ``temper worker`` and ``temper demo``.
"""

from client.domain import (
    ArtifactKind,
    EvaluationSuite,
    HardeningOutcome,
    HardeningParams,
    Interval,
    Job,
    JobEvent,
    JobPage,
    JobSpec,
    JobState,
    Method,
    ModelFormat,
    Norm,
    OutputArtifact,
    Progress,
    ResultSummary,
    Scores,
)
from client.errors import (
    AuthenticationFailed,
    ClientError,
    Conflict,
    ConnectionFailed,
    IntegrityError,
    InvalidInput,
    JobFailed,
    LimitExceeded,
    NotFound,
    RequestRefused,
    ServerError,
    WaitTimeout,
)
from client.sdk import HardeningClient, TlsConfig

__all__ = [
    "ArtifactKind",
    "AuthenticationFailed",
    "ClientError",
    "Conflict",
    "ConnectionFailed",
    "EvaluationSuite",
    "HardeningClient",
    "HardeningOutcome",
    "HardeningParams",
    "IntegrityError",
    "Interval",
    "InvalidInput",
    "Job",
    "JobEvent",
    "JobFailed",
    "JobPage",
    "JobSpec",
    "JobState",
    "LimitExceeded",
    "Method",
    "ModelFormat",
    "Norm",
    "NotFound",
    "OutputArtifact",
    "Progress",
    "RequestRefused",
    "ResultSummary",
    "Scores",
    "ServerError",
    "TlsConfig",
    "WaitTimeout",
]
