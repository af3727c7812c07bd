"""Word-level synonym substitution, greedy by word importance (TextFooler, Jin et al. 2020;
PWWS, Ren et al. 2019).

A word may be replaced by one of its synonyms from the table given (the engine passes WordNet's),
in the original word's capitalisation. Stopwords and words that contain a digit are never
replaced: swapping "not" or "10" is how a substitution changes the meaning.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from workers.engine.text.attacks.budget import WordBudget
from workers.engine.text.attacks.greedy import greedy_attack
from workers.engine.text.attacks.result import AttackResult
from workers.engine.text.attacks.victim import Victim

Synonyms = Callable[[str], Sequence[str]]
"""A lowercase word's synonyms, in a deterministic order."""


def match_case(replacement: str, original: str) -> str:
    """``replacement`` written the way ``original`` is: all caps, capitalised, or as given."""
    if len(original) > 1 and original.isupper():
        return replacement.upper()
    if original[:1].isupper():
        return replacement[:1].upper() + replacement[1:]
    return replacement


def synonym_candidates(word: str, synonyms: Synonyms, stopwords: frozenset[str]) -> list[str]:
    lower = word.lower()
    if lower in stopwords or any(ch.isdigit() for ch in word):
        return []
    return [match_case(synonym, word) for synonym in synonyms(lower)]


@dataclass(frozen=True)
class WordAttack:
    """Greedy synonym substitution; ``budget`` bounds the words replaced."""

    synonyms: Synonyms
    stopwords: frozenset[str]
    budget: WordBudget = field(default_factory=lambda: WordBudget(0.2))
    name: str = "word"

    def __call__(
        self,
        text: str,
        label: int,
        clean_probs: np.ndarray,
        victim: Victim,
        rng: np.random.Generator,
    ) -> AttackResult:
        """``rng`` is unused: the search is deterministic; it is taken so that every attack is
        called alike."""
        return greedy_attack(
            self.name,
            text,
            label,
            clean_probs,
            victim,
            lambda word: synonym_candidates(word, self.synonyms, self.stopwords),
            self.budget,
        )

    def to_dict(self) -> dict[str, object]:
        return {"kind": "word", "edits": ["synonym-substitute"], **self.budget.to_dict()}
