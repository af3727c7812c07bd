"""Health probe of the Tempering gRPC server: ask its standard ``grpc.health.v1.Health``
service and exit 0 if it answers SERVING, 1 otherwise (unreachable, NOT_SERVING, timeout, TLS
handshake refused).

Shipped in the service image for Docker's ``HEALTHCHECK``, and used by the Helm chart's exec
probes when the server speaks TLS (Kubernetes' native ``grpc`` probes cannot). It needs only
``grpcio`` and ``grpcio-health-checking``, which the server installs anyway, and never imports
the project, so it starts in a fraction of a second. The health service needs no API key.

It follows the server's own settings, read from the same variables:

- the address is the loopback interface on the port of ``TEMPERING_GRPC_ADDRESS``;
- when ``TEMPERING_TLS_CERT`` is set the probe speaks TLS, trusting ``--ca-cert`` or, without
  it, that certificate itself (right for a self-signed one); ``--server-name`` is the name the
  certificate must carry when it is not issued for 127.0.0.1;
- when ``TEMPERING_TLS_CLIENT_CA`` is set (mutual TLS) the probe needs a client certificate
  that CA signed: ``--client-cert`` and ``--client-key``.

    python healthcheck.py
    python healthcheck.py --ca-cert /etc/tempering/tls/ca.crt --server-name tempering.prod.svc
    python healthcheck.py 10.0.0.5:50051 --service tempering.v1.HardeningService
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

ADDRESS_ENV = "TEMPERING_GRPC_ADDRESS"
TLS_CERT_ENV = "TEMPERING_TLS_CERT"
TLS_CLIENT_CA_ENV = "TEMPERING_TLS_CLIENT_CA"
DEFAULT_PORT = "50051"
HEALTHY, UNHEALTHY = 0, 1  # Docker reserves exit code 2; everything that is not SERVING is 1
WILDCARD_HOSTS = frozenset({"", "0.0.0.0", "[::]", "::", "*"})


@dataclass(frozen=True)
class Tls:
    ca_cert: Path | None = None
    """None: the system's root certificates."""
    client_cert: Path | None = None
    client_key: Path | None = None
    server_name: str | None = None

    def credentials(self) -> grpc.ChannelCredentials:
        def read(path: Path | None) -> bytes | None:
            return path.read_bytes() if path is not None else None

        return grpc.ssl_channel_credentials(
            root_certificates=read(self.ca_cert),
            private_key=read(self.client_key),
            certificate_chain=read(self.client_cert),
        )


def probe_address(environ: Mapping[str, str]) -> str:
    """Where to reach the server from inside its own container: the loopback address on the
    port it listens on (``0.0.0.0:50051`` and ``[::]:50051`` are not addresses to dial)."""
    listen = environ.get(ADDRESS_ENV) or f"127.0.0.1:{DEFAULT_PORT}"
    host, _, port = listen.rpartition(":")
    if host in WILDCARD_HOSTS:
        host = "127.0.0.1"
    return f"{host}:{port or DEFAULT_PORT}"


def check(
    address: str, service: str = "", timeout: float = 5.0, tls: Tls | None = None
) -> tuple[bool, str]:
    """(healthy, what was seen)."""
    if tls is None:
        channel = grpc.insecure_channel(address)
    else:
        options = []
        if tls.server_name:
            options.append(("grpc.ssl_target_name_override", tls.server_name))
        channel = grpc.secure_channel(address, tls.credentials(), options=options)
    with channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            response = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=timeout)
        except grpc.RpcError as error:
            code = error.code() if isinstance(error, grpc.Call) else None
            details = error.details() if isinstance(error, grpc.Call) else str(error)
            return False, f"{address}: {code.name if code else 'ERROR'}: {details}"
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)
    return response.status == health_pb2.HealthCheckResponse.SERVING, f"{address}: {status}"


def tls_of(args: argparse.Namespace, environ: Mapping[str, str]) -> Tls | None:
    """TLS when asked for on the command line or when the server's own settings turn it on."""
    server_cert = environ.get(TLS_CERT_ENV) or None
    wanted = args.tls or args.ca_cert or args.client_cert or server_cert
    if not wanted:
        return None
    if environ.get(TLS_CLIENT_CA_ENV) and not (args.client_cert and args.client_key):
        raise ValueError(
            f"the server asks for client certificates ({TLS_CLIENT_CA_ENV} is set): pass"
            " --client-cert and --client-key"
        )
    ca_cert = args.ca_cert or (Path(server_cert) if server_cert and not args.tls else None)
    return Tls(ca_cert, args.client_cert, args.client_key, args.server_name)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Exit 0 if the Tempering server is SERVING.")
    parser.add_argument(
        "address",
        nargs="?",
        help=f"host:port to probe (default: loopback, port of {ADDRESS_ENV})",
    )
    parser.add_argument(
        "--service",
        default="",
        help="service name to ask about; empty (default) means the whole server",
    )
    parser.add_argument("--timeout", type=float, default=5.0, help="seconds (default 5)")
    parser.add_argument(
        "--tls",
        action="store_true",
        help="speak TLS, trusting the system's root certificates (unless --ca-cert)",
    )
    parser.add_argument("--ca-cert", type=Path, help="PEM of the CA that signed the server")
    parser.add_argument("--server-name", help="name to expect in the server's certificate")
    parser.add_argument("--client-cert", type=Path, help="PEM client certificate (mutual TLS)")
    parser.add_argument("--client-key", type=Path, help="PEM key of --client-cert")
    parser.add_argument("--quiet", action="store_true", help="print nothing when healthy")
    return parser


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    environ = os.environ if environ is None else environ
    address = args.address or probe_address(environ)
    try:
        healthy, seen = check(address, args.service, args.timeout, tls_of(args, environ))
    except (OSError, ValueError) as error:  # unreadable certificate, missing client certificate
        healthy, seen = False, f"{address}: {error}"
    if not healthy or not args.quiet:
        print(seen, file=sys.stdout if healthy else sys.stderr)
    return HEALTHY if healthy else UNHEALTHY


if __name__ == "__main__":
    raise SystemExit(main())
