"""The one settings object of the server and the workers.

Read once, at the entry point, from ``TEMPERING_*`` environment variables, then overridden by
command-line flags; everything below the entry point receives a :class:`Settings` and never reads
the environment itself. Every field has one variable and one flag, listed in :data:`FIELDS`.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from service.core.setting_values import (
    GiB,
    MiB,
    parse_allowed_hosts,
    parse_bool,
    parse_s3_url,
    parse_size,
    parse_tenant_limits,
    parse_tenant_webhooks,
)
from workers.engine.spec import INLINE_WEIGHT_LIMIT

ENV_PREFIX = "TEMPERING_"


class SettingsError(ValueError):
    """A setting has a value that cannot work; the message names the variable."""


@dataclass(frozen=True)
class Settings:
    state_dir: Path
    """Where the single-machine defaults keep their files (job store, broker, artifacts)."""
    artifact_dir: Path
    database_url: str
    broker_url: str
    grpc_address: str = "127.0.0.1:50051"
    grpc_threads: int = 128
    """Server threads; every open WatchJob stream holds one, and watches may take at most 3/4
    of them (:mod:`service.api.watch_limit`)."""
    server_processes: int = 0
    """Server processes answering on the one gRPC port (Linux's ``SO_REUSEPORT``); 0: one per
    CPU, at most four, and one where the address cannot be shared or metrics are served
    (:mod:`service.ops.server_processes`)."""
    grpc_active_calls: int = 0
    """Unary calls running at once, the rest waiting fairly between tenants; 0: two per CPU plus
    two (:mod:`service.core.admission`)."""
    tenant_max_watches: int = 0
    """Open WatchJob streams one tenant may hold, within the server's; 0: half of the server's."""
    tenant_max_uploads: int = 0
    """Open upload streams one tenant may hold, within the server's stream slots (shared with
    WatchJob); 0: a quarter of them (:mod:`service.api.upload_limit`)."""
    upload_idle_timeout: float = 30.0
    """Seconds an upload stream may send nothing before it is cancelled."""
    upload_min_rate: int = 64 * 1024
    """Bytes per second an upload must average: it is cancelled ``upload_idle_timeout + size /
    upload_min_rate`` seconds after it started."""
    max_upload_bytes: int = 10 * GiB
    allow_trusted_formats: bool = False
    visibility_timeout: int = 6 * 3600
    """Seconds Redis waits before handing an unacknowledged job to another worker."""
    job_time_limit: int = 5 * 3600
    """Longest a job may run; it must stay below the visibility timeout."""
    max_attempts: int = 3
    """How often a job is started again after its worker was lost before it fails."""
    lease_timeout: float = 30.0
    """Seconds after a worker's last heartbeat before its job is taken back and queued again."""
    heartbeat_interval: float = 2.0
    """Seconds between a running job's lease renewals."""
    reconcile_interval: float = 5.0
    """Seconds between the server's checks for lost jobs (0 turns the reconciler off)."""
    queue: str = "tempering.jobs"
    """Named for no device: a worker runs on what it has. Deployments that set
    TEMPERING_QUEUE (the chart and compose file: ``tempering.gpu``) keep their name."""
    table_prefix: str = "tempering_"
    log_level: str = "INFO"
    # Who may do what (docs/security.md)
    api_keys_file: Path | None = None
    """``tenant:sha256hex`` lines; unset: single-tenant open mode, loopback only."""
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_client_ca: Path | None = None
    """CA of the client certificates; set, the server requires one (mutual TLS)."""
    allow_insecure_remote: bool = False
    """Serve plaintext on a non-loopback address (e.g. behind a TLS-terminating proxy)."""
    insecure_open: bool = False
    """Serve without API keys on a non-loopback address."""
    tenant_max_stored_bytes: int = 0
    """Bytes of uploads each tenant may keep; 0 = no limit."""
    tenant_max_queued_jobs: int = 0
    """Jobs each tenant may have queued or running at once; 0 = no limit."""
    tenant_limits: str = ""
    """Per-tenant overrides: ``alice:stored=50G,queued=20;bob:queued=2``."""
    # Where the artifacts live when not in artifact_dir (service/store/s3_artifacts.py)
    artifact_url: str | None = None
    """``s3://bucket/prefix``: blobs in an S3-compatible bucket instead of ``artifact_dir``."""
    s3_endpoint_url: str | None = None
    """Endpoint of a non-AWS S3-compatible store (MinIO: ``http://minio:9000``)."""
    # Observability (service/api/metrics.py, service/core/logs.py)
    metrics_address: str = ""
    """host:port of the server's Prometheus endpoint; empty: no endpoint."""
    worker_metrics_address: str = ""
    """host:port of a worker's Prometheus endpoint; empty: no endpoint."""
    log_format: str = "text"
    """``text`` for people, ``json`` (one object per line, with job id and tenant) for machines."""
    # Hooks (service/webhooks/notifier.py, MLflow)
    webhook_secret_file: Path | None = None
    """Master key that each tenant's webhook signing secret is derived from."""
    tenant_webhooks: str = ""
    """Each tenant's own webhook: ``alice=https://hooks.alice.example/t;bob=...``."""
    webhook_allowed_hosts: str = ""
    """Hosts (``host`` or ``host:port``, comma-separated) a job's own webhook_url may call;
    empty: jobs may not name their own webhook."""
    webhook_max_attempts: int = 8
    """Deliveries of one notification before it is given up."""
    webhook_timeout: float = 10.0
    """Seconds one delivery may take."""
    mlflow_tracking_uri: str | None = None
    """MLflow tracking server that jobs asking for MLflow logging log to; unset: refused."""
    # Submit-time checks (service/jobs/validation.py)
    validation_memory_limit: int = 4 * GiB
    """Address space the server's submit-time check of a model and dataset may use."""
    validation_time_limit: float = 30.0
    """Seconds one submit-time check may run before its process is killed."""
    validation_max_gflops: float = 200.0
    """Estimated GFLOPs of one pass on one sample above which the check refuses a model."""
    # Jobs (workers/engine/memory.py)
    job_memory_limit: int | None = None
    """Data memory each job process of a worker may use; None: three quarters of the machine's
    (or its container's) memory; 0: no limit."""
    inline_weight_limit: int = INLINE_WEIGHT_LIMIT
    """Bytes of weights over which a worker reads a model's external data straight into torch
    and returns the hardened model as a bundle (docs/model-bundles.md); may only be lowered."""

    def __post_init__(self) -> None:
        if self.max_upload_bytes <= 0:
            raise SettingsError(f"{ENV_PREFIX}MAX_UPLOAD_BYTES must be positive")
        if self.job_time_limit <= 0:
            raise SettingsError(f"{ENV_PREFIX}JOB_TIME_LIMIT must be positive")
        if self.visibility_timeout <= self.job_time_limit:
            raise SettingsError(
                f"{ENV_PREFIX}VISIBILITY_TIMEOUT ({self.visibility_timeout} s) must exceed"
                f" {ENV_PREFIX}JOB_TIME_LIMIT ({self.job_time_limit} s), or Redis would hand a"
                " running job to a second worker"
            )
        if not 0 < 3 * self.heartbeat_interval <= self.lease_timeout:
            raise SettingsError(
                f"{ENV_PREFIX}HEARTBEAT_INTERVAL must be positive and at most a third of"
                f" {ENV_PREFIX}LEASE_TIMEOUT, or a live worker would lose its job"
            )
        if self.reconcile_interval < 0:
            raise SettingsError(f"{ENV_PREFIX}RECONCILE_INTERVAL must be 0 (off) or positive")
        if self.max_attempts < 1:
            raise SettingsError(f"{ENV_PREFIX}MAX_ATTEMPTS must be at least 1")
        if self.grpc_threads < 2:
            raise SettingsError(f"{ENV_PREFIX}GRPC_THREADS must be at least 2")
        if self.server_processes < 0:
            raise SettingsError(
                f"{ENV_PREFIX}SERVER_PROCESSES must be 0 (one per CPU, at most four) or more"
            )
        if self.grpc_active_calls < 0:
            raise SettingsError(
                f"{ENV_PREFIX}GRPC_ACTIVE_CALLS must be 0 (two per CPU plus two) or more"
            )
        if self.tenant_max_watches < 0:
            raise SettingsError(
                f"{ENV_PREFIX}TENANT_MAX_WATCHES must be 0 (half the server's watches) or more"
            )
        if self.tenant_max_uploads < 0:
            raise SettingsError(
                f"{ENV_PREFIX}TENANT_MAX_UPLOADS must be 0 (a quarter of the server's streams)"
                " or more"
            )
        if not self.upload_idle_timeout > 0:
            raise SettingsError(f"{ENV_PREFIX}UPLOAD_IDLE_TIMEOUT must be positive")
        if self.upload_min_rate <= 0:
            raise SettingsError(f"{ENV_PREFIX}UPLOAD_MIN_RATE must be positive")
        if not self.queue:
            raise SettingsError(f"{ENV_PREFIX}QUEUE must not be empty")
        if self.log_format not in ("text", "json"):
            raise SettingsError(f"{ENV_PREFIX}LOG_FORMAT must be text or json")
        if self.webhook_max_attempts < 1 or self.webhook_timeout <= 0:
            raise SettingsError(
                f"{ENV_PREFIX}WEBHOOK_MAX_ATTEMPTS must be at least 1 and"
                f" {ENV_PREFIX}WEBHOOK_TIMEOUT positive"
            )
        if self.validation_memory_limit < 256 * MiB:
            raise SettingsError(f"{ENV_PREFIX}VALIDATION_MEMORY_LIMIT must be at least 256M")
        if not self.validation_time_limit > 0 or not self.validation_max_gflops > 0:
            raise SettingsError(
                f"{ENV_PREFIX}VALIDATION_TIME_LIMIT and {ENV_PREFIX}VALIDATION_MAX_GFLOPS must be"
                " positive"
            )
        if self.job_memory_limit is not None and 0 < self.job_memory_limit < 512 * MiB:
            raise SettingsError(
                f"{ENV_PREFIX}JOB_MEMORY_LIMIT must be 0 (no limit) or at least 512M"
            )
        if not 0 < self.inline_weight_limit <= INLINE_WEIGHT_LIMIT:
            raise SettingsError(
                f"{ENV_PREFIX}INLINE_WEIGHT_LIMIT must be positive and at most"
                f" {INLINE_WEIGHT_LIMIT} bytes (protobuf caps a model file at 2 GB)"
            )
        self._check_artifact_url()
        self._check_security()
        self._check_webhooks()

    def _check_artifact_url(self) -> None:
        if self.artifact_url:
            try:
                parse_s3_url(self.artifact_url)
            except ValueError as exc:
                raise SettingsError(f"{ENV_PREFIX}ARTIFACT_URL: {exc}") from exc
        elif self.s3_endpoint_url:
            raise SettingsError(
                f"{ENV_PREFIX}S3_ENDPOINT_URL needs {ENV_PREFIX}ARTIFACT_URL=s3://bucket/prefix"
            )

    def _check_security(self) -> None:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise SettingsError(
                f"{ENV_PREFIX}TLS_CERT and {ENV_PREFIX}TLS_KEY go together: set both or neither"
            )
        if self.tls_client_ca is not None and self.tls_cert is None:
            raise SettingsError(
                f"{ENV_PREFIX}TLS_CLIENT_CA (mutual TLS) needs {ENV_PREFIX}TLS_CERT and"
                f" {ENV_PREFIX}TLS_KEY"
            )
        if self.tenant_max_stored_bytes < 0 or self.tenant_max_queued_jobs < 0:
            raise SettingsError(
                f"{ENV_PREFIX}TENANT_MAX_STORED_BYTES and {ENV_PREFIX}TENANT_MAX_QUEUED_JOBS"
                " must be 0 (no limit) or more"
            )
        try:
            parse_tenant_limits(self.tenant_limits)
        except ValueError as exc:
            raise SettingsError(f"{ENV_PREFIX}TENANT_LIMITS: {exc}") from exc

    def _check_webhooks(self) -> None:
        for name, parse in (
            ("tenant_webhooks", parse_tenant_webhooks),
            ("webhook_allowed_hosts", parse_allowed_hosts),
        ):
            try:
                parse(getattr(self, name))
            except ValueError as exc:
                raise SettingsError(f"{ENV_PREFIX}{name.upper()}: {exc}") from exc
        if self.tenant_webhooks.strip() and self.webhook_secret_file is None:
            raise SettingsError(
                f"{ENV_PREFIX}TENANT_WEBHOOKS needs {ENV_PREFIX}WEBHOOK_SECRET_FILE, the master"
                " key the webhooks are signed with"
            )

    @property
    def uses_local_broker(self) -> bool:
        """True when the broker is a file on this machine (the single-machine default)."""
        return self.broker_url.startswith(("sqla+sqlite:", "filesystem:"))

    @classmethod
    def load(cls, environ: Mapping[str, str], args: argparse.Namespace | None = None) -> Settings:
        """Environment first, flags over it, defaults for the rest."""
        raw: dict[str, str] = {}
        for spec in FIELDS:
            if (value := environ.get(spec.env)) not in (None, ""):
                raw[spec.name] = str(value)
            flagged = getattr(args, spec.name, None) if args is not None else None
            if flagged is not None:
                raw[spec.name] = str(flagged)
        values: dict[str, Any] = {}
        for spec in FIELDS:
            if spec.name in raw:
                try:
                    values[spec.name] = spec.parse(raw[spec.name])
                except ValueError as exc:
                    raise SettingsError(f"{spec.env}={raw[spec.name]!r}: {exc}") from exc
        state_dir = Path(values.pop("state_dir", None) or default_state_dir(environ))
        values.setdefault("artifact_dir", state_dir / "artifacts")
        values.setdefault("database_url", f"sqlite:///{state_dir / 'jobs.sqlite'}")
        values.setdefault("broker_url", f"sqla+sqlite:///{state_dir / 'broker.sqlite'}")
        return cls(state_dir=state_dir, **values)

    def to_env(self) -> dict[str, str]:
        """The variables that make another process (a local worker) load these same settings."""
        return {spec.env: _render(getattr(self, spec.name)) for spec in FIELDS}


