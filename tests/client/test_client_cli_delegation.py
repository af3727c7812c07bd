"""``temper serve`` and ``temper worker`` hand their whole command line to the service's own
entry points."""

from __future__ import annotations

import sys

import pytest
from client_helpers import CliRunner


@pytest.mark.parametrize(
    ("command", "module", "prog"),
    [
        ("serve", "service.ops.cli", "tempering-server"),
        ("worker", "workers.celery_app", "tempering-worker"),
    ],
)
def test_subcommand_passes_its_arguments_to_the_entry_point(
    temper: CliRunner, command: str, module: str, prog: str
) -> None:
    pytest.importorskip(module)

    result = temper(command, "--help")

    assert result.code == 0
    assert f"usage: {prog}" in result.out
    assert "--state-dir" in result.out


def test_a_missing_server_extra_exits_2_saying_what_to_install(
    temper: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "service.ops.cli", None)

    result = temper("serve")

    assert result.code == 2
    assert "install tempering[server]" in result.err
