"""``temper`` commands against the service's real gRPC server in this process (no worker)."""

from __future__ import annotations

import json
from pathlib import Path

from client_helpers import CliRunner

from client import HardeningClient, HardeningParams, Method


def queued_job(api: HardeningClient, model: Path, train: Path, labels: dict[str, str]) -> str:
    params = HardeningParams(method=Method.PGD, eps=0.1)
    job = api.submit(api.upload_model(model), api.upload_dataset(train), params, labels=labels)
    return job.id


def test_jobs_json_lists_the_jobs_with_the_requested_label(
    temper: CliRunner, api: HardeningClient, server_address: str, digits_model: Path,
    digits_train: Path,
) -> None:  # fmt: skip
    wanted = queued_job(api, digits_model, digits_train, {"owner": "ana"})
    queued_job(api, digits_model, digits_train, {"owner": "bo"})

    result = temper("--server", server_address, "--json", "jobs", "--label", "owner=ana")

    assert result.code == 0, result.err
    assert [job["id"] for job in json.loads(result.out)] == [wanted]


def test_jobs_table_shows_state_and_method(
    temper: CliRunner, api: HardeningClient, server_address: str, digits_model: Path,
    digits_train: Path,
) -> None:  # fmt: skip
    job_id = queued_job(api, digits_model, digits_train, {})

    result = temper("jobs", "--server", server_address, "--state", "queued")

    assert result.code == 0, result.err
    row = next(line for line in result.out.splitlines() if line.startswith(job_id))
    assert "QUEUED" in row
    assert "pgd" in row


def test_cancel_then_watch_reports_cancelled_and_exits_1(
    temper: CliRunner, api: HardeningClient, server_address: str, digits_model: Path,
    digits_train: Path,
) -> None:  # fmt: skip
    job_id = queued_job(api, digits_model, digits_train, {})

    cancelled = temper("cancel", job_id, "--server", server_address)
    watched = temper("watch", job_id, "--server", server_address)

    assert cancelled.code == 0, cancelled.err
    assert "CANCELLED" in cancelled.out
    assert watched.code == 1
    assert "CANCELLED" in watched.out


def test_download_from_an_unfinished_job_exits_4_with_the_servers_reason(
    temper: CliRunner, api: HardeningClient, server_address: str, digits_model: Path,
    digits_train: Path, tmp_path: Path,
) -> None:  # fmt: skip
    job_id = queued_job(api, digits_model, digits_train, {})

    result = temper("download", job_id, "--server", server_address, "-o", tmp_path / "h.onnx")

    assert result.code == 4
    assert "SUCCEEDED" in result.err


def test_harden_with_zero_epochs_reaches_the_server_and_exits_4_with_its_message(
    temper: CliRunner, server_address: str, digits_model: Path, digits_train: Path,
    tmp_path: Path,
) -> None:  # fmt: skip
    result = temper(
        "harden", digits_model, "--data", digits_train, "--eps", "0.1", "--epochs", "0",
        "--server", server_address, "-o", tmp_path / "h.onnx", "--json",
    )  # fmt: skip

    assert result.code == 4
    error = json.loads(result.out)["error"]
    assert error["grpc_code"] == "INVALID_ARGUMENT"
    assert "epochs must be between 1 and 1000, got 0" in error["message"]


def test_harden_on_a_server_refusing_the_model_exits_4_with_json_error(
    temper: CliRunner, server_address: str, digits_train: Path, tmp_path: Path
) -> None:
    fake = tmp_path / "model.onnx"
    fake.write_text("not a model\n")

    result = temper(
        "harden", fake, "--data", digits_train, "--eps", "0.1", "--server", server_address,
        "-o", tmp_path / "h.onnx", "--json",
    )  # fmt: skip

    assert result.code == 4
    error = json.loads(result.out)["error"]
    assert error["grpc_code"] == "INVALID_ARGUMENT"
    assert error["exit_code"] == 4
