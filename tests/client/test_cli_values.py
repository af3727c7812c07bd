"""Values as people write them: epsilons as fractions, negative bounds, and an epsilon that
would make the whole run meaningless refused before it starts."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
from client_helpers import CliRunner

from client.cli import build_parser
from client.commands.common import UsageError
from client.commands.harden import check_eps_fits_the_domain
from client.domain import Norm


def harden_args(*extra: str) -> argparse.Namespace:
    base = ["harden", "m.onnx", "--data", "d.npz", "--local", "-o", "h.onnx"]
    return build_parser().parse_args(base + list(extra))


def test_eps_accepts_a_fraction() -> None:
    assert harden_args("--eps", "8/255").eps == pytest.approx(8 / 255)


@pytest.mark.parametrize(
    ("flag", "text", "value"),
    [("--learning-rate", "1/200", 0.005), ("--step-size", "2/255", 2 / 255)],
)
def test_other_number_flags_accept_a_fraction(flag: str, text: str, value: float) -> None:
    args = harden_args("--eps", "0.1", flag, text)

    assert getattr(args, flag[2:].replace("-", "_")) == pytest.approx(value)


@pytest.mark.parametrize("text", ["8/0", "8/", "1/2/3", "eight/255"])
def test_a_malformed_fraction_exits_2_with_an_example(temper: CliRunner, text: str) -> None:
    result = temper("harden", "m.onnx", "--data", "d.npz", "--local", "-o", "h", "--eps", text)

    assert result.code == 2
    assert "--eps" in result.err
    assert "8/255" in result.err


def test_negative_bounds_are_read_as_values_in_the_plain_form() -> None:
    args = harden_args("--eps", "0.1", "--lower", "-4,-4", "--upper", "4,4")

    assert args.lower == (-4.0, -4.0)
    assert args.upper == (4.0, 4.0)


def test_negative_bounds_are_read_as_values_after_an_equals_sign() -> None:
    assert harden_args("--eps", "0.1", "--lower=-2.5,-.5").lower == (-2.5, -0.5)


def test_a_single_negative_fraction_is_a_value() -> None:
    assert harden_args("--eps", "0.1", "--lower", "-1/2").lower == (-0.5,)


def test_an_unknown_flag_is_still_an_unknown_flag(temper: CliRunner) -> None:
    result = temper("harden", "m", "--data", "d", "-o", "h", "--eps", "0.1", "--lowr", "-4")

    assert result.code == 2
    assert "--lowr" in result.err


def test_eps_covering_the_whole_input_range_is_refused_suggesting_a_fraction(
    temper: CliRunner, digits_model: Path, digits_train: Path, tmp_path: Path
) -> None:
    result = temper(
        "harden", digits_model, "--data", digits_train, "--eps", "8", "--local",
        "-o", tmp_path / "h.onnx",
    )  # fmt: skip

    assert result.code == 2
    assert "covers the whole input range [0, 1]" in result.err
    assert "--eps 8/255" in result.err
    assert not (tmp_path / "h.onnx").exists()


def test_eps_within_the_range_of_standardised_data_is_accepted() -> None:
    check_eps_fits_the_domain(1.0, Norm.LINF, (-4.0,), (4.0,))


def test_eps_as_wide_as_a_negative_range_is_refused() -> None:
    with pytest.raises(UsageError, match=r"\[-4, 4\]"):
        check_eps_fits_the_domain(8.0, Norm.LINF, (-4.0, -4.0), (4.0, 4.0))


def test_an_l2_eps_is_not_held_to_the_per_coordinate_range() -> None:
    check_eps_fits_the_domain(3.0, Norm.L2, (), ())
