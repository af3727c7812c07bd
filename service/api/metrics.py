"""The server's Prometheus metrics (docs/observability.md lists them): one registry per server,
served at ``/metrics`` on ``TEMPERING_METRICS_ADDRESS``.

Jobs are read from the job store at scrape time (:mod:`service.api.job_metrics`); RPCs are observed
by an interceptor (:mod:`service.api.rpc_metrics`); uploaded bytes are counted by the upload path.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter

from service.api.job_metrics import JobStoreCollector
from service.api.rpc_metrics import MetricsInterceptor, RpcMetrics
from service.core.domain import UploadKind
from service.core.metrics_endpoint import MetricsEndpoint, serve_metrics, split_address
from service.core.settings import ENV_PREFIX, Settings
from service.store.db import Database


class ServerMetrics:
    def __init__(self, database: Database) -> None:
        self.registry = CollectorRegistry()
        self.registry.register(JobStoreCollector(database))
        self.rpcs = RpcMetrics(self.registry)
        self._uploaded = Counter(
            "tempering_uploaded_bytes",
            "Bytes of uploads received in full, by kind (model or dataset)",
            ["kind"],
            registry=self.registry,
        )
        for kind in UploadKind:
            self._uploaded.labels(kind.value)

    def interceptor(self) -> MetricsInterceptor:
        return MetricsInterceptor(self.rpcs)

    def count_upload(self, kind: UploadKind, size_bytes: int) -> None:
        self._uploaded.labels(kind.value).inc(size_bytes)

    def serve(self, host: str, port: int) -> MetricsEndpoint:
        """Raises OSError when the port is taken."""
        return serve_metrics(host, port, self.registry)


def metrics_address(settings: Settings) -> tuple[str, int] | None:
    """Where the server serves its metrics; None: nowhere. Raises SettingsError."""
    if not settings.metrics_address:
        return None
    return split_address(settings.metrics_address, f"{ENV_PREFIX}METRICS_ADDRESS")
