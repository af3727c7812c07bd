"""Assembling the gRPC server: the servicer behind the authentication and error interceptors,
plus standard health checking and reflection (open to every caller, for probes), on a TLS or
plaintext port as :mod:`service.api.transport` decides."""

from __future__ import annotations

import enum
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from tempering.v1 import hardening_pb2 as pb
from tempering.v1 import hardening_pb2_grpc as pb_grpc

from service.api.admission_interceptor import AdmissionInterceptor
from service.api.auth_interceptor import AuthInterceptor
from service.api.interceptor import ErrorInterceptor
from service.api.metrics import ServerMetrics, metrics_address
from service.api.servicer import HardeningServicer
from service.api.shared_port import claim_address
from service.api.transport import Exposure, plan_exposure
from service.api.upload_limit import (
    UploadDeadlines,
    UploadLimitInterceptor,
    UploadWatchdog,
    tenant_upload_limit,
)
from service.api.watch_limit import (
    StreamSlots,
    WatchLimitInterceptor,
    tenant_watch_limit,
    watch_limit,
)
from service.core.admission import Admission, active_calls
from service.core.metrics_endpoint import MetricsEndpoint
from service.core.periodic import Periodic
from service.core.settings import Settings
from service.jobs.jobs import Jobs
from service.jobs.queue import CeleryJobQueue, producer_app
from service.jobs.quotas import QuotaPolicy
from service.jobs.reconciler import Reconciler, start_reconciler
from service.jobs.uploads import Uploads
from service.jobs.validation_pool import ValidationPool
from service.store.artifacts import LocalArtifactStore
from service.store.stores import Stores
from service.webhooks.notifier import Notifier, WebhookConfig, start_notifier

log = logging.getLogger(__name__)

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["HardeningService"].full_name


class ServerRole(enum.Enum):
    """Where this process stands among the processes serving one port
    (:mod:`service.ops.server_processes`)."""

    ALONE = "alone"
    """The only process on its port: binds it exclusively."""
    FIRST = "first"
    """The first of several: claims the port, shares it, and runs the background duties (lost-job
    reconciler, partial-upload sweeper, webhook notifier, Prometheus endpoint)."""
    SIBLING = "sibling"
    """A later one: joins the port the first claimed and answers calls, nothing more."""

    @property
    def shares_port(self) -> bool:
        return self is not ServerRole.ALONE

    @property
    def runs_duties(self) -> bool:
        return self is not ServerRole.SIBLING


@dataclass
class RunningServer:
    server: grpc.Server
    port: int
    settings: Settings
    """What it was started with, its address resolved when it claimed a shared port."""
    jobs: Jobs
    stores: Stores
    health: health.HealthServicer
    exposure: Exposure | None = None
    reconciler: Reconciler | None = None
    notifier: Notifier | None = None
    metrics: MetricsEndpoint | None = None
    validation: ValidationPool | None = None
    sweeper: Periodic | None = None
    upload_limit: UploadLimitInterceptor | None = None

    @property
    def metrics_port(self) -> int | None:
        return self.metrics.port if self.metrics is not None else None

    def stop(self, grace: float = 5.0) -> None:
        """Refuse new calls, give open ones ``grace`` seconds, then cancel the rest (watchers)."""
        self.health.enter_graceful_shutdown()
        self.server.stop(grace).wait()
        self.jobs.close()
        if self.upload_limit is not None:
            self.upload_limit.watchdog.stop()
        if self.reconciler is not None:
            self.reconciler.stop()
        if self.sweeper is not None:
            self.sweeper.stop()
        if self.notifier is not None:
            self.notifier.stop()
        if self.metrics is not None:
            self.metrics.stop()
        if self.validation is not None:
            self.validation.close()
        self.stores.close()


