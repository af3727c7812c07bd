"""``temper --version``: the client's version, and the server's when one is named."""

from __future__ import annotations

import json
from importlib import metadata

import pytest
from client_helpers import CliRunner
from fake_service import FakeHardening, running

from client.commands.common import SERVER_ENV

VERSION = metadata.version("tempering")


def test_version_prints_the_package_version_without_a_command(temper: CliRunner) -> None:
    result = temper("--version")

    assert result.code == 0, result.err
    assert result.out == f"temper {VERSION}\n"


def test_version_with_a_server_adds_the_servers_version_and_api(
    temper: CliRunner, server_address: str
) -> None:
    result = temper("--version", "--server", server_address)

    assert result.code == 0, result.err
    assert result.out.splitlines() == [
        f"temper {VERSION}",
        f"server {VERSION} (tempering.v1) at {server_address}",
    ]


def test_version_asks_the_server_named_in_the_environment(
    temper: CliRunner, server_address: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(SERVER_ENV, server_address)

    result = temper("--json", "--version")

    assert json.loads(result.out) == {
        "temper": VERSION,
        "server": {"address": server_address, "version": VERSION, "api": "tempering.v1"},
    }


def test_version_from_a_server_older_than_the_call_says_it_cannot_tell(
    temper: CliRunner,
) -> None:
    with running(FakeHardening()) as address:
        result = temper("--version", "--server", address)

    assert result.code == 0, result.err
    assert "server unknown (the server predates GetServerInfo)" in result.out


def test_version_with_an_unreachable_server_exits_3(temper: CliRunner) -> None:
    result = temper("--version", "--server", "127.0.0.1:1")

    assert result.code == 3
    assert result.out == ""


def test_no_command_and_no_version_exits_2_pointing_at_help(temper: CliRunner) -> None:
    result = temper()

    assert result.code == 2
    assert "temper --help" in result.err
