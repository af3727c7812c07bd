"""Running several text attacks: the re-check, the summaries and the per-sample worst case."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence

import numpy as np
import pytest

from workers.engine.evaluation.stats import wilson_interval
from workers.engine.text.attacks import (
    AttackResult,
    CharAttack,
    WordAttack,
    WordBudget,
    run_attacks,
)
from workers.engine.text.attacks.summary import summarise_worst_case

WEIGHTS = {"wonderful": 3.0, "fun": 3.0, "dull": -3.0, "great": 1.0, "awful": -3.0}
SYNONYMS = {"fun": ("dull",), "great": ("fine",)}


def keyword_probs(
    text: str, weights: Mapping[str, float] = WEIGHTS, bias: float = -1.0
) -> list[float]:
    words = re.findall(r"[\w'-]+", text.lower())
    positive = 1.0 / (1.0 + np.exp(-(bias + sum(weights.get(w, 0.0) for w in words))))
    return [1.0 - positive, positive]


def keyword_victim(texts: Sequence[str]) -> np.ndarray:
    return np.array([keyword_probs(text) for text in texts])


class Forgetful:
    """Honest the first time it scores a text, and correct (positive) every time after."""

    def __init__(self) -> None:
        self.seen: set[str] = set()

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        rows = [[0.0, 1.0] if text in self.seen else keyword_probs(text) for text in texts]
        self.seen.update(texts)
        return np.array(rows)


def _attacks(char_share: float = 0.1, word_share: float = 0.2) -> list[CharAttack | WordAttack]:
    return [
        CharAttack(budget=WordBudget(char_share)),
        WordAttack(lambda w: SYNONYMS.get(w, ()), frozenset({"it", "was"}), WordBudget(word_share)),
    ]


def test_a_sample_is_robust_only_if_no_attack_flips_it() -> None:
    only_char_breaks = "the ending was wonderful"
    only_word_breaks = "it was fun"
    evaluation = run_attacks(
        [only_char_breaks, only_word_breaks], [1, 1], keyword_victim, _attacks()
    )
    char, word = evaluation.attacks
    assert [r.success for r in evaluation.results["char"]] == [True, False]
    assert [r.success for r in evaluation.results["word"]] == [False, True]
    assert char.robust.correct == word.robust.correct == 1
    assert evaluation.worst_case.robust.correct == 0
    assert evaluation.worst_case.successes == 2


def test_an_example_the_victim_no_longer_misclassifies_is_not_counted() -> None:
    evaluation = run_attacks(["the ending was wonderful"], [1], Forgetful(), _attacks()[:1])
    (result,) = evaluation.results["char"]
    assert result.adversarial_text != result.original_text
    assert result.final_prediction == 1
    assert not result.success
    assert evaluation.worst_case.robust.correct == 1


def test_misclassified_samples_are_not_robust_and_spend_no_queries() -> None:
    evaluation = run_attacks(["awful", "it was fun"], [1, 1], keyword_victim, _attacks())
    for summary in (*evaluation.attacks, evaluation.worst_case):
        assert summary.attacked == 1
        assert summary.robust.total == 2
    assert evaluation.results["char"][0].queries == 0
    assert evaluation.results["word"][0].queries == 0
    assert evaluation.worst_case.robust.correct == 0


def test_summary_figures_follow_from_the_results() -> None:
    texts = ["the ending was wonderful", "it was fun", "awful", "a great, great cast", "nothing"]
    labels = [1, 1, 1, 1, 0]
    evaluation = run_attacks(texts, labels, keyword_victim, _attacks())
    assert evaluation.clean.correct == 4
    for summary in evaluation.attacks:
        results = evaluation.results[summary.name]
        attacked = [r for r in results if r.originally_correct]
        successful = [r for r in attacked if r.success]
        assert summary.attacked == len(attacked)
        assert summary.successes == len(successful)
        assert summary.success_rate == len(successful) / len(attacked)
        assert summary.robust.correct == len(attacked) - len(successful)
        assert summary.mean_queries == sum(r.queries for r in results) / len(attacked)
        if successful:
            mean_share = sum(r.share_changed for r in successful) / len(successful)
            assert summary.mean_share_changed == pytest.approx(mean_share)
    attack_queries = sum(s.queries for s in evaluation.attacks)
    assert evaluation.queries == len(texts) + attack_queries
    assert evaluation.worst_case.queries == attack_queries


def _result(attack: str, flipped: bool, words_changed: int, queries: int) -> AttackResult:
    return AttackResult(
        attack=attack,
        original_text="t",
        adversarial_text="t'",
        label=1,
        original_prediction=1,
        final_prediction=0 if flipped else 1,
        words_changed=words_changed,
        words_total=10,
        queries=queries,
    )


def test_worst_case_takes_the_fewest_words_any_successful_attack_changed() -> None:
    per_attack = [
        [_result("char", True, 3, 40), _result("char", False, 1, 30)],
        [_result("word", True, 2, 50), _result("word", True, 2, 20)],
    ]
    worst = summarise_worst_case(per_attack)
    assert worst.successes == 2
    assert worst.mean_share_changed == pytest.approx((0.2 + 0.2) / 2)
    assert worst.mean_queries == pytest.approx((40 + 50 + 30 + 20) / 2)


def test_report_section_is_json_with_wilson_intervals_and_budgets() -> None:
    evaluation = run_attacks(
        ["the ending was wonderful", "it was fun"], [1, 1], keyword_victim, _attacks()
    )
    section = json.loads(json.dumps(evaluation.to_dict()))
    char = section["attacks"][0]
    assert char["budget"]["max_share_of_words"] == 0.1
    low, high = wilson_interval(1, 2)
    assert char["robust_accuracy"]["low"] == pytest.approx(low, abs=1e-6)
    assert char["robust_accuracy"]["high"] == pytest.approx(high, abs=1e-6)
    assert section["worst_case"]["budget"] == {"over_attacks": ["char", "word"]}
    assert section["worst_case"]["robust_accuracy"]["correct"] == 0


def test_runs_are_deterministic_under_a_seed() -> None:
    texts = ["the ending was wonderful", "a wonderful, wonderful cast"]
    first = run_attacks(texts, [1, 1], keyword_victim, _attacks(1.0), seed=5)
    second = run_attacks(texts, [1, 1], keyword_victim, _attacks(1.0), seed=5)
    assert first.results == second.results


def test_a_sample_is_attacked_alike_whatever_is_scored_with_it() -> None:
    text = "the ending was wonderful"
    alone = run_attacks([text], [1], keyword_victim, _attacks(), seed=5)
    among = run_attacks(["it was fun", text], [1, 1], keyword_victim, _attacks(), seed=5)
    assert alone.results["char"][0].adversarial_text != text
    assert among.results["char"][1] == alone.results["char"][0]


def test_victim_outputs_that_are_not_probabilities_are_refused() -> None:
    def logits(texts: Sequence[str]) -> np.ndarray:
        return np.array([[2.0, -1.0] for _ in texts])

    with pytest.raises(ValueError, match="probabilities"):
        run_attacks(["it was fun"], [1], logits, _attacks())


@pytest.mark.parametrize(
    ("texts", "labels", "message"),
    [(["a", "b"], [1], "labels"), (["a"], [2], "labels"), ([], [], "no texts")],
)
def test_bad_inputs_are_refused(texts: list[str], labels: list[int], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        run_attacks(texts, labels, keyword_victim, _attacks())


def test_attack_names_must_be_distinct() -> None:
    with pytest.raises(ValueError, match="distinct"):
        run_attacks(["it was fun"], [1], keyword_victim, [CharAttack(), CharAttack()])
