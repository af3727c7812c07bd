"""``temper serve`` and ``temper worker`` run the server's and the worker's own programs
(``python -m service``, ``python -m workers``) as child processes, with the whole command line."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
from pathlib import Path

import grpc
import pytest

from client.cli import main
from tests.shared_support import base_env


@pytest.mark.parametrize(
    ("command", "module", "prog"),
    [
        ("serve", "service.ops.cli", "tempering-server"),
        ("worker", "workers.celery_app", "tempering-worker"),
    ],
)
def test_subcommand_passes_its_arguments_to_the_child_process(
    capfd: pytest.CaptureFixture[str], command: str, module: str, prog: str
) -> None:
    pytest.importorskip(module)

    code = main([command, "--help"])

    out = capfd.readouterr().out
    assert code == 0
    assert f"usage: {prog}" in out
    assert "--state-dir" in out


def test_temper_exits_with_the_childs_code(capfd: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("service.ops.cli")

    code = main(["serve", "--no-such-flag"])

    assert code == 2
    assert "--no-such-flag" in capfd.readouterr().err


def test_a_missing_server_extra_exits_2_saying_what_to_install(
    capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    missing = tmp_path / "grpc_reflection"
    missing.mkdir()
    (missing / "__init__.py").write_text(
        "raise ModuleNotFoundError(\"No module named 'grpc_reflection'\", name='grpc_reflection')"
    )
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))

    code = main(["serve"])

    err = capfd.readouterr().err
    assert code == 2
    assert "install tempering[server]" in err
    assert "grpc_reflection" in err
    assert "Traceback" not in err


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def children_of(pid: int) -> list[int]:
    text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    return [int(child) for child in text.split()]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_serve_runs_the_server_as_a_child_that_answers_and_stops_on_sigterm(
    tmp_path: Path,
) -> None:
    pytest.importorskip("service.ops.cli")
    port = free_port()
    temper = subprocess.Popen(
        [sys.executable, "-m", "client.cli", "serve", "--no-worker", "--state-dir", str(tmp_path),
         "--port", str(port)],
        env=base_env({}),
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        grpc.channel_ready_future(channel).result(timeout=60)
        channel.close()
        (server,) = children_of(temper.pid)
        command = Path(f"/proc/{server}/cmdline").read_bytes().split(b"\0")
        assert command[1:3] == [b"-m", b"service"]

        temper.send_signal(signal.SIGTERM)

        assert temper.wait(timeout=60) == 0
        assert not Path(f"/proc/{server}").exists()
    finally:
        if temper.poll() is None:
            temper.kill()
            temper.wait(timeout=10)