def default_state_dir(environ: Mapping[str, str]) -> Path:
    base = environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "tempering"


def _render(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


@dataclass(frozen=True)
class FieldSpec:
    name: str
    parse: Callable[[str], Any]
    help: str

    @property
    def env(self) -> str:
        return ENV_PREFIX + self.name.upper()

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")


FIELDS: tuple[FieldSpec, ...] = (
    FieldSpec("state_dir", Path, "directory of the single-machine defaults"),
    FieldSpec("artifact_dir", Path, "where uploads and results are stored"),
    FieldSpec("database_url", str, "job store URL (sqlite:///... or postgresql+psycopg://...)"),
    FieldSpec("broker_url", str, "Celery broker URL (redis://... or sqla+sqlite:///...)"),
    FieldSpec("grpc_address", str, "host:port the gRPC server listens on (port 0 picks one)"),
    FieldSpec("grpc_threads", int, "server threads; open WatchJob streams may use 3/4 of them"),
    FieldSpec("server_processes", int, "server processes sharing the port (0: one per CPU, <= 4)"),
    FieldSpec("grpc_active_calls", int, "unary calls running at once (0: 2 per CPU + 2)"),
    FieldSpec("tenant_max_watches", int, "open WatchJob streams per tenant (0: half the server's)"),
    FieldSpec("tenant_max_uploads", int, "open upload streams per tenant (0: a quarter of slots)"),
    FieldSpec("upload_idle_timeout", float, "seconds an upload may send nothing before it ends"),
    FieldSpec("upload_min_rate", parse_size, "bytes/s an upload must average, e.g. 64K"),
    FieldSpec("max_upload_bytes", parse_size, "largest upload accepted, e.g. 10G"),
    FieldSpec("allow_trusted_formats", parse_bool, "accept TorchScript/torch.export uploads"),
    FieldSpec("visibility_timeout", int, "seconds before Redis redelivers an unacked job"),
    FieldSpec("job_time_limit", int, "longest a job may run, in seconds"),
    FieldSpec("max_attempts", int, "starts of a job before a lost worker fails it"),
    FieldSpec("lease_timeout", float, "seconds without a heartbeat before a job is taken back"),
    FieldSpec("heartbeat_interval", float, "seconds between a running job's lease renewals"),
    FieldSpec("reconcile_interval", float, "seconds between checks for lost jobs (0: off)"),
    FieldSpec("queue", str, "Celery queue the jobs go to and workers consume"),
    FieldSpec("table_prefix", str, "prefix of the job store's table names"),
    FieldSpec("log_level", str, "DEBUG, INFO, WARNING or ERROR"),
    FieldSpec("api_keys_file", Path, "file of tenant:sha256hex API key lines (unset: open mode)"),
    FieldSpec("tls_cert", Path, "PEM certificate chain of the server (turns TLS on)"),
    FieldSpec("tls_key", Path, "PEM private key of the server"),
    FieldSpec("tls_client_ca", Path, "PEM CA of client certificates (turns mutual TLS on)"),
    FieldSpec("allow_insecure_remote", parse_bool, "serve plaintext on a non-loopback address"),
    FieldSpec("insecure_open", parse_bool, "serve without API keys on a non-loopback address"),
    FieldSpec("tenant_max_stored_bytes", parse_size, "stored bytes per tenant (0: no limit)"),
    FieldSpec("tenant_max_queued_jobs", int, "queued or running jobs per tenant; 0 = no limit"),
    FieldSpec("tenant_limits", str, "per-tenant limits: alice:stored=50G,queued=20;bob:..."),
    FieldSpec("artifact_url", str, "s3://bucket/prefix: artifacts in S3 instead of artifact_dir"),
    FieldSpec("s3_endpoint_url", str, "endpoint of a non-AWS S3-compatible store (MinIO, ...)"),
    FieldSpec("metrics_address", str, "host:port of the server's Prometheus endpoint (empty: off)"),
    FieldSpec("worker_metrics_address", str, "host:port of a worker's Prometheus endpoint"),
    FieldSpec("log_format", str, "text or json (one object per line with job id and tenant)"),
    FieldSpec("webhook_secret_file", Path, "master key the tenants' webhook secrets derive from"),
    FieldSpec("tenant_webhooks", str, "each tenant's webhook: alice=https://...;bob=https://..."),
    FieldSpec(
        "webhook_allowed_hosts", str, "hosts a job's own webhook_url may call (h[:port],...)"
    ),
    FieldSpec("webhook_max_attempts", int, "deliveries of one notification before giving up"),
    FieldSpec("webhook_timeout", float, "seconds one webhook delivery may take"),
    FieldSpec("mlflow_tracking_uri", str, "MLflow tracking URI for jobs that ask for MLflow"),
    FieldSpec("validation_memory_limit", parse_size, "memory of the submit-time check, e.g. 4G"),
    FieldSpec("validation_time_limit", float, "seconds one submit-time check may run"),
    FieldSpec("validation_max_gflops", float, "GFLOPs of one sample the check lets a model cost"),
    FieldSpec("job_memory_limit", parse_size, "memory of each job process, e.g. 8G (0: no limit)"),
    FieldSpec(
        "inline_weight_limit", parse_size, "weights over which a model is streamed and bundled"
    ),
)


def add_settings_arguments(parser: argparse.ArgumentParser) -> None:
    """One flag per setting; a flag left out keeps the environment's value or the default."""
    group = parser.add_argument_group("settings (flags override TEMPERING_* variables)")
    for spec in FIELDS:
        switch = {"nargs": "?", "const": "true"} if spec.parse is parse_bool else {}
        group.add_argument(
            spec.flag,
            dest=spec.name,
            default=None,
            metavar="VALUE",
            help=f"{spec.help} [{spec.env}]",
            **switch,  # type: ignore[arg-type]
        )
