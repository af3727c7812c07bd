"""Word segmentation and word budgets of the text attacks."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from workers.engine.text.attacks.budget import WordBudget
from workers.engine.text.attacks.segment import segment

TEXTS = [
    "",
    "   ",
    "Hello, world!",
    "don't stop",
    "state-of-the-art results",
    "rock 'n' roll",
    "tabs\tand\nnew lines\r\n",
    "café au lait, naïve façade",
    "snake_case and CamelCase",
    "3.14 is about pi; 1,000 more",
    "emoji 🙂 in the middle🙂",
    "--dashes-- and 'quotes' and \"double\"",
    "trailing hyphen- and -leading and it's' odd",
    "日本語 テキスト",
]


@pytest.mark.parametrize("text", TEXTS)
def test_joining_the_segments_gives_back_the_text(text: str) -> None:
    assert segment(text).join() == text


@settings(max_examples=200, deadline=None)
@given(st.text())
def test_any_text_joins_back_and_keeps_its_separators_under_an_edit(text: str) -> None:
    original = segment(text)
    assert original.join() == text
    if original.words:
        edited = segment(original.join({0: "Zq"}))
        assert edited.separators == original.separators
        assert edited.words[1:] == original.words[1:]


@pytest.mark.parametrize("text", [t for t in TEXTS if segment(t).words])
def test_replacing_a_word_changes_that_word_and_nothing_else(text: str) -> None:
    original = segment(text)
    for index in range(len(original.words)):
        edited = segment(original.join({index: "Zq"}))
        assert edited.separators == original.separators
        expected = (*original.words[:index], "Zq", *original.words[index + 1 :])
        assert edited.words == expected


@pytest.mark.parametrize("text", [t for t in TEXTS if segment(t).words])
def test_deleting_a_word_leaves_the_other_words_as_they_were(text: str) -> None:
    original = segment(text)
    for index in range(len(original.words)):
        remaining = segment(original.without(index))
        assert remaining.words == original.words[:index] + original.words[index + 1 :]
        assert "".join(remaining.separators) == "".join(original.separators)


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("don't stop", ("don't", "stop")),
        ("state-of-the-art results", ("state-of-the-art", "results")),
        ("rock 'n' roll", ("rock", "n", "roll")),
        ("snake_case", ("snake", "case")),
        ("trailing hyphen- -leading", ("trailing", "hyphen", "leading")),
        ("it’s curly", ("it’s", "curly")),
        ("café naïve", ("café", "naïve")),
    ],
)
def test_apostrophes_and_hyphens_stay_inside_words_only(text: str, words: tuple[str, ...]) -> None:
    assert segment(text).words == words


@pytest.mark.parametrize(
    ("share", "at_least", "n_words", "allowed"),
    [
        (0.1, 1, 0, 0),
        (0.1, 1, 3, 1),
        (0.1, 1, 19, 1),
        (0.1, 1, 20, 2),
        (0.1, 1, 30, 3),
        (0.2, 1, 29, 5),
        (0.29, 1, 100, 29),
        (0.1, 0, 9, 0),
        (0.5, 3, 2, 2),
        (1.0, 1, 7, 7),
    ],
)
def test_budget_allows_the_share_rounded_down_but_at_least_the_floor(
    share: float, at_least: int, n_words: int, allowed: int
) -> None:
    assert WordBudget(share, at_least).words_for(n_words) == allowed


@pytest.mark.parametrize("share", [0.0, -0.1, 1.5])
def test_budget_rejects_a_share_outside_the_unit_interval(share: float) -> None:
    with pytest.raises(ValueError, match="share"):
        WordBudget(share)


@pytest.mark.parametrize("text", [t for t in TEXTS if segment(t).words])
def test_the_text_around_a_word_joins_with_any_replacement(text: str) -> None:
    original = segment(text)
    for index in range(len(original.words)):
        others = {i: "Q" for i in range(len(original.words)) if i % 2 != index % 2}
        before, after = original.around(index, others)
        assert before + "Zq" + after == original.join({**others, index: "Zq"})
