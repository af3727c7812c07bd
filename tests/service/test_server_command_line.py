"""``temper serve`` / ``python -m service``: the flags people type, whole names only, and
--help that gives each setting's type and default."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import grpc
import pytest

from service.core.settings import SettingsError
from service.ops.cli import build_parser, listen_address
from tests.shared_support import base_env


def address_of(*argv: str, environ: dict[str, str] | None = None) -> str | None:
    return listen_address(build_parser().parse_args(list(argv)), environ or {})


def test_port_is_its_own_flag_not_an_abbreviation_of_port_file() -> None:
    args = build_parser().parse_args(["--port", "50052"])

    assert args.port == 50052
    assert args.port_file is None


def test_port_replaces_the_port_of_the_default_address() -> None:
    assert address_of("--port", "50052") == "127.0.0.1:50052"


def test_host_and_port_together_make_the_address() -> None:
    assert address_of("--host", "0.0.0.0", "--port", "7000") == "0.0.0.0:7000"


def test_an_ipv6_host_is_bracketed() -> None:
    assert address_of("--host", "::1") == "[::1]:50051"


def test_port_applies_to_the_address_in_the_environment() -> None:
    environ = {"TEMPERING_GRPC_ADDRESS": "10.0.0.5:9000"}

    assert address_of("--port", "9001", environ=environ) == "10.0.0.5:9001"


def test_port_with_grpc_address_is_refused_as_two_answers_to_one_question() -> None:
    with pytest.raises(SettingsError, match="--grpc-address"):
        address_of("--port", "1", "--grpc-address", "127.0.0.1:2")


@pytest.mark.parametrize("value", ["70000", "http"])
def test_a_port_out_of_range_or_not_a_number_exits_2(value: str) -> None:
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args(["--port", value])

    assert exit_.value.code == 2


def test_an_abbreviated_flag_exits_2() -> None:
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args(["--port-f", "x"])

    assert exit_.value.code == 2


def test_help_gives_each_setting_its_type_and_default(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--help"])
    help_text = " ".join(capsys.readouterr().out.split())

    assert "--grpc-address HOST:PORT" in help_text
    assert "(default: 127.0.0.1:50051)" in help_text
    assert "--max-upload-bytes SIZE" in help_text
    assert "(default: 10G)" in help_text
    assert "--state-dir PATH" in help_text
    assert "VALUE" not in help_text


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_server_listens_on_the_port_given_by_port(tmp_path: Path) -> None:
    port, port_file = free_port(), tmp_path / "port"
    command = [sys.executable, "-m", "service", "--no-worker", "--state-dir", str(tmp_path)]
    command += ["--host", "127.0.0.1", "--port", str(port), "--port-file", str(port_file)]
    server = subprocess.Popen(command, env=base_env({}), stderr=subprocess.DEVNULL)
    try:
        channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        grpc.channel_ready_future(channel).result(timeout=60)
        channel.close()
    finally:
        server.terminate()
        server.wait(timeout=60)
    assert not (tmp_path / "50052").exists()
