"""Robustness gates on report dicts: each gate passing and failing, the one-line verdict, and
the lower-bound mode."""

from __future__ import annotations

from typing import Any

import pytest
from client_helpers import CliRunner
from fake_service import MASKING_CHECKS, make_report

from client.gates import Gate, GateConfig, GateOn, clean_drop, evaluate


def brief_report() -> dict[str, Any]:
    """Robust accuracy 0.712 [0.683, 0.740]; clean accuracy 0.950 -> 0.919 (drop 0.031)."""
    report = make_report(total=1000, original=(950, 300), hardened=(919, 712))
    report["hardened"]["robust_accuracy"].update(low=0.683, high=0.740)
    return report


def test_a_report_that_meets_every_gate_passes() -> None:
    report = make_report(total=200, original=(194, 40), hardened=(192, 170))
    config = GateConfig(
        min_robust_accuracy=0.80,
        max_clean_drop=0.02,
        fail_on_masking=True,
        require_improvement=True,
    )

    outcome = evaluate(report, config)

    assert outcome.passed
    assert [r.gate for r in outcome.results] == list(Gate)
    assert outcome.line() == (
        "GATES PASSED: robust accuracy 0.850 [0.794, 0.893] >= 0.80 (min-robust-accuracy);"
        " clean drop 0.010 <= 0.02 (max-clean-drop);"
        " no gradient masking suspected on the hardened model (fail-on-masking);"
        " hardening improved worst-case robustness: 0.850 [0.794, 0.893] after,"
        " 0.200 [0.150, 0.261] before (require-improvement)"
    )


def test_thresholds_met_exactly_pass_despite_floating_point() -> None:
    # 160/200 is exactly 0.80; 0.97 - 0.95 is 0.020000000000000018 in floating point.
    report = make_report(total=200, original=(194, 40), hardened=(190, 160))
    config = GateConfig(min_robust_accuracy=0.80, max_clean_drop=0.02)

    outcome = evaluate(report, config)

    assert outcome.passed, outcome.line()
    assert clean_drop(report) == pytest.approx(0.02)


def test_a_robust_accuracy_below_the_minimum_fails_with_value_interval_and_threshold() -> None:
    outcome = evaluate(brief_report(), GateConfig(min_robust_accuracy=0.80))

    assert not outcome.passed
    (result,) = outcome.failures
    assert result.gate is Gate.MIN_ROBUST_ACCURACY
    assert outcome.line() == (
        "GATE FAILED: robust accuracy 0.712 [0.683, 0.740] < 0.80 (min-robust-accuracy)"
    )


def test_a_clean_drop_above_the_maximum_fails() -> None:
    outcome = evaluate(brief_report(), GateConfig(max_clean_drop=0.02))

    assert outcome.line() == "GATE FAILED: clean drop 0.031 > 0.02 (max-clean-drop)"


def test_the_masking_gate_fails_on_the_hardened_model_naming_the_checks_that_fired() -> None:
    fired = [MASKING_CHECKS[0], MASKING_CHECKS[2]]
    report = make_report(hardened_fired=fired)

    outcome = evaluate(report, GateConfig(fail_on_masking=True))

    (result,) = outcome.failures
    assert result.gate is Gate.FAIL_ON_MASKING
    assert outcome.line() == (
        "GATE FAILED: gradient masking suspected on the hardened model:"
        f" {fired[0]}, {fired[1]} (fail-on-masking)"
    )
    assert f"Why {fired[0]} points at masked gradients." in result.details


def test_the_masking_gate_ignores_masking_on_the_original_model() -> None:
    report = make_report(original_fired=[MASKING_CHECKS[1]])

    assert evaluate(report, GateConfig(fail_on_masking=True)).passed


def test_every_failure_is_named_in_one_line_and_the_passed_gates_are_listed() -> None:
    report = brief_report()
    config = GateConfig(min_robust_accuracy=0.80, max_clean_drop=0.02, fail_on_masking=True)

    line = evaluate(report, config).line()

    assert "\n" not in line
    assert line == (
        "GATE FAILED: robust accuracy 0.712 [0.683, 0.740] < 0.80 (min-robust-accuracy);"
        " clean drop 0.031 > 0.02 (max-clean-drop) [passed: fail-on-masking]"
    )


