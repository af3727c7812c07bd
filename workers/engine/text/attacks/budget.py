"""How many words an attack may change in a text."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class WordBudget:
    """At most ``share`` of a text's words, rounded down, but never fewer than ``at_least``.

    The floor of ``at_least`` words (default 1) lets an attack touch a short text at all: with a
    share of 10%, a text of fewer than ten words may still have one word changed. A text with no
    words gets none.
    """

    share: float
    at_least: int = 1

    def __post_init__(self) -> None:
        if not 0.0 < self.share <= 1.0:
            raise ValueError(f"the share of words must lie in (0, 1], got {self.share}")
        if self.at_least < 0:
            raise ValueError(f"at_least must not be negative, got {self.at_least}")

    def words_for(self, n_words: int) -> int:
        if n_words == 0:
            return 0
        by_share = math.floor(self.share * n_words + 1e-9)
        return min(n_words, max(self.at_least, by_share))

    def to_dict(self) -> dict[str, float | int]:
        return {"max_share_of_words": self.share, "at_least_words": self.at_least}
