"""Command-line mistakes end with exit code 2 and a message that names the problem."""

from __future__ import annotations

from pathlib import Path

import pytest
from client_helpers import CliRunner


def test_missing_eps_exits_2_naming_the_flag(
    temper: CliRunner, digits_model: Path, digits_train: Path, tmp_path: Path
) -> None:
    result = temper("harden", digits_model, "--data", digits_train, "--local", "-o", tmp_path / "h")

    assert result.code == 2
    assert "--eps" in result.err


@pytest.mark.parametrize(
    ("flag", "value"),
    [("--eps", "-0.1"), ("--eps", "nan"), ("--epochs", "-1"), ("--epochs", "two")],
)
def test_out_of_range_numbers_exit_2_naming_the_flag(
    temper: CliRunner,
    digits_model: Path,
    digits_train: Path,
    tmp_path: Path,
    flag: str,
    value: str,
) -> None:
    args = ["harden", digits_model, "--data", digits_train, "--local", "-o", tmp_path / "h.onnx"]
    args += ["--eps", "0.1"] if flag != "--eps" else []

    result = temper(*args, f"{flag}={value}")

    assert result.code == 2
    assert flag in result.err


def test_local_step_size_of_zero_is_refused_like_the_servers_exits_4(
    temper: CliRunner, digits_model: Path, digits_train: Path, tmp_path: Path
) -> None:
    result = temper(
        "harden", digits_model, "--data", digits_train, "--eps", "0.1", "--step-size", "0",
        "--local", "-o", tmp_path / "h.onnx",
    )  # fmt: skip

    assert result.code == 4
    assert "step_size must be greater than 0" in result.err
    assert not (tmp_path / "h.onnx").exists()


def test_unknown_method_exits_2_listing_the_choices(
    temper: CliRunner, digits_model: Path, digits_train: Path, tmp_path: Path
) -> None:
    result = temper(
        "harden", digits_model, "--data", digits_train, "--eps", "0.1", "--method", "magic",
        "--local", "-o", tmp_path / "h.onnx",
    )  # fmt: skip

    assert result.code == 2
    assert "trades" in result.err


def test_harden_without_local_or_server_exits_2_saying_where_to_run(
    temper: CliRunner, digits_model: Path, digits_train: Path, tmp_path: Path
) -> None:
    result = temper("harden", digits_model, "--data", digits_train, "--eps", "0.1", "-o", "h.onnx")

    assert result.code == 2
    assert "--local" in result.err
    assert "--server" in result.err


def test_harden_with_both_local_and_server_exits_2(
    temper: CliRunner, digits_model: Path, digits_train: Path
) -> None:
    result = temper(
        "harden", digits_model, "--data", digits_train, "--eps", "0.1", "--local",
        "--server", "localhost:1", "-o", "h.onnx",
    )  # fmt: skip

    assert result.code == 2
    assert "one of --local and --server" in result.err


def test_missing_model_file_exits_2_naming_the_path(
    temper: CliRunner, digits_train: Path, tmp_path: Path
) -> None:
    missing = tmp_path / "nowhere.onnx"

    result = temper("harden", missing, "--data", digits_train, "--eps", "0.1", "--local", "-o", "h")

    assert result.code == 2
    assert str(missing) in result.err


def test_model_suffix_without_a_known_format_asks_for_format(
    temper: CliRunner, digits_train: Path, tmp_path: Path
) -> None:
    model = tmp_path / "model.bin"
    model.write_bytes(b"\x08\x01")

    result = temper("harden", model, "--data", digits_train, "--eps", "0.1", "--local", "-o", "h")

    assert result.code == 2
    assert "--format" in result.err


def test_malformed_label_exits_2(temper: CliRunner) -> None:
    result = temper("jobs", "--label", "no-equals-sign", "--server", "localhost:1")

    assert result.code == 2
    assert "key=value" in result.err


def test_jobs_without_a_server_exits_2_naming_the_variable(temper: CliRunner) -> None:
    result = temper("jobs")

    assert result.code == 2
    assert "TEMPERING_SERVER" in result.err


def test_help_lists_the_exit_codes_and_exits_0(temper: CliRunner) -> None:
    result = temper("--help")

    assert result.code == 0
    assert "exit codes:" in result.out
    assert "refused the input" in result.out


def test_unreachable_server_exits_3(temper: CliRunner) -> None:
    result = temper("jobs", "--server", "127.0.0.1:1")

    assert result.code == 3
    assert "temper jobs: error:" in result.err


def test_client_certificate_without_its_key_exits_2(temper: CliRunner, tmp_path: Path) -> None:
    cert = tmp_path / "client.pem"
    cert.write_text("-----BEGIN CERTIFICATE-----\n")

    result = temper("jobs", "--server", "localhost:1", "--client-cert", cert)

    assert result.code == 2
    assert "--client-key" in result.err