def start_server(settings: Settings, role: ServerRole = ServerRole.ALONE) -> RunningServer:
    """Raises SettingsError (:class:`service.api.transport.InsecureSetup`) for an exposure the
    server refuses, before opening anything; OSError when it cannot listen."""
    exposure = plan_exposure(settings)
    if role is ServerRole.FIRST:
        settings = replace(settings, grpc_address=claim_address(settings.grpc_address))
    metrics_at = metrics_address(settings) if role.runs_duties else None
    webhooks = WebhookConfig.from_settings(settings)
    quotas = QuotaPolicy.from_settings(
        settings.tenant_max_stored_bytes, settings.tenant_max_queued_jobs, settings.tenant_limits
    )
    stores = Stores.open(settings)
    metrics = ServerMetrics(stores.database) if metrics_at is not None else None
    queue = CeleryJobQueue(producer_app(settings), settings.queue)
    validation = ValidationPool(
        settings.validation_memory_limit,
        time_limit=settings.validation_time_limit,
        max_gflops=settings.validation_max_gflops,
    )
    uploads = Uploads(
        stores.artifacts,
        stores.uploads,
        max_bytes=settings.max_upload_bytes,
        allow_trusted_formats=settings.allow_trusted_formats,
        quotas=quotas,
        count_received=metrics.count_upload if metrics is not None else None,
        check_tokenizer=lambda path, tenant: validation.check_tokenizer(path, tenant=tenant),
        check_schema=lambda path, tenant: validation.check_schema(path, tenant=tenant),
    )
    jobs = Jobs(
        stores.jobs,
        stores.uploads,
        stores.artifacts,
        queue,
        job_time_limit=settings.job_time_limit,
        allow_trusted_formats=settings.allow_trusted_formats,
        quotas=quotas,
        mlflow_tracking=bool(settings.mlflow_tracking_uri),
        webhooks=webhooks.targets,
        check_inputs=validation.check,
    )
    streams = StreamSlots(watch_limit(settings.grpc_threads))
    upload_limit = UploadLimitInterceptor(
        streams,
        tenant_upload_limit(streams.limit, settings.tenant_max_uploads),
        settings.grpc_threads,
        UploadWatchdog(UploadDeadlines(settings.upload_idle_timeout, settings.upload_min_rate)),
    )
    server = grpc.server(
        ThreadPoolExecutor(max_workers=settings.grpc_threads, thread_name_prefix="grpc"),
        interceptors=[
            *([metrics.interceptor()] if metrics is not None else []),
            AuthInterceptor(exposure.keys),
            ErrorInterceptor(),
            WatchLimitInterceptor(
                watch_limit(settings.grpc_threads),
                settings.grpc_threads,
                tenant_watch_limit(watch_limit(settings.grpc_threads), settings.tenant_max_watches),
                streams,
            ),
            upload_limit,
            AdmissionInterceptor(_admission(settings, exposure)),
        ],
        options=[("grpc.so_reuseport", int(role.shares_port))],
    )
    pb_grpc.add_HardeningServiceServicer_to_server(HardeningServicer(uploads, jobs), server)
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), server
    )
    try:
        if exposure.credentials is None:
            port = server.add_insecure_port(settings.grpc_address)
        else:
            port = server.add_secure_port(settings.grpc_address, exposure.credentials)
    except RuntimeError as exc:
        stores.close()
        validation.close()
        raise OSError(f"cannot listen on {settings.grpc_address}: {exc}") from exc
    try:
        endpoint = metrics.serve(*metrics_at) if metrics and metrics_at else None
    except OSError as exc:
        stores.close()
        validation.close()
        raise OSError(f"cannot serve metrics on {settings.metrics_address}: {exc}") from exc
    server.start()
    upload_limit.watchdog.start()
    for name in ("", SERVICE_NAME):
        health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    for warning in exposure.warnings if role.runs_duties else ():
        log.warning("%s", warning)
    log.info(
        "serving %s on %s (port %d%s): %s",
        SERVICE_NAME,
        settings.grpc_address,
        port,
        "" if role is ServerRole.ALONE else f", shared, {role.value} process",
        exposure.describe(),
    )
    if endpoint is not None:
        log.info("serving Prometheus metrics at %s", endpoint.url)
    reconciler = sweeper = notifier = None
    if role.runs_duties:
        reconciler = start_reconciler(settings, stores.jobs.leases, queue, stores.checkpoints)
        sweeper = _start_sweeper(stores.artifacts)
        notifier = start_notifier(settings, stores.database, stores.jobs.get, webhooks)
    return RunningServer(
        server,
        port,
        settings,
        jobs,
        stores,
        health_servicer,
        exposure,
        reconciler,
        notifier=notifier,
        metrics=endpoint,
        validation=validation,
        sweeper=sweeper,
        upload_limit=upload_limit,
    )


def _admission(settings: Settings, exposure: Exposure) -> Admission:
    """With API keys, a tenant may have an eighth of the server's threads waiting to run; in
    open mode every caller is the one tenant, bounded only by the threads."""
    open_mode = exposure.keys is None or exposure.keys.is_empty
    waiting = settings.grpc_threads if open_mode else max(4, settings.grpc_threads // 8)
    return Admission(active_calls(settings.grpc_active_calls), max_waiting_per_tenant=waiting)


SWEEP_INTERVAL_SECONDS = 600.0


def _start_sweeper(artifacts: object) -> Periodic | None:
    """Partial upload files a killed server left behind go at start and every ten minutes
    (only local stores keep them; an S3 store spools to temporary files of its own)."""
    if not isinstance(artifacts, LocalArtifactStore):
        return None
    sweeper = Periodic("upload-sweeper", artifacts.sweep_partial_blobs, SWEEP_INTERVAL_SECONDS)
    sweeper.start()
    return sweeper
