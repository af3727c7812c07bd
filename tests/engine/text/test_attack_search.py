"""The character and synonym attacks against a keyword-bag classifier written in numpy.

The victim's positive-class logit is a bias plus the sum of its words' weights, so which edits
flip it, and how many, can be worked out by hand.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import pytest

from workers.engine.text.attacks.budget import WordBudget
from workers.engine.text.attacks.char import (
    KEYBOARD_NEIGHBOURS,
    CharAttack,
    char_candidates,
    deletions,
    insertions,
    key_substitutions,
    swaps,
)
from workers.engine.text.attacks.greedy import importance_order
from workers.engine.text.attacks.result import AttackResult
from workers.engine.text.attacks.segment import segment
from workers.engine.text.attacks.word import WordAttack, match_case

POSITIVE = 1


class KeywordVictim:
    """p(positive) = sigmoid(bias + sum of word weights); counts the texts it scores."""

    def __init__(self, weights: Mapping[str, float], bias: float = -1.0) -> None:
        self.weights = weights
        self.bias = bias
        self.scored = 0

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        self.scored += len(texts)
        logits = np.array([self.logit(text) for text in texts])
        positive = 1.0 / (1.0 + np.exp(-logits))
        return np.stack([1.0 - positive, positive], axis=1)

    def logit(self, text: str) -> float:
        words = re.findall(r"[\w'-]+", text.lower())
        return self.bias + sum(self.weights.get(word, 0.0) for word in words)


def _table(table: Mapping[str, tuple[str, ...]]) -> Callable[[str], Sequence[str]]:
    return lambda word: table.get(word, ())


def _char(victim: KeywordVictim, text: str, share: float = 0.1, seed: int = 0) -> AttackResult:
    probs = victim([text])[0]
    victim.scored = 0
    attack = CharAttack(budget=WordBudget(share))
    return attack(text, POSITIVE, probs, victim, np.random.default_rng(seed))


def _word(
    victim: KeywordVictim,
    text: str,
    table: Mapping[str, tuple[str, ...]],
    stopwords: frozenset[str] = frozenset(),
    share: float = 0.2,
) -> AttackResult:
    probs = victim([text])[0]
    victim.scored = 0
    attack = WordAttack(_table(table), stopwords, budget=WordBudget(share))
    return attack(text, POSITIVE, probs, victim, np.random.default_rng(0))


# --- character edits -------------------------------------------------------------------------


def test_each_edit_kind_keeps_the_first_and_last_character() -> None:
    assert swaps("abcde") == ["acbde", "abdce"]
    assert deletions("abcd") == ["acd", "abd"]
    assert key_substitutions("abcd") == [f"a{k}cd" for k in "vngh"] + [f"ab{k}d" for k in "xvdf"]
    inserted = insertions("abcd", np.random.default_rng(0))
    assert [len(word) for word in inserted] == [5, 5, 5]
    assert all(word[0] == "a" and word[-1] == "d" for word in inserted)


def test_swaps_of_equal_letters_are_not_candidates() -> None:
    assert swaps("boot") == []


def test_keyboard_neighbours_are_symmetric() -> None:
    for key, near in KEYBOARD_NEIGHBOURS.items():
        assert key not in near
        assert all(key in KEYBOARD_NEIGHBOURS[other] for other in near)


def test_substitutions_and_insertions_keep_an_all_caps_word_in_capitals() -> None:
    candidates = char_candidates("GREAT", np.random.default_rng(0))
    assert candidates
    assert all(word.isupper() for word in candidates)


@pytest.mark.parametrize("word", ["bad", "ok", "2024", "4ever", "x1x1"])
def test_short_words_and_numbers_have_no_character_candidates(word: str) -> None:
    assert char_candidates(word, np.random.default_rng(0)) == []


def test_a_character_edit_of_the_key_word_flips_the_prediction() -> None:
    victim = KeywordVictim({"wonderful": 3.0})
    result = _char(victim, "The plot was wonderful.")
    assert result.success
    assert result.words_changed == 1
    assert result.queries == victim.scored
    before, after = segment(result.original_text), segment(result.adversarial_text)
    assert after.separators == before.separators
    assert after.words[:3] == before.words[:3]
    edited = after.words[3]
    assert edited != "wonderful"
    assert (edited[0], edited[-1]) == ("w", "l")
    assert abs(len(edited) - len("wonderful")) <= 1


def test_character_attack_stops_at_its_word_budget() -> None:
    keywords = "great lovely superb brilliant"
    text = keywords + " " + " ".join(["filler"] * 16)
    weights = dict.fromkeys(keywords.split(), 1.0)
    victim = KeywordVictim(weights, bias=-0.5)
    assert _char(victim, text, share=0.1).words_changed == 2
    assert not _char(victim, text, share=0.1).success
    wide = _char(victim, text, share=0.2)
    assert wide.success
    assert wide.words_changed == 4


def test_a_key_word_too_short_to_edit_leaves_the_sample_robust_at_no_cost() -> None:
    victim = KeywordVictim({"fun": 3.0})
    result = _char(victim, "it was fun")
    assert not result.success
    assert result.adversarial_text == "it was fun"
    assert result.queries == 0
    assert victim.scored == 0


@pytest.mark.parametrize("text", ["", "  ...  ", "!!! ?"])
def test_a_text_without_words_is_left_alone_at_no_cost(text: str) -> None:
    victim = KeywordVictim({}, bias=1.0)
    for result in (_char(victim, text), _word(victim, text, {})):
        assert not result.success
        assert result.words_total == 0
        assert result.queries == victim.scored == 0


def test_character_attack_is_deterministic_under_a_seed() -> None:
    weights = {"wonderful": 1.5, "charming": 1.5}
    text = "A wonderful and charming film, really."
    first = _char(KeywordVictim(weights), text, share=1.0, seed=3)
    second = _char(KeywordVictim(weights), text, share=1.0, seed=3)
    assert first == second


def test_insertions_depend_on_the_seed() -> None:
    assert insertions("wonderful", np.random.default_rng(1)) != insertions(
        "wonderful", np.random.default_rng(2)
    )


# --- synonym substitution -----------------------------------------------------------------------


def test_synonym_attack_picks_the_candidate_that_lowers_the_true_class_most() -> None:
    victim = KeywordVictim({"good": 2.0, "bad": -3.0})
    result = _word(victim, "good film", {"good": ("fine", "bad"), "film": ("movie",)})
    assert result.success
    assert result.adversarial_text == "bad film"


def test_queries_are_counted_exactly() -> None:
    victim = KeywordVictim({"good": 2.0, "bad": -3.0})
    result = _word(victim, "good film", {"good": ("fine", "bad"), "film": ("movie",)})
    leave_one_out, candidates_of_good, recheck = 2, 2, 1
    assert result.queries == leave_one_out + candidates_of_good + recheck
    assert victim.scored == result.queries


def test_candidates_that_change_nothing_are_not_scored() -> None:
    victim = KeywordVictim({"good": 2.0, "bad": -3.0})
    result = _word(victim, "Good film", {"good": ("good", "bad")})
    assert result.adversarial_text == "Bad film"
    leave_one_out, candidates, recheck = 1, 1, 1
    assert result.queries == leave_one_out + candidates + recheck


@pytest.mark.parametrize(
    ("original", "synonym", "written"),
    [("good", "fine", "fine"), ("Good", "fine", "Fine"), ("GOOD", "fine", "FINE")],
)
def test_synonyms_take_the_capitalisation_of_the_original_word(
    original: str, synonym: str, written: str
) -> None:
    assert match_case(synonym, original) == written


def test_stopwords_are_never_replaced_or_scored() -> None:
    victim = KeywordVictim({"not": 3.0, "hardly": -3.0})
    table = {"not": ("hardly",)}
    guarded = _word(victim, "not boring", table, stopwords=frozenset({"not"}))
    assert not guarded.success
    assert guarded.queries == 0
    assert _word(victim, "not boring", table).success


def test_words_are_attacked_in_order_of_importance() -> None:
    victim = KeywordVictim({"nice": 1.0, "superb": 3.0}, bias=-2.0)
    table = {"nice": ("okay",), "superb": ("okay",)}
    result = _word(victim, "nice and superb", table, share=0.1)
    assert result.success
    assert result.adversarial_text == "nice and okay"


def test_equal_importance_keeps_text_order() -> None:
    def indifferent(texts: Sequence[str]) -> np.ndarray:
        return np.tile([0.2, 0.8], (len(texts), 1))

    words = segment("one two three four")
    order = importance_order(
        words, {3: ["x"], 0: ["x"], 2: ["x"]}, 1, np.array([0.2, 0.8]), indifferent
    )
    assert order == [0, 2, 3]


def test_synonym_attack_stops_at_its_word_budget() -> None:
    keywords = ["great", "lovely", "superb"]
    text = " ".join(keywords + ["filler"] * 7)
    victim = KeywordVictim(dict.fromkeys(keywords, 1.0), bias=-0.5)
    table = {word: ("fine",) for word in keywords}
    result = _word(victim, text, table, share=0.2)
    assert result.words_changed == 2
    assert not result.success
    assert result.share_changed == pytest.approx(0.2)
    assert _word(victim, text, table, share=0.3).success


def test_a_misclassified_sample_spends_no_queries() -> None:
    def refuses(texts: Sequence[str]) -> np.ndarray:
        raise AssertionError("a misclassified sample must not be attacked")

    attack = WordAttack(_table({"good": ("bad",)}), frozenset())
    result = attack("good film", POSITIVE, np.array([0.7, 0.3]), refuses, np.random.default_rng(0))
    assert not result.success
    assert result.queries == 0
    assert result.adversarial_text == "good film"
    assert result.final_prediction == 0
