"""Several server processes on one port: how many by default, the port claimed before it is
shared, and real ``python -m service`` processes that serve, restart and stop together."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest
from e2e_support import Stack, running_stack
from svc_helpers import digits_like, fgsm_spec, linear_onnx
from tempering.v1 import hardening_pb2 as pb
from tempering.v1 import hardening_pb2_grpc as pb_grpc

from service.api.shared_port import claim_address
from service.core.settings import Settings, SettingsError
from service.ops import server_processes as processes_module
from service.ops.server_processes import MAX_AUTO_PROCESSES, server_processes
from tests.shared_support import base_env, upload_dataset, upload_model

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="processes share a port on Linux only"
)

TCP_LISTEN, TCP_ESTABLISHED = "0A", "01"


def load_settings(tmp_path: Path, **values: str) -> Settings:
    environ = {"TEMPERING_STATE_DIR": str(tmp_path)}
    environ.update({f"TEMPERING_{name.upper()}": value for name, value in values.items()})
    return Settings.load(environ)


# --- how many ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("cpus", "expected"), [(1, 1), (2, 2), (64, MAX_AUTO_PROCESSES)])
def test_by_default_there_is_one_process_per_usable_cpu_up_to_a_cap(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cpus: int, expected: int
) -> None:
    monkeypatch.setattr(processes_module, "usable_cpus", lambda: cpus)

    assert server_processes(load_settings(tmp_path)) == expected


def test_serving_metrics_keeps_one_process_unless_more_are_asked_for(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(processes_module, "usable_cpus", lambda: 8)

    assert server_processes(load_settings(tmp_path, metrics_address="127.0.0.1:9464")) == 1
    asked = load_settings(tmp_path, metrics_address="127.0.0.1:9464", server_processes="3")
    assert server_processes(asked) == 3


def test_where_a_port_cannot_be_shared_there_is_one_process_and_a_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(sys, "platform", "darwin")

    assert server_processes(load_settings(tmp_path, server_processes="4")) == 1
    assert "TEMPERING_SERVER_PROCESSES=4: processes cannot share 127.0.0.1:50051" in caplog.text


def test_a_unix_domain_socket_is_served_by_one_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(processes_module, "usable_cpus", lambda: 4)
    unix = load_settings(tmp_path, grpc_address=f"unix:{tmp_path / 'tempering.sock'}")

    assert server_processes(unix) == 1


def test_a_negative_number_of_processes_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="TEMPERING_SERVER_PROCESSES"):
        load_settings(tmp_path, server_processes="-1")


# --- the port ---------------------------------------------------------------------------------


def test_an_address_without_a_port_cannot_be_claimed() -> None:
    with pytest.raises(SettingsError, match="TEMPERING_GRPC_ADDRESS must be host:port"):
        claim_address("127.0.0.1")


def test_claiming_port_zero_names_a_free_port() -> None:
    host, _, port = claim_address("127.0.0.1:0").rpartition(":")

    assert host == "127.0.0.1"
    assert int(port) > 0


def test_an_address_another_server_listens_on_cannot_be_claimed_even_if_it_shares() -> None:
    with socket.socket() as other:
        other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        other.bind(("127.0.0.1", 0))
        other.listen()
        taken = f"127.0.0.1:{other.getsockname()[1]}"

        with pytest.raises(OSError, match=f"cannot listen on {taken}"):
            claim_address(taken)


# --- real processes ---------------------------------------------------------------------------


@contextlib.contextmanager
def two_process_server(tmp_path: Path) -> Iterator[Stack]:
    env = base_env({"TEMPERING_GRPC_ADDRESS": "127.0.0.1:0", "TEMPERING_SERVER_PROCESSES": "2"})
    args = ["--no-worker", "--state-dir", str(tmp_path / "state")]
    with running_stack(args, env, tmp_path) as stack:
        yield stack


def children(pid: int) -> list[int]:
    found: list[int] = []
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            found += [int(p) for p in (task / "children").read_text().split()]
    return found


def sockets_of(pid: int) -> set[int]:
    inodes = set()
    with contextlib.suppress(OSError):
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            with contextlib.suppress(OSError):
                target = os.readlink(fd)
                if target.startswith("socket:["):
                    inodes.add(int(target[8:-1]))
    return inodes


def tcp_sockets(port: int, state: str) -> set[int]:
    """Inodes of this machine's TCP sockets on local ``port`` in ``state`` (gRPC listens on
    IPv6 sockets with IPv4-mapped addresses, so both tables)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == state:
                found.add(int(fields[9]))
    return found


