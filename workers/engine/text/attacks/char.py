"""Character-level attack in the manner of DeepWordBug (Gao et al. 2018).

One edit per attacked word, inside the word so that its first and last characters stay and a
reader still recognises it: swap two adjacent inner characters, delete an inner character,
insert a letter between two characters, or replace an inner letter by a key next to it on a
QWERTY keyboard. Words shorter than ``min_length`` characters and words that contain a digit are
never edited: a short word edited reads as another word, and an edited number changes the
meaning.
"""

from __future__ import annotations

import string
from dataclasses import dataclass, field

import numpy as np

from workers.engine.text.attacks.budget import WordBudget
from workers.engine.text.attacks.greedy import greedy_attack
from workers.engine.text.attacks.result import AttackResult
from workers.engine.text.attacks.victim import Victim

_ROWS = ("qwertyuiop", "asdfghjkl", "zxcvbnm")


def _keyboard_neighbours() -> dict[str, str]:
    """Keys that touch each letter key on a staggered QWERTY layout, where a key sits between
    the two keys above it at the same index and the next."""
    neighbours: dict[str, str] = {}
    for row, keys in enumerate(_ROWS):
        for index, key in enumerate(keys):
            near = [keys[index - 1]] if index else []
            near += [keys[index + 1]] if index + 1 < len(keys) else []
            if row > 0:
                near += [k for k in _ROWS[row - 1][index : index + 2]]
            if row + 1 < len(_ROWS):
                near += [k for k in _ROWS[row + 1][max(0, index - 1) : index + 1]]
            neighbours[key] = "".join(near)
    return neighbours


KEYBOARD_NEIGHBOURS = _keyboard_neighbours()


def editable(word: str, min_length: int) -> bool:
    return len(word) >= min_length and not any(ch.isdigit() for ch in word)


def swaps(word: str) -> list[str]:
    return [
        word[:i] + word[i + 1] + word[i] + word[i + 2 :]
        for i in range(1, len(word) - 2)
        if word[i] != word[i + 1]
    ]


def deletions(word: str) -> list[str]:
    return [word[:i] + word[i + 1 :] for i in range(1, len(word) - 1)]


def insertions(word: str, rng: np.random.Generator) -> list[str]:
    """One random lowercase letter (uppercase in an all-caps word) at each inner gap."""
    letters = rng.choice(list(string.ascii_lowercase), size=len(word) - 1)
    upper = word.isupper()
    return [
        word[:i] + (letters[i - 1].upper() if upper else str(letters[i - 1])) + word[i:]
        for i in range(1, len(word))
    ]


def key_substitutions(word: str) -> list[str]:
    """Every keyboard neighbour of every inner letter, in the letter's case."""
    edits = []
    for i in range(1, len(word) - 1):
        ch = word[i]
        for near in KEYBOARD_NEIGHBOURS.get(ch.lower(), ""):
            edits.append(word[:i] + (near.upper() if ch.isupper() else near) + word[i + 1 :])
    return edits


def char_candidates(word: str, rng: np.random.Generator, min_length: int = 4) -> list[str]:
    if not editable(word, min_length):
        return []
    return swaps(word) + deletions(word) + insertions(word, rng) + key_substitutions(word)


@dataclass(frozen=True)
class CharAttack:
    """Greedy DeepWordBug-style attack; ``budget`` bounds the words edited (one edit each)."""

    budget: WordBudget = field(default_factory=lambda: WordBudget(0.1))
    min_length: int = 4
    name: str = "char"

    def __call__(
        self,
        text: str,
        label: int,
        clean_probs: np.ndarray,
        victim: Victim,
        rng: np.random.Generator,
    ) -> AttackResult:
        return greedy_attack(
            self.name,
            text,
            label,
            clean_probs,
            victim,
            lambda word: char_candidates(word, rng, self.min_length),
            self.budget,
        )

    def to_dict(self) -> dict[str, object]:
        return {
            "kind": "character",
            "edits": ["swap", "delete", "insert", "keyboard-substitute"],
            "edits_per_word": 1,
            "min_word_length": self.min_length,
            **self.budget.to_dict(),
        }