def test_lower_bound_mode_fails_a_point_estimate_above_the_threshold() -> None:
    report = brief_report()  # 0.712 [0.683, 0.740]

    by_value = evaluate(report, GateConfig(min_robust_accuracy=0.70))
    by_bound = evaluate(report, GateConfig(min_robust_accuracy=0.70, gate_on=GateOn.LOWER_BOUND))

    assert by_value.passed
    assert not by_bound.passed
    assert by_bound.line() == (
        "GATE FAILED: robust accuracy 0.712 [0.683, 0.740]: lower bound 0.683 < 0.70"
        " (min-robust-accuracy)"
    )
    assert by_bound.results[0].threshold == ">= 0.70 (lower-bound)"


def test_lower_bound_mode_passes_when_the_whole_interval_clears_the_threshold() -> None:
    config = GateConfig(min_robust_accuracy=0.68, gate_on="lower-bound")

    outcome = evaluate(brief_report(), config)

    assert outcome.passed
    assert "lower bound 0.683 >= 0.68" in outcome.line()


def test_the_clean_drop_gate_compares_the_point_estimate_in_either_mode() -> None:
    config = GateConfig(max_clean_drop=0.031, gate_on=GateOn.LOWER_BOUND)

    assert evaluate(brief_report(), config).passed


def test_require_improvement_fails_when_robustness_did_not_improve_beyond_the_intervals() -> None:
    report = make_report(total=1000, original=(950, 460), hardened=(950, 400))

    outcome = evaluate(report, GateConfig(require_improvement=True))

    (result,) = outcome.failures
    assert result.gate is Gate.REQUIRE_IMPROVEMENT
    assert outcome.line() == (
        "GATE FAILED: hardening did not improve worst-case robustness (unchanged):"
        " 0.400 [0.370, 0.431] after, 0.460 [0.429, 0.491] before (require-improvement)"
    )
    assert result.details.startswith(report["verdict"]["summary"])


def test_require_improvement_names_a_robustness_that_got_worse() -> None:
    report = make_report(total=1000, original=(950, 460), hardened=(950, 300))

    outcome = evaluate(report, GateConfig(require_improvement=True))

    assert "did not improve worst-case robustness (worse)" in outcome.line()


def test_require_improvement_reads_the_verdict_not_the_numbers() -> None:
    report = make_report(total=1000, original=(950, 460), hardened=(950, 600))
    report["verdict"]["improved"] = False

    assert not evaluate(report, GateConfig(require_improvement=True)).passed


def test_require_improvement_fails_on_a_report_without_a_verdict() -> None:
    report = make_report(with_verdict=False)

    outcome = evaluate(report, GateConfig(require_improvement=True))

    assert outcome.line() == (
        "GATE FAILED: the report has no verdict (a server older than verdicts): improvement"
        " unknown (require-improvement)"
    )


def test_the_other_gates_ignore_a_missing_verdict() -> None:
    report = make_report(with_verdict=False)
    config = GateConfig(min_robust_accuracy=0.80, max_clean_drop=0.02, fail_on_masking=True)

    assert evaluate(report, config).passed


def test_no_gate_set_gives_no_results() -> None:
    outcome = evaluate(make_report(), GateConfig())

    assert not GateConfig().any
    assert outcome.passed
    assert outcome.results == ()


def test_thresholds_are_fractions() -> None:
    with pytest.raises(ValueError, match="fraction"):
        GateConfig(min_robust_accuracy=80)


def test_the_cli_refuses_a_percentage_and_says_how_to_write_it(
    temper: CliRunner, tmp_path: Any
) -> None:
    result = temper(
        "harden", "m.onnx", "--data", "d.npz", "--eps", "0.1", "-o", tmp_path / "h.onnx",
        "--local", "--min-robust-accuracy", "80",
    )  # fmt: skip

    assert result.code == 2
    assert "write 0.8" in result.err


def test_the_help_documents_exit_code_5(temper: CliRunner) -> None:
    result = temper("harden", "--help")

    assert result.code == 0
    assert "5  a robustness gate failed" in result.out
    assert "--gate-on {value,lower-bound}" in result.out