def port_of(stack: Stack) -> int:
    return int(stack.address.rsplit(":", 1)[1])


def listening_pids(stack: Stack) -> set[int]:
    listening = tcp_sockets(port_of(stack), TCP_LISTEN)
    candidates = [stack.server.pid, *children(stack.server.pid)]
    return {pid for pid in candidates if sockets_of(pid) & listening}


def siblings(stack: Stack) -> set[int]:
    return listening_pids(stack) - {stack.server.pid}


def eventually(condition: Callable[[], bool], timeout: float = 60.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.2)
    return False


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    with contextlib.suppress(OSError):
        return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"
    return True


def test_both_processes_listen_on_the_one_port_before_the_port_file_is_written(
    tmp_path: Path,
) -> None:
    with two_process_server(tmp_path) as stack:
        pids = listening_pids(stack)

        assert stack.server.pid in pids
        assert len(pids) == 2, stack.logs()


def test_a_job_submitted_through_one_process_is_seen_through_every_connection(
    tmp_path: Path,
) -> None:
    with two_process_server(tmp_path) as stack:
        model_id = upload_model(stack.stub, linear_onnx())
        dataset_id = upload_dataset(stack.stub, digits_like())
        job = stack.stub.SubmitJob(
            pb.SubmitJobRequest(spec=fgsm_spec(model_id, dataset_id)), timeout=60
        )
        with contextlib.ExitStack() as connections:
            stubs = []
            for _ in range(20):
                channel = connections.enter_context(
                    grpc.insecure_channel(stack.address, [("grpc.use_local_subchannel_pool", 1)])
                )
                stubs.append(pb_grpc.HardeningServiceStub(channel))
            seen = [stub.GetJob(pb.GetJobRequest(job_id=job.id), timeout=30) for stub in stubs]
            established = tcp_sockets(port_of(stack), TCP_ESTABLISHED)
            serving = {pid for pid in listening_pids(stack) if sockets_of(pid) & established}

        assert {s.id for s in seen} == {job.id}
        assert len(serving) == 2, "twenty connections all went to one process"


def test_a_sibling_that_dies_is_started_again(tmp_path: Path) -> None:
    with two_process_server(tmp_path) as stack:
        (killed,) = siblings(stack)
        os.kill(killed, signal.SIGKILL)

        assert eventually(lambda: len(siblings(stack) - {killed}) == 1), stack.logs()
        assert "exited with status -9; starting it again" in stack.server.log_tail()


def test_sigterm_to_the_first_process_stops_every_process(tmp_path: Path) -> None:
    with two_process_server(tmp_path) as stack:
        (sibling,) = siblings(stack)
        code = stack.server.stop()

        assert code == 0
        assert gone(sibling)


def test_siblings_stop_when_the_first_process_is_killed_outright(tmp_path: Path) -> None:
    with two_process_server(tmp_path) as stack:
        (sibling,) = siblings(stack)
        stack.server.popen.kill()
        stack.server.popen.wait()

        assert eventually(lambda: gone(sibling), timeout=40), "a sibling outlived its server"


def test_a_second_server_on_a_shared_port_is_refused(tmp_path: Path) -> None:
    with two_process_server(tmp_path) as stack:
        env = base_env({"TEMPERING_SERVER_PROCESSES": "2"})
        command = [sys.executable, "-m", "service", "--no-worker"]
        command += ["--state-dir", str(tmp_path / "other"), "--grpc-address", stack.address]
        other = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)

        assert other.returncode == 1
        assert f"cannot listen on {stack.address}" in other.stderr
