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
from client.errors import InvalidInput
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


def local_request(flags: list[str]) -> Any:
    """The engine's request as ``--local`` builds it for ``flags``."""
    pytest.importorskip("workers.local")
    args = build_parser().parse_args(
        ["harden", "model.onnx", "--data", "train.npz", "--local", "-o", "h.onnx", *flags]
    )
    return engine_request(
        Path("model.onnx"), ModelFormat.ONNX, Path("train.npz"), None, params_from(args)
    )


def test_local_leaves_to_the_recipe_every_training_value_the_user_did_not_give() -> None:
    training = local_request(["--eps", "0.1", "--method", "pgd"]).training

    assert (training.epochs, training.batch_size) == (None, None)
    assert (training.attack_steps, training.eps_warmup_epochs) == (None, None)
    assert training.validation_size is None


def test_local_passes_the_values_the_user_gave_zeros_included() -> None:
    request = local_request(
        ["--eps", "0.3", "--method", "trades", "--epochs", "3", "--batch-size", "32",
         "--eps-warmup-epochs", "0", "--validation-size", "0", "--trades-beta", "3"]
    )  # fmt: skip

    training = request.training
    assert (training.epochs, training.batch_size, training.trades_beta) == (3, 32, 3.0)
    assert (training.eps_warmup_epochs, training.validation_size) == (0.0, 0)
    assert request.threat.eps == 0.3


@pytest.mark.parametrize(
    ("flags", "server_words"),
    [
        (["--eps", "0.1", "--learning-rate", "0"], "spec.training.learning_rate"),
        (["--eps", "5"], "at least the width of the input domain"),
    ],
    ids=["zero-learning-rate", "eps-covers-the-domain"],
)
def test_local_refuses_what_the_server_refuses_in_the_same_words(
    flags: list[str], server_words: str
) -> None:
    server_convert = pytest.importorskip("service.api.convert")
    args = build_parser().parse_args(
        ["harden", "model.onnx", "--data", "train.npz", "--local", "-o", "h.onnx", *flags]
    )
    message = convert.spec_to_proto(
        JobSpec(model_id="m", train_dataset_id="d", params=params_from(args))
    )
    with pytest.raises(Exception, match=server_words) as server:
        server_convert.job_spec(message)

    with pytest.raises(InvalidInput) as local:
        local_request(flags)

    assert server_words in str(local.value)
    assert str(local.value) == str(server.value)
