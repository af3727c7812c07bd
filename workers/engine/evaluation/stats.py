"""Confidence intervals for accuracies."""

from __future__ import annotations

import math
from dataclasses import dataclass

Z_95 = 1.959963984540054


@dataclass(frozen=True)
class Accuracy:
    """``correct`` out of ``total``, with a 95% Wilson score interval.

    Wilson rather than the normal approximation because robust accuracies sit near 0 or 1,
    where the normal interval escapes [0, 1] and undercovers.
    """

    correct: int
    total: int

    @property
    def value(self) -> float:
        return self.correct / self.total if self.total else 0.0

    @property
    def interval(self) -> tuple[float, float]:
        return wilson_interval(self.correct, self.total)

    def to_dict(self) -> dict[str, float | int]:
        low, high = self.interval
        return {
            "value": round(self.value, 6),
            "low": round(low, 6),
            "high": round(high, 6),
            "correct": self.correct,
            "total": self.total,
        }


def wilson_interval(successes: int, trials: int, z: float = Z_95) -> tuple[float, float]:
    if trials == 0:
        return 0.0, 1.0
    p = successes / trials
    denominator = 1 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denominator
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denominator
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    high = 1.0 if successes == trials else min(1.0, centre + half)
    return low, high
