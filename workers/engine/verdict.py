"""The verdict in words: did hardening make the model more robust, and did it cost clean
accuracy, beyond what the 95% intervals leave to chance?

Computed once, here, from the serialised scores of the report (``value``, ``low``, ``high`` of
each accuracy), so that it agrees with the numbers every reader is shown. A difference counts
only when the two intervals do not overlap; docs/evaluation.md says why.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Any


class Robustness(StrEnum):
    IMPROVED = "improved"
    UNCHANGED = "unchanged"
    """No difference beyond the intervals, up or down."""
    WORSE = "worse"


class Clean(StrEnum):
    KEPT = "kept"
    DROPPED = "dropped"


def verdict(original: Mapping[str, Any], hardened: Mapping[str, Any]) -> dict[str, Any]:
    """The report's ``verdict`` object, from the report's ``original`` and ``hardened`` scores
    (each with ``clean_accuracy`` and ``robust_accuracy``)."""
    robust_before, robust_after = original["robust_accuracy"], hardened["robust_accuracy"]
    clean_before, clean_after = original["clean_accuracy"], hardened["clean_accuracy"]
    robustness = _ROBUSTNESS[_shift(robust_before, robust_after)]
    clean = Clean.DROPPED if _shift(clean_before, clean_after) < 0 else Clean.KEPT
    return {
        "robustness": robustness.value,
        "clean": clean.value,
        "improved": robustness is Robustness.IMPROVED,
        "summary": _summary(robustness, clean),
        "details": [
            _robustness_detail(robustness, robust_before, robust_after),
            _clean_detail(clean, clean_before, clean_after),
        ],
    }


_ROBUSTNESS = {1: Robustness.IMPROVED, 0: Robustness.UNCHANGED, -1: Robustness.WORSE}


def _shift(before: Mapping[str, Any], after: Mapping[str, Any]) -> int:
    """1 when ``after`` lies above ``before`` with no overlap of their intervals, -1 when below,
    0 when the intervals overlap or touch."""
    if after["low"] > before["high"]:
        return 1
    if after["high"] < before["low"]:
        return -1
    return 0


def _summary(robustness: Robustness, clean: Clean) -> str:
    text = {
        Robustness.IMPROVED: "Hardening improved worst-case robustness beyond the confidence"
        " intervals",
        Robustness.UNCHANGED: "Hardening did not improve worst-case robustness beyond the"
        " confidence intervals",
        Robustness.WORSE: "Hardening did not improve worst-case robustness: it made it worse,"
        " beyond the confidence intervals",
    }[robustness]
    if clean is Clean.DROPPED:
        joint = ", but" if robustness is Robustness.IMPROVED else ", and"
        text += f"{joint} clean accuracy fell by more than the intervals allow"
    return text + "."


def _robustness_detail(
    robustness: Robustness, before: Mapping[str, Any], after: Mapping[str, Any]
) -> str:
    numbers = f"{percent(after)} after, {percent(before)} before"
    return {
        Robustness.IMPROVED: f"Worst-case robust accuracy rose beyond the confidence intervals:"
        f" {numbers}.",
        Robustness.UNCHANGED: "Hardening did not improve worst-case robustness beyond the"
        f" confidence intervals: {numbers}.",
        Robustness.WORSE: f"Hardening lowered worst-case robustness beyond the confidence"
        f" intervals: {numbers}.",
    }[robustness]


def _clean_detail(clean: Clean, before: Mapping[str, Any], after: Mapping[str, Any]) -> str:
    if clean is Clean.DROPPED:
        return (
            f"Clean accuracy fell from {percent(before)} to {percent(after)}, more than the"
            " confidence intervals allow."
        )
    return (
        f"Clean accuracy did not fall beyond the confidence intervals: {percent(after)} after,"
        f" {percent(before)} before."
    )


def percent(accuracy: Mapping[str, Any]) -> str:
    """``40.0% [36.9, 43.1]``."""
    return (
        f"{accuracy['value'] * 100:.1f}% [{accuracy['low'] * 100:.1f},"
        f" {accuracy['high'] * 100:.1f}]"
    )
