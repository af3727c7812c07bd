"""The classifier under attack, seen as a black box that is charged per text scored."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

Victim = Callable[[Sequence[str]], np.ndarray]
"""Maps a batch of texts to class probabilities, shape ``[len(texts), n_classes]``."""


class CountingVictim:
    """Scores texts in batches of at most ``batch_size`` (all at once when ``None``) and counts
    every text scored.

    The count is what the report calls queries; attacks never score a text any other way.
    """

    def __init__(self, victim: Victim, batch_size: int | None = None) -> None:
        if batch_size is not None and batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        self._victim = victim
        self._batch_size = batch_size
        self.queries = 0

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            raise ValueError("no texts to score")
        size = self._batch_size or len(texts)
        parts = [self._score(texts[start : start + size]) for start in range(0, len(texts), size)]
        return np.concatenate(parts, axis=0)

    def _score(self, texts: Sequence[str]) -> np.ndarray:
        probs = np.asarray(self._victim(list(texts)), dtype=np.float64)
        self.queries += len(texts)
        if probs.ndim != 2 or probs.shape[0] != len(texts) or probs.shape[1] < 2:
            raise ValueError(
                f"the victim returned shape {probs.shape} for {len(texts)} texts; "
                "expected [texts, classes] with at least two classes"
            )
        if not np.all(np.isfinite(probs)) or np.any(probs < 0):
            raise ValueError("the victim returned probabilities that are negative or not finite")
        if not np.allclose(probs.sum(axis=1), 1.0, atol=1e-3):
            raise ValueError("the victim's rows do not sum to 1: pass probabilities, not logits")
        return probs
