"""How ``temper`` reads its command line: whole flag names only, and --help that says each
value's type and default."""

from __future__ import annotations

import pytest
from client_helpers import CliRunner

from client.cli import build_parser


def test_an_abbreviated_flag_is_refused_not_guessed(temper: CliRunner) -> None:
    result = temper("jobs", "--lim", "5", "--server", "127.0.0.1:1")

    assert result.code == 2
    assert "unrecognized arguments: --lim" in result.err


def test_an_abbreviated_top_level_flag_is_refused(temper: CliRunner) -> None:
    result = temper("--serv", "127.0.0.1:1", "jobs")

    assert result.code == 2
    assert "--serv" in result.err


def test_help_names_the_type_of_each_value(temper: CliRunner) -> None:
    result = temper("harden", "--help")

    assert result.code == 0
    for usage in ("--eps NUMBER", "--epochs INT", "--lower V[,V...]", "--seed INT"):
        assert usage in result.out


def test_help_shows_the_default_of_a_flag_that_has_one(temper: CliRunner) -> None:
    help_text = " ".join(temper("harden", "--help").out.split())

    assert "--norm {linf,l2} the norm (default: linf)" in help_text
    assert "--seed INT seed of the data split and training (default: 0)" in help_text


def test_help_appends_no_default_to_a_text_that_gives_its_own(temper: CliRunner) -> None:
    help_text = " ".join(temper("harden", "--help").out.split())
    attack_steps = help_text[
        help_text.rindex("--attack-steps INT") : help_text.rindex("--step-size")
    ]

    assert attack_steps.count("default") == 1
    assert "(default: None)" not in help_text


ENGINE_CHOSEN = (
    "--epochs", "--batch-size", "--learning-rate", "--validation-size", "--attack-steps",
    "--step-size", "--eps-warmup-epochs", "--trades-beta", "--temperature", "--eval-samples",
    "--word-share", "--char-share", "--embedding-eps",
)  # fmt: skip


@pytest.mark.parametrize("flag", ENGINE_CHOSEN)
def test_help_of_a_flag_the_engine_chooses_says_so_and_restates_no_number(
    temper: CliRunner, flag: str
) -> None:
    lines = temper("harden", "--help").out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"  {flag} "))
    end = next(i for i in range(start + 1, len(lines)) if not lines[i].startswith("     "))
    entry = " ".join(" ".join(lines[start:end]).split())

    assert "default: the recipe's choice" in entry or "default: the engine's" in entry
    assert not any(character.isdigit() for character in entry.partition("default")[2])


def test_help_shows_the_default_of_a_flag_whose_text_leaves_it_out(temper: CliRunner) -> None:
    help_text = " ".join(temper("jobs", "--help").out.split())

    assert "--limit INT at most this many (default: 50)" in help_text


@pytest.mark.parametrize("command", ["jobs", "watch", "download", "report", "harden", "demo"])
def test_every_subcommand_refuses_abbreviations(command: str) -> None:
    parser = build_parser()
    subparsers = next(a for a in parser._actions if a.dest == "command")

    assert parser.allow_abbrev is False
    assert subparsers.choices[command].allow_abbrev is False  # type: ignore[index]


def test_harden_help_says_the_curve_is_written_on_a_server_too(temper: CliRunner) -> None:
    help_text = " ".join(temper("harden", "--help").out.split())

    assert (
        "the robustness curve (STEM.robustness_curve.png), with --local and with --server alike"
        in help_text
    )
