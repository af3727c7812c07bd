"""Confidence intervals and the gradient-masking checks, on hand-made attack results."""

from __future__ import annotations

import pytest

from workers.engine.evaluation.masking import diagnose
from workers.engine.evaluation.stats import Accuracy, wilson_interval


def test_wilson_interval_matches_the_textbook_value() -> None:
    low, high = wilson_interval(81, 100)
    assert low == pytest.approx(0.7222, abs=1e-4)
    assert high == pytest.approx(0.8749, abs=1e-4)


def test_wilson_interval_stays_inside_unit_interval_at_the_extremes() -> None:
    assert wilson_interval(0, 50)[0] == 0.0
    assert wilson_interval(50, 50)[1] == 1.0
    assert wilson_interval(0, 50)[1] > 0.0


def test_accuracy_serialises_value_interval_and_counts() -> None:
    assert Accuracy(3, 4).to_dict()["value"] == 0.75
    assert Accuracy(3, 4).to_dict()["total"] == 4


def _attacks(**robust: int) -> dict[str, Accuracy]:
    base = {
        "fgsm": 60,
        "pgd-ce": 50,
        "pgd-cw": 50,
        "apgd-ce": 48,
        "apgd-t": 47,
        "fab-t": 49,
        "square": 55,
    }
    base.update(robust)
    return {name: Accuracy(correct, 100) for name, correct in base.items()}


def _fired(attacks: dict[str, Accuracy], large: int = 0, zero: float = 0.0) -> set[str]:
    checks = diagnose(attacks, Accuracy(95, 100), Accuracy(large, 100), zero, 10)
    return {c.name for c in checks if c.fired}


def test_consistent_attack_strengths_fire_nothing() -> None:
    assert _fired(_attacks()) == set()


def test_iterative_attack_weaker_than_fgsm_fires() -> None:
    assert "iterative-weaker-than-single-step" in _fired(_attacks(**{"pgd-ce": 70}))


def test_black_box_stronger_than_white_box_fires() -> None:
    assert "black-box-stronger-than-white-box" in _fired(_attacks(square=30))


def test_cross_entropy_far_weaker_than_margin_fires() -> None:
    fired = _fired(_attacks(**{"pgd-ce": 80, "apgd-ce": 80, "fgsm": 85, "pgd-cw": 5, "apgd-t": 3}))
    assert "cross-entropy-much-weaker-than-margin" in fired


def test_no_collapse_at_large_epsilon_fires() -> None:
    assert "no-collapse-at-large-eps" in _fired(_attacks(), large=40)


def test_zero_gradients_fire() -> None:
    assert "zero-gradients" in _fired(_attacks(), zero=0.6)


def test_every_check_explains_itself_in_words() -> None:
    checks = diagnose(_attacks(), Accuracy(95, 100), Accuracy(0, 100), 0.0, 10)
    assert len(checks) == 5
    assert all(len(c.explanation) > 40 and c.detail for c in checks)
