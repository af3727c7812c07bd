"""The API key travels as ``authorization: Bearer`` metadata; a server that requires one refuses
calls without it."""

from __future__ import annotations

import grpc
import pytest
from client_helpers import CliRunner

from client import AuthenticationFailed, HardeningClient


def test_a_client_with_the_key_is_served(keyed_server: tuple[str, str]) -> None:
    address, key = keyed_server

    with HardeningClient(address, api_key=key, timeout=10) as api:
        assert api.list().jobs == ()


def test_a_client_without_a_key_raises_authentication_failed(
    keyed_server: tuple[str, str],
) -> None:
    address, _ = keyed_server

    with HardeningClient(address, timeout=10) as api, pytest.raises(AuthenticationFailed) as caught:
        api.list()

    assert caught.value.code is grpc.StatusCode.UNAUTHENTICATED


def test_cli_takes_the_key_from_the_environment_and_exits_3_without_it(
    temper: CliRunner, keyed_server: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    address, key = keyed_server

    refused = temper("jobs", "--server", address)
    monkeypatch.setenv("TEMPERING_API_KEY", key)
    served = temper("jobs", "--server", address)

    assert refused.code == 3
    assert "API key" in refused.err
    assert served.code == 0, served.err
