"""Figures per attack and the per-sample worst case over several attacks."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from workers.engine.evaluation.stats import Accuracy, wilson_interval
from workers.engine.text.attacks.result import AttackResult


@dataclass(frozen=True)
class Outcome:
    """One sample under one attack, or under the worst of several."""

    originally_correct: bool
    success: bool
    share_changed: float
    queries: int


@dataclass(frozen=True)
class AttackSummary:
    name: str
    budget: Mapping[str, object]
    robust: Accuracy
    """Accuracy under attack: samples classified correctly and not flipped, over all samples."""
    attacked: int
    """Samples classified correctly before the attack; the others are not robust, and spend no
    queries."""
    successes: int
    mean_share_changed: float | None
    """Over successful adversarial examples; ``None`` when there are none."""
    mean_queries: float
    """Over attacked samples; the one clean query every sample takes is not included."""
    queries: int

    @property
    def success_rate(self) -> float:
        return self.successes / self.attacked if self.attacked else 0.0

    def to_dict(self) -> dict[str, object]:
        low, high = wilson_interval(self.successes, self.attacked)
        share = self.mean_share_changed
        return {
            "name": self.name,
            "budget": dict(self.budget),
            "robust_accuracy": self.robust.to_dict(),
            "attack_success_rate": {
                "value": round(self.success_rate, 6),
                "low": round(low, 6),
                "high": round(high, 6),
                "successes": self.successes,
                "attacked": self.attacked,
            },
            "mean_share_of_words_changed": None if share is None else round(share, 6),
            "mean_queries_per_attacked_sample": round(self.mean_queries, 3),
            "queries": self.queries,
        }


def outcome(result: AttackResult) -> Outcome:
    return Outcome(result.originally_correct, result.success, result.share_changed, result.queries)


def worst_outcome(results: Sequence[AttackResult]) -> Outcome:
    """A sample is robust only if no attack flipped it; when several did, the smallest share of
    words changed stands for it. Its queries are those of every attack together."""
    shares = [result.share_changed for result in results if result.success]
    return Outcome(
        originally_correct=results[0].originally_correct,
        success=bool(shares),
        share_changed=min(shares, default=0.0),
        queries=sum(result.queries for result in results),
    )


def summarise(
    name: str, budget: Mapping[str, object], outcomes: Sequence[Outcome]
) -> AttackSummary:
    attacked = [o for o in outcomes if o.originally_correct]
    successful = [o for o in attacked if o.success]
    queries = sum(o.queries for o in outcomes)
    return AttackSummary(
        name=name,
        budget=budget,
        robust=Accuracy(len(attacked) - len(successful), len(outcomes)),
        attacked=len(attacked),
        successes=len(successful),
        mean_share_changed=(
            sum(o.share_changed for o in successful) / len(successful) if successful else None
        ),
        mean_queries=queries / len(attacked) if attacked else 0.0,
        queries=queries,
    )


def summarise_attack(
    budget: Mapping[str, object], results: Sequence[AttackResult]
) -> AttackSummary:
    if not results:
        raise ValueError("no results to summarise")
    return summarise(results[0].attack, budget, [outcome(r) for r in results])


def summarise_worst_case(per_attack: Sequence[Sequence[AttackResult]]) -> AttackSummary:
    """``per_attack[a][i]`` is attack ``a``'s result on sample ``i``."""
    if not per_attack:
        raise ValueError("no attacks to take the worst case over")
    samples = {len(results) for results in per_attack}
    if len(samples) != 1:
        raise ValueError("every attack must have a result for every sample")
    names = [results[0].attack for results in per_attack if results]
    by_sample = list(zip(*per_attack, strict=True))
    return summarise(
        "worst-case", {"over_attacks": names}, [worst_outcome(list(s)) for s in by_sample]
    )
