"""Real gRPC servers for the hostile corpus: in-process, on port 0, one with trusted formats off
and one with them on, each in its own folder (laid out as :mod:`servers` says), each with two
tenants: the cases come from one, the other's job must stay readable.

No worker runs: accepted jobs stay QUEUED on a broker file nobody consumes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from service.api.server import start_server

from .runner import HostileServer, connect, prepare_root
from .servers import hostile_settings, write_key_file


def start(root: Path, trusted: bool) -> HostileServer:
    context = prepare_root(root)
    write_key_file(root)
    settings = hostile_settings(root, trusted=trusted)
    running = start_server(settings)
    return connect(running.port, root, settings, context, running)


@pytest.fixture(scope="module")
def hostile_servers(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Callable[[bool], HostileServer]]:
    """``hostile_servers(trusted)``: the module's server with trusted formats on or off,
    started on first use."""
    started: dict[bool, HostileServer] = {}

    def get(trusted: bool) -> HostileServer:
        if trusted not in started:
            root = tmp_path_factory.mktemp("trusted" if trusted else "untrusted")
            started[trusted] = start(root, trusted)
        return started[trusted]

    yield get
    for server in started.values():
        server.close()
