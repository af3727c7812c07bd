"""One gRPC port answered by several server processes (docs/service.md#server-processes).

The processes bind the same address with ``SO_REUSEPORT``, and Linux hands each new connection
to one of them. That option would also let an unrelated server that sets it join the port
silently (a second ``temper serve`` started by mistake, splitting the first one's clients), so
the first process claims the address first: it binds a plain socket there, which fails like any
server's bind when something already listens, and resolves port 0 to a free port the later
processes can be given. The socket is closed before gRPC binds; the window between is the only
time another process could take the port, and then gRPC's own bind fails as usual.
"""

from __future__ import annotations

import socket
import sys

from service.api.transport import UNIX_SOCKET_SCHEMES
from service.core.metrics_endpoint import split_address
from service.core.settings import ENV_PREFIX


def can_share_ports(address: str) -> bool:
    """Linux balances connections between the TCP sockets of one port; other systems either
    lack ``SO_REUSEPORT`` or give every connection to the last socket bound, and a Unix domain
    socket has no port to share."""
    return (
        sys.platform.startswith("linux")
        and hasattr(socket, "SO_REUSEPORT")
        and not address.startswith(UNIX_SOCKET_SCHEMES)
    )


def claim_address(address: str) -> str:
    """``address`` with its port resolved (port 0 becomes a free one), once a plain bind there
    succeeded; raises OSError naming the address when something listens on it, and
    SettingsError when it is no ``host:port``."""
    host, port = split_address(address, f"{ENV_PREFIX}GRPC_ADDRESS")
    try:
        family, kind, proto, _, where = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind(where)
            bound_port = probe.getsockname()[1]
    except OSError as exc:
        raise OSError(f"cannot listen on {address}: {exc.strerror or exc}") from exc
    return f"[{host}]:{bound_port}" if ":" in host else f"{host}:{bound_port}"
