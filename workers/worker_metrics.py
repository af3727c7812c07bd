"""A worker's Prometheus metrics, served at ``/metrics`` on ``TEMPERING_WORKER_METRICS_ADDRESS``
by the process that runs the jobs (the Celery pool's child, started on ``worker_process_init``).

Throughput comes from the engine's epoch-end progress events, which the job runner hands to
:class:`WorkerMetrics` (a :class:`workers.runner.JobObserver`); GPU memory is read from torch
when scraped, only once this process has used CUDA. The engine itself knows nothing of this.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from service.core.domain import TERMINAL_STATES, Job, JobState
from service.core.metrics_endpoint import MetricsEndpoint, serve_metrics, split_address
from service.core.settings import ENV_PREFIX, Settings
from workers.engine.progress import ProgressEvent

log = logging.getLogger(__name__)

BIND_ATTEMPTS = 30
"""Seconds a replacement pool process keeps trying a fixed port its predecessor still holds."""


class WorkerMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._samples_per_second = Gauge(
            "tempering_worker_training_samples_per_second",
            "Training throughput of the last epoch this worker finished, by method",
            ["method"],
            registry=self.registry,
        )
        self._samples = Counter(
            "tempering_worker_training_samples",
            "Training samples this worker went through (every epoch, teacher included)",
            ["method"],
            registry=self.registry,
        )
        self._jobs = Counter(
            "tempering_worker_jobs",
            "Jobs this worker ran to an end, by the state they ended in",
            ["state"],
            registry=self.registry,
        )
        for state in sorted(TERMINAL_STATES):
            self._jobs.labels(state.value)
        self.registry.register(GpuMemoryCollector())

    def progress(self, job: Job, event: ProgressEvent) -> None:
        if event.samples_per_second is None:
            return
        method = job.spec.training.method.value
        self._samples.labels(method).inc(event.samples)
        self._samples_per_second.labels(method).set(event.samples_per_second)

    def finished(self, job: Job, state: JobState) -> None:
        self._jobs.labels(state.value).inc()


class GpuMemoryCollector(Collector):
    """``tempering_worker_gpu_memory_allocated_bytes`` and ``..._max_allocated_bytes`` (the
    peak since the process started) per device, when this process has initialised CUDA."""

    def collect(self) -> Iterator[Metric]:
        torch = sys.modules.get("torch")
        if torch is None or not torch.cuda.is_initialized():
            return
        allocated = GaugeMetricFamily(
            "tempering_worker_gpu_memory_allocated_bytes",
            "GPU memory held by tensors now, by device",
            labels=["device"],
        )
        peak = GaugeMetricFamily(
            "tempering_worker_gpu_memory_max_allocated_bytes",
            "Most GPU memory held by tensors at once since the worker process started",
            labels=["device"],
        )
        for index in range(torch.cuda.device_count()):
            allocated.add_metric([str(index)], torch.cuda.memory_allocated(index))
            peak.add_metric([str(index)], torch.cuda.max_memory_allocated(index))
        yield allocated
        yield peak


_active: WorkerMetrics | None = None


def active_metrics() -> WorkerMetrics | None:
    """This process's metrics, once :func:`start_worker_metrics` ran; the job runner's
    observer."""
    return _active


def start_worker_metrics(settings: Settings) -> WorkerMetrics | None:
    """Serve this process's metrics when ``worker_metrics_address`` is set. Binding happens on
    a thread: a pool process that replaces a dead one may find the port still held for a moment,
    and must not hold up Celery's start of the process meanwhile. Never raises: a worker without
    metrics still runs jobs."""
    global _active
    if not settings.worker_metrics_address:
        return None
    try:
        host, port = split_address(
            settings.worker_metrics_address, f"{ENV_PREFIX}WORKER_METRICS_ADDRESS"
        )
    except ValueError as exc:
        log.error("worker metrics are off: %s", exc)
        return None
    metrics = WorkerMetrics()
    _active = metrics
    threading.Thread(
        target=_bind, args=(metrics, host, port), name="worker-metrics", daemon=True
    ).start()
    return metrics


def _bind(metrics: WorkerMetrics, host: str, port: int) -> MetricsEndpoint | None:
    for attempt in range(BIND_ATTEMPTS):
        try:
            endpoint = serve_metrics(host, port, metrics.registry)
        except OSError as exc:
            if attempt + 1 == BIND_ATTEMPTS:
                log.error("worker metrics are off: cannot listen on %s:%d: %s", host, port, exc)
                return None
            time.sleep(1.0)
            continue
        log.info("serving worker Prometheus metrics at %s", endpoint.url)
        return endpoint
    return None
