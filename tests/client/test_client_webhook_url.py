"""``--webhook-url`` and the SDK's ``webhook_url`` reach the server's job; the signature check
receivers use is in test_webhook_signing (service side)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from client_helpers import CliRunner

from client import HardeningClient, HardeningParams, InvalidInput, Method, convert
from client.domain import JobSpec, ModelFormat
from client.idempotency import derive_idempotency_key

HOOK = "https://hooks.example.com/registry"


def test_the_webhook_url_survives_the_trip_through_the_proto() -> None:
    spec = JobSpec("model-x", "dataset-y", HardeningParams(method=Method.FGSM, eps=0.1), None, HOOK)

    assert convert.spec(convert.spec_to_proto(spec)).webhook_url == HOOK


def test_submit_sends_the_webhook_url_to_the_server(
    api: HardeningClient, digits_model: Path, digits_train: Path
) -> None:
    model_id = api.upload_model(digits_model)
    train_id = api.upload_dataset(digits_train)

    with pytest.raises(InvalidInput, match="TEMPERING_WEBHOOK_SECRET_FILE"):
        api.submit(model_id, train_id, method="fgsm", eps=0.1, webhook_url=HOOK)


def test_harden_webhook_url_reaches_the_server_which_names_its_setting(
    temper: CliRunner, server_address: str, digits_model: Path, digits_train: Path,
    tmp_path: Path,
) -> None:  # fmt: skip
    result = temper(
        "harden", digits_model, "--data", digits_train, "--eps", "0.1", "--webhook-url", HOOK,
        "--server", server_address, "-o", tmp_path / "h.onnx", "--json",
    )  # fmt: skip

    assert result.code == 4
    error = json.loads(result.out)["error"]
    assert error["grpc_code"] == "FAILED_PRECONDITION"
    assert "TEMPERING_WEBHOOK_SECRET_FILE" in error["message"]


def test_harden_local_with_a_webhook_url_exits_2(
    temper: CliRunner, digits_model: Path, digits_train: Path, tmp_path: Path
) -> None:
    result = temper(
        "harden", digits_model, "--data", digits_train, "--eps", "0.1", "--webhook-url", HOOK,
        "--local", "-o", tmp_path / "h.onnx",
    )  # fmt: skip

    assert result.code == 2
    assert "--webhook-url" in result.err


def test_a_webhook_url_changes_the_derived_idempotency_key(
    digits_model: Path, digits_train: Path
) -> None:
    params = HardeningParams(method=Method.FGSM, eps=0.1)

    def key(url: str) -> str:
        return derive_idempotency_key(
            digits_model, ModelFormat.ONNX, digits_train, None, params, {}, url
        )

    assert key(HOOK) != key("")
    assert key("") == derive_idempotency_key(
        digits_model, ModelFormat.ONNX, digits_train, None, params, {}
    )
