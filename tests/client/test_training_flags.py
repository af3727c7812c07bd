"""Training flags left out are not sent, so the engine's recipe chooses them, and ``--local``
gives the engine the same configuration as the server would for the same flags."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from client_helpers import CliRunner
from fake_service import FakeHardening, running
from tempering.v1 import hardening_pb2 as pb

from client import convert
from client.cli import build_parser
from client.commands.harden import params_from
from client.domain import JobSpec, ModelFormat
from client.local_run import engine_request

TRAINING_FIELDS = ("epochs", "batch_size", "learning_rate", "select_best_robust", "validation_size")
PGD_FIELDS = ("attack_steps", "step_size", "eps_warmup_epochs")


def submitted_training(
    temper: CliRunner, model: Path, train: Path, output: Path, *flags: str
) -> pb.Training:
    fake = FakeHardening()
    with running(fake) as address:
        result = temper(
            "harden", model, "--data", train, "--method", "pgd", "--eps", "0.1",
            *flags, "--server", address, "-o", output,
        )  # fmt: skip
    assert result.code == 0, result.err
    (request,) = fake.submitted
    return request.spec.training


def test_the_cli_sends_no_training_field_the_user_did_not_give(
    temper: CliRunner, digits_model: Path, digits_train: Path, tmp_path: Path
) -> None:
    training = submitted_training(temper, digits_model, digits_train, tmp_path / "h.onnx")

    sent = [name for name in TRAINING_FIELDS if training.HasField(name)]
    sent += [f"pgd.{name}" for name in PGD_FIELDS if training.pgd.HasField(name)]
    assert sent == []


def test_the_cli_sends_a_zero_warmup_and_a_zero_validation_size_it_was_given(
    temper: CliRunner, digits_model: Path, digits_train: Path, tmp_path: Path
) -> None:
    training = submitted_training(
        temper, digits_model, digits_train, tmp_path / "h.onnx",
        "--eps-warmup-epochs", "0", "--validation-size", "0",
    )  # fmt: skip

    assert training.pgd.HasField("eps_warmup_epochs")
    assert training.HasField("validation_size")
    assert (training.pgd.eps_warmup_epochs, training.validation_size) == (0.0, 0)


def engine_configs(flags: list[str]) -> tuple[Any, Any]:
    """The engine's request as ``--local`` builds it, and the spec the server builds from what
    the CLI sends, for the same flags."""
    server_convert = pytest.importorskip("service.api.convert")
    args = build_parser().parse_args(
        ["harden", "model.onnx", "--data", "train.npz", "--local", "-o", "h.onnx", *flags]
    )
    params = params_from(args)
    local = engine_request(Path("model.onnx"), ModelFormat.ONNX, Path("train.npz"), None, params)
    message = convert.spec_to_proto(JobSpec(model_id="m", train_dataset_id="d", params=params))
    return local, server_convert.job_spec(message)


@pytest.mark.parametrize(
    "flags",
    [
        ["--eps", "0.1"],
        ["--eps", "0.1", "--epochs", "3", "--batch-size", "32", "--validation-size", "0"],
        ["--eps", "0.1", "--eps-warmup-epochs", "0", "--learning-rate", "0.01"],
        ["--eps", "0.3", "--method", "trades", "--eps-warmup-epochs", "1.5", "--trades-beta", "3"],
        ["--eps", "0.1", "--method", "fgsm", "--step-size", "0.05", "--from-scratch"],
        ["--eps", "0.1", "--method", "distillation", "--temperature", "20", "--epochs", "4"],
        ["--eps", "0.5", "--norm", "l2", "--suite", "fast", "--eval-samples", "64"],
    ],
    ids=["nothing-given", "sizes", "no-warmup", "trades", "fgsm", "distillation", "evaluation"],
)
def test_local_builds_the_same_engine_config_as_the_server_for_the_same_flags(
    flags: list[str],
) -> None:
    local, server = engine_configs(flags)

    assert local.training == server.training
    assert local.threat == server.threat
    assert local.evaluation == server.evaluation
