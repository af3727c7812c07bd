"""A finished job's headline: the report's numbers, checked, stored and sent on unchanged."""

from __future__ import annotations

from typing import Any

from service.api.convert import _result_to_pb
from service.core.domain import ResultSummary


def report() -> dict[str, Any]:
    def scores(clean: float, robust: float) -> dict[str, Any]:
        return {
            "clean_accuracy": {"value": clean, "low": clean - 0.02, "high": clean + 0.01},
            "robust_accuracy": {"value": robust, "low": robust - 0.03, "high": robust + 0.02},
            "masking": [],
        }

    return {"original": scores(0.98, 0.01), "hardened": scores(0.97, 0.81), "verdict": "..."}


def test_the_api_message_holds_the_reports_numbers() -> None:
    summary = ResultSummary.from_report(report())
    assert summary is not None

    message = _result_to_pb(summary)

    assert message.hardened.robust_accuracy.value == 0.81
    assert message.hardened.robust_accuracy.low == 0.81 - 0.03
    assert message.original.clean_accuracy.high == 0.98 + 0.01


def test_the_stored_form_is_the_headline_and_reads_back_the_same() -> None:
    summary = ResultSummary.from_report(report())
    assert summary is not None

    stored = summary.to_json()

    assert set(stored) == {"original", "hardened"}
    assert set(stored["hardened"]) == {"clean_accuracy", "robust_accuracy"}
    assert ResultSummary.from_json(stored) == summary


def test_a_report_without_a_headline_gives_none() -> None:
    assert ResultSummary.from_report({"original": {"clean_accuracy": {"value": 1.0}}}) is None
