"""The verdict in words: improvement, no improvement, worse and a clean drop are told apart by
the 95% intervals, the report carries the verdict, and the model card states it."""

from __future__ import annotations

from typing import Any

import jsonschema

from workers.engine.evaluation.masking import MaskingCheck
from workers.engine.evaluation.stats import Accuracy
from workers.engine.evaluation.suite import AttackScore, CurvePoint, ModelScores
from workers.engine.report import (
    ExportCheck,
    RobustnessReport,
    TrainingSummary,
    json_schema,
    model_card,
)
from workers.engine.verdict import verdict

TOTAL = 1000


def scores(clean: int, robust: int) -> dict[str, Any]:
    """Report scores with ``clean`` and ``robust`` correct out of ``TOTAL``."""
    return {
        "clean_accuracy": Accuracy(clean, TOTAL).to_dict(),
        "robust_accuracy": Accuracy(robust, TOTAL).to_dict(),
    }


def test_a_hardened_interval_wholly_above_the_original_is_an_improvement() -> None:
    result = verdict(scores(950, 460), scores(945, 565))

    assert result["robustness"] == "improved"
    assert result["improved"] is True
    assert result["clean"] == "kept"
    assert result["summary"] == (
        "Hardening improved worst-case robustness beyond the confidence intervals."
    )


def test_a_higher_score_within_the_intervals_is_not_an_improvement() -> None:
    result = verdict(scores(950, 460), scores(950, 480))

    assert result["robustness"] == "unchanged"
    assert result["improved"] is False
    assert result["summary"] == (
        "Hardening did not improve worst-case robustness beyond the confidence intervals."
    )


def test_a_fall_from_46_to_40_percent_within_the_intervals_says_it_did_not_improve() -> None:
    result = verdict(scores(950, 460), scores(950, 400))

    assert result["robustness"] == "unchanged"
    assert result["details"][0] == (
        "Hardening did not improve worst-case robustness beyond the confidence intervals:"
        " 40.0% [37.0, 43.1] after, 46.0% [42.9, 49.1] before."
    )


def test_a_hardened_interval_wholly_below_the_original_is_worse() -> None:
    result = verdict(scores(950, 460), scores(950, 300))

    assert result["robustness"] == "worse"
    assert result["improved"] is False
    assert result["summary"].startswith("Hardening did not improve worst-case robustness: it made")
    assert result["details"][0].startswith("Hardening lowered worst-case robustness beyond")


def test_a_clean_accuracy_below_the_original_interval_is_a_drop() -> None:
    result = verdict(scores(945, 460), scores(788, 600))

    assert result["clean"] == "dropped"
    assert result["improved"] is True
    assert result["summary"] == (
        "Hardening improved worst-case robustness beyond the confidence intervals, but clean"
        " accuracy fell by more than the intervals allow."
    )
    assert result["details"][1] == (
        "Clean accuracy fell from 94.5% [92.9, 95.8] to 78.8% [76.2, 81.2], more than the"
        " confidence intervals allow."
    )


def test_a_clean_fall_within_the_intervals_is_kept() -> None:
    assert verdict(scores(950, 460), scores(940, 600))["clean"] == "kept"


def test_intervals_that_only_touch_are_no_improvement() -> None:
    original, hardened = scores(950, 460), scores(950, 600)
    hardened["robust_accuracy"]["low"] = original["robust_accuracy"]["high"]

    assert verdict(original, hardened)["robustness"] == "unchanged"


def _model_scores(clean: int, robust: int) -> ModelScores:
    return ModelScores(
        clean=Accuracy(clean, TOTAL),
        robust=Accuracy(robust, TOTAL),
        attacks=[AttackScore("pgd-ce", "PGD on cross-entropy", True, Accuracy(robust, TOTAL))],
        curve=[
            CurvePoint(0.0, Accuracy(clean, TOTAL)),
            CurvePoint(0.1, Accuracy(robust, TOTAL)),
        ],
        masking=[MaskingCheck("zero-gradients", False, "0.0% zero", "Why it matters.")],
    )


def distilled_report() -> dict[str, Any]:
    """A report as the engine builds it: distillation that lowered robust accuracy 46% -> 40%
    and clean accuracy 94.5% -> 78.8%."""
    report = RobustnessReport(
        request={
            "threat": {"norm": "linf", "eps": 0.1, "lower": [0.0], "upper": [1.0]},
            "evaluation": {"suite": "fast", "samples": TOTAL},
            "seed": 0,
        },
        inputs={
            "model_sha256": "a" * 64,
            "model_format": "onnx",
            "train_data_sha256": "b" * 64,
            "eval_data_sha256": None,
            "eval_source": "holdout_split",
        },
        model_notes=[],
        original=_model_scores(945, 460),
        hardened=_model_scores(788, 400),
        training=TrainingSummary("distillation", 1, 1, "last epoch", history=[]),
        export=ExportCheck(1e-6, 1e-4, 10.0, 1e-3, 16, 17, True),
        environment={"torch": "2.13.0"},
    )
    return report.to_dict()


def test_the_report_carries_the_verdict_and_follows_its_schema() -> None:
    report = distilled_report()

    jsonschema.validate(report, json_schema())
    assert report["verdict"]["robustness"] == "unchanged"
    assert report["verdict"]["clean"] == "dropped"


def test_the_model_card_states_the_verdict_in_words() -> None:
    card = model_card(distilled_report())

    assert (
        "**Hardening did not improve worst-case robustness beyond the confidence intervals, and"
        " clean accuracy fell by more than the intervals allow.**"
    ) in card
    assert (
        "- Hardening did not improve worst-case robustness beyond the confidence intervals:"
        " 40.0% [37.0, 43.1] after, 46.0% [42.9, 49.1] before."
    ) in card
    assert "- Clean accuracy fell from 94.5% [92.9, 95.8] to 78.8% [76.2, 81.2]" in card


def test_the_model_card_of_a_report_without_a_verdict_has_no_verdict_section() -> None:
    report = distilled_report()
    del report["verdict"]

    assert "## Verdict" not in model_card(report)


def test_the_model_card_names_its_headline_the_worst_case_over_the_cascade() -> None:
    card = model_card(distilled_report())

    assert "| | clean accuracy | robust accuracy (per-sample worst case over the cascade) |" in card
    assert "over all attacks" not in card
