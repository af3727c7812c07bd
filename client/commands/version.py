"""``temper --version``: this client's version and, given a server, the server's."""

from __future__ import annotations

import argparse

import grpc

from client.commands.common import connect, print_json, server_address
from client.domain import ServerInfo
from client.errors import ServerError
from client.exit_codes import ExitCode
from client.version import client_version

UNKNOWN_SERVER = ServerInfo(version="unknown (the server predates GetServerInfo)", api="")


def run(args: argparse.Namespace) -> int:
    server = server_address(args)
    info = _server_info(args) if server else None
    if args.json:
        document: dict[str, object] = {"temper": client_version()}
        if info is not None:
            document["server"] = {"address": server, "version": info.version, "api": info.api}
        print_json(document)
        return ExitCode.OK
    print(f"temper {client_version()}")
    if info is not None:
        api = f" ({info.api})" if info.api else ""
        print(f"server {info.version}{api} at {server}")
    return ExitCode.OK


def _server_info(args: argparse.Namespace) -> ServerInfo:
    with connect(args) as api:
        try:
            return api.server_info()
        except ServerError as error:
            if error.code is not grpc.StatusCode.UNIMPLEMENTED:
                raise
            return UNKNOWN_SERVER
