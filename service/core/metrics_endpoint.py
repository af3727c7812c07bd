"""Serving one Prometheus registry over HTTP at ``/metrics``, for the server and for workers.

Each process passes its own :class:`~prometheus_client.CollectorRegistry`, never the global
default one, so that several servers in one process (tests) keep their figures apart.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, start_http_server

from service.core.settings import SettingsError


@dataclass
class MetricsEndpoint:
    httpd: WSGIServer
    thread: threading.Thread
    host: str

    @property
    def port(self) -> int:
        return int(self.httpd.server_port)

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/metrics"

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5.0)


def split_address(address: str, setting: str) -> tuple[str, int]:
    """``host:port`` (``[::1]:9095`` for IPv6) as host and port; port 0 picks a free one."""
    host, _, port = address.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not host or not port.isdigit() or int(port) > 65535:
        raise SettingsError(f"{setting} must be host:port, e.g. 0.0.0.0:9095; got {address!r}")
    return host, int(port)


def serve_metrics(host: str, port: int, registry: CollectorRegistry) -> MetricsEndpoint:
    """Serve ``registry`` on a daemon thread. Raises OSError when the port is taken."""
    httpd, thread = start_http_server(port, addr=host, registry=registry)
    return MetricsEndpoint(httpd, thread, host)
