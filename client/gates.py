"""Robustness gates: the thresholds a CI step holds a hardened model to.

Every gate reads the hardened model's numbers in the report
(``report["hardened"]``; the original's clean accuracy for the drop):

``min-robust-accuracy``
    the worst-case robust accuracy over the whole attack suite must be at least the threshold.
    By default its point estimate is compared (``--gate-on value``); ``--gate-on lower-bound``
    compares the lower end of its 95% Wilson interval instead. See docs/cli.md for why value is
    the default.
``max-clean-drop``
    original clean accuracy minus hardened clean accuracy must be at most the threshold. Both
    are measured on the same samples, so the drop is a paired difference; the two Wilson
    intervals do not give its interval, and the point estimate is always compared.
``fail-on-masking``
    fails when the report suspects gradient masking on the hardened model, naming the checks
    that fired: a robust accuracy that only masked gradients produce is not robustness.
``require-improvement``
    fails unless the report's verdict says hardening improved worst-case robust accuracy beyond
    the 95% intervals of the original and the hardened model. The verdict is the engine's (see
    docs/evaluation.md); a report without one, from a server older than verdicts, fails the gate
    rather than have the client judge for itself.

Comparisons allow for floating point (1e-9): 160 of 200 correct meets ``0.80``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

TOLERANCE = 1e-9
IMPROVEMENT_CONDITION = "robustness improved beyond the 95% intervals"


class GateOn(StrEnum):
    """What ``min-robust-accuracy`` compares with its threshold."""

    VALUE = "value"
    LOWER_BOUND = "lower-bound"


class Gate(StrEnum):
    """The gates, named like their command-line flags."""

    MIN_ROBUST_ACCURACY = "min-robust-accuracy"
    MAX_CLEAN_DROP = "max-clean-drop"
    FAIL_ON_MASKING = "fail-on-masking"
    REQUIRE_IMPROVEMENT = "require-improvement"


@dataclass(frozen=True)
class GateConfig:
    min_robust_accuracy: float | None = None
    max_clean_drop: float | None = None
    fail_on_masking: bool = False
    gate_on: GateOn = GateOn.VALUE
    require_improvement: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "gate_on", GateOn(self.gate_on))
        for name in ("min_robust_accuracy", "max_clean_drop"):
            value = getattr(self, name)
            if value is not None and not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be a fraction between 0 and 1, got {value}")

    @property
    def any(self) -> bool:
        """Whether any gate is set."""
        return (
            self.min_robust_accuracy is not None
            or self.max_clean_drop is not None
            or self.fail_on_masking
            or self.require_improvement
        )


@dataclass(frozen=True)
class GateResult:
    gate: Gate
    passed: bool
    message: str
    """One clause for the one-line verdict, e.g. ``robust accuracy 0.712 [0.683, 0.740] <
    0.80``."""
    threshold: str
    """The condition, for tables: ``>= 0.80 (value)``, ``<= 0.02``, ``no masking``."""
    measured: str
    """What was measured, for tables."""
    details: str = ""
    """Longer text for JUnit and the summary (masking explanations)."""

    @property
    def clause(self) -> str:
        return f"{self.message} ({self.gate.value})"


@dataclass(frozen=True)
class GateOutcome:
    config: GateConfig
    results: tuple[GateResult, ...]

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.results)

    @property
    def failures(self) -> tuple[GateResult, ...]:
        return tuple(r for r in self.results if not r.passed)

    def line(self) -> str:
        """The verdict in one line, for CI logs: ``GATE FAILED: ...; ...`` naming every gate that
        failed (and, in brackets, those that passed), or ``GATES PASSED: ...``."""
        if not self.results:
            return "GATES: none set"
        if self.passed:
            return "GATES PASSED: " + "; ".join(r.clause for r in self.results)
        line = "GATE FAILED: " + "; ".join(r.clause for r in self.failures)
        passed = [r.gate.value for r in self.results if r.passed]
        if passed:
            line += f" [passed: {', '.join(passed)}]"
        return line

    def to_json(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "line": self.line(),
            "gate_on": self.config.gate_on.value,
            "results": [
                {
                    "gate": r.gate.value,
                    "passed": r.passed,
                    "message": r.message,
                    "threshold": r.threshold,
                    "measured": r.measured,
                    "details": r.details,
                }
                for r in self.results
            ],
        }


def evaluate(report: Mapping[str, Any], config: GateConfig) -> GateOutcome:
    """Hold the report's hardened model to every gate ``config`` sets, in a fixed order."""
    results: list[GateResult] = []
    if config.min_robust_accuracy is not None:
        results.append(_robust(report, config.min_robust_accuracy, config.gate_on))
    if config.max_clean_drop is not None:
        results.append(_clean_drop(report, config.max_clean_drop))
    if config.fail_on_masking:
        results.append(_masking(report))
    if config.require_improvement:
        results.append(_improvement(report))
    return GateOutcome(config, tuple(results))


def _robust(report: Mapping[str, Any], minimum: float, gate_on: GateOn) -> GateResult:
    robust = report["hardened"]["robust_accuracy"]
    compared = robust["low"] if gate_on is GateOn.LOWER_BOUND else robust["value"]
    passed = compared >= minimum - TOLERANCE
    sign = ">=" if passed else "<"
    measured = _interval(robust)
    compared_name = "lower bound" if gate_on is GateOn.LOWER_BOUND else "point estimate"
    if gate_on is GateOn.LOWER_BOUND:
        message = f"robust accuracy {measured}: lower bound {compared:.3f} {sign} {fmt(minimum)}"
    else:
        message = f"robust accuracy {measured} {sign} {fmt(minimum)}"
    return GateResult(
        gate=Gate.MIN_ROBUST_ACCURACY,
        passed=passed,
        message=message,
        threshold=f">= {fmt(minimum)} ({gate_on.value})",
        measured=measured,
        details=(
            "worst-case robust accuracy of the hardened model over the whole attack suite,"
            f" {robust.get('correct', '?')} of {robust.get('total', '?')} samples, 95% Wilson"
            f" interval; the gate compares its {compared_name}"
        ),
    )


def clean_drop(report: Mapping[str, Any]) -> float:
    """Original minus hardened clean accuracy; from the counts when both scored the same
    number of samples, so that the difference is exact."""
    before, after = report["original"]["clean_accuracy"], report["hardened"]["clean_accuracy"]
    total = before.get("total")
    if total and total == after.get("total") and "correct" in before and "correct" in after:
        return float((before["correct"] - after["correct"]) / total)
    return float(before["value"] - after["value"])


def _clean_drop(report: Mapping[str, Any], maximum: float) -> GateResult:
    drop = clean_drop(report)
    passed = drop <= maximum + TOLERANCE
    before = report["original"]["clean_accuracy"]["value"]
    after = report["hardened"]["clean_accuracy"]["value"]
    return GateResult(
        gate=Gate.MAX_CLEAN_DROP,
        passed=passed,
        message=f"clean drop {drop:.3f} {'<=' if passed else '>'} {fmt(maximum)}",
        threshold=f"<= {fmt(maximum)}",
        measured=f"{drop:.3f} ({before:.3f} -> {after:.3f})",
        details=(
            f"clean accuracy {before:.3f} (original) - {after:.3f} (hardened) = {drop:.3f},"
            " on the same held-out samples"
        ),
    )


def fired_checks(scores: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return [c for c in scores.get("masking", ()) if c.get("fired")]


def _masking(report: Mapping[str, Any]) -> GateResult:
    hardened = report["hardened"]
    suspected = bool(hardened.get("gradient_masking_suspected"))
    fired = fired_checks(hardened)
    names = ", ".join(c["check"] for c in fired) or "no check named"
    if suspected:
        message = f"gradient masking suspected on the hardened model: {names}"
        measured = f"suspected: {names}"
    else:
        message = "no gradient masking suspected on the hardened model"
        measured = "no sign"
    return GateResult(
        gate=Gate.FAIL_ON_MASKING,
        passed=not suspected,
        message=message,
        threshold="no masking suspected",
        measured=measured,
        details="\n".join(
            f"{c['check']} ({c.get('detail', '')}): {c.get('explanation', '')}" for c in fired
        ),
    )


def _improvement(report: Mapping[str, Any]) -> GateResult:
    verdict = report.get("verdict")
    if not verdict:
        return GateResult(
            gate=Gate.REQUIRE_IMPROVEMENT,
            passed=False,
            message="the report has no verdict (a server older than verdicts): improvement unknown",
            threshold=IMPROVEMENT_CONDITION,
            measured="no verdict in the report",
        )
    before = _interval(report["original"]["robust_accuracy"])
    after = _interval(report["hardened"]["robust_accuracy"])
    improved = bool(verdict.get("improved"))
    if improved:
        message = f"hardening improved worst-case robustness: {after} after, {before} before"
    else:
        message = (
            f"hardening did not improve worst-case robustness ({verdict.get('robustness', '?')}):"
            f" {after} after, {before} before"
        )
    return GateResult(
        gate=Gate.REQUIRE_IMPROVEMENT,
        passed=improved,
        message=message,
        threshold=IMPROVEMENT_CONDITION,
        measured=f"{verdict.get('robustness', '?')}: {before} -> {after}",
        details="\n".join([verdict.get("summary", ""), *verdict.get("details", ())]).strip(),
    )


def _interval(accuracy: Mapping[str, Any]) -> str:
    return f"{accuracy['value']:.3f} [{accuracy['low']:.3f}, {accuracy['high']:.3f}]"


def fmt(threshold: float) -> str:
    """``0.80``, ``0.02``, ``0.825``: two decimals at least, more when given."""
    text = f"{threshold:.2f}"
    return text if float(text) == threshold else f"{threshold:g}"
