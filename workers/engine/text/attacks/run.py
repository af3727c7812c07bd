"""Score a text classifier under several discrete attacks."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from workers.engine.evaluation.stats import Accuracy
from workers.engine.text.attacks.result import AttackResult
from workers.engine.text.attacks.summary import (
    AttackSummary,
    summarise_attack,
    summarise_worst_case,
)
from workers.engine.text.attacks.victim import CountingVictim, Victim


class TextAttack(Protocol):
    @property
    def name(self) -> str: ...

    def __call__(
        self,
        text: str,
        label: int,
        clean_probs: np.ndarray,
        victim: Victim,
        rng: np.random.Generator,
    ) -> AttackResult: ...

    def to_dict(self) -> Mapping[str, object]: ...


@dataclass(frozen=True)
class TextEvaluation:
    clean: Accuracy
    attacks: tuple[AttackSummary, ...]
    worst_case: AttackSummary
    """Per sample: robust only if correct and flipped by none of ``attacks``."""
    results: Mapping[str, tuple[AttackResult, ...]]
    queries: int
    """Every text the victim scored, the clean pass included."""

    def to_dict(self) -> dict[str, object]:
        return {
            "samples": self.clean.total,
            "clean_accuracy": self.clean.to_dict(),
            "attacks": [summary.to_dict() for summary in self.attacks],
            "worst_case": self.worst_case.to_dict(),
            "queries": self.queries,
        }


def run_attacks(
    texts: Sequence[str],
    labels: Sequence[int],
    victim: Victim,
    attacks: Sequence[TextAttack],
    *,
    seed: int = 0,
    batch_size: int = 64,
) -> TextEvaluation:
    """Every attack on every sample the victim classifies correctly.

    Each sample's randomness comes from a generator seeded by ``(seed, sample index)``, so a
    sample is attacked the same way whatever other samples are scored with it.
    """
    _check(texts, labels, attacks)
    counter = CountingVictim(victim, batch_size)
    clean_probs = counter(texts)
    labels = [int(label) for label in labels]
    if min(labels) < 0 or max(labels) >= clean_probs.shape[1]:
        raise ValueError(f"labels must lie in [0, {clean_probs.shape[1]}) for this victim")
    predictions = np.argmax(clean_probs, axis=1)
    results: dict[str, tuple[AttackResult, ...]] = {}
    for attack in attacks:
        results[attack.name] = tuple(
            attack(text, label, clean_probs[i], counter, np.random.default_rng([seed, i]))
            for i, (text, label) in enumerate(zip(texts, labels, strict=True))
        )
    return TextEvaluation(
        clean=Accuracy(int(np.sum(predictions == np.asarray(labels))), len(texts)),
        attacks=tuple(
            summarise_attack(attack.to_dict(), results[attack.name]) for attack in attacks
        ),
        worst_case=summarise_worst_case(list(results.values())),
        results=results,
        queries=counter.queries,
    )


def _check(texts: Sequence[str], labels: Sequence[int], attacks: Sequence[TextAttack]) -> None:
    if not texts:
        raise ValueError("no texts to attack")
    if len(texts) != len(labels):
        raise ValueError(f"{len(texts)} texts but {len(labels)} labels")
    if not attacks:
        raise ValueError("no attacks to run")
    names = [attack.name for attack in attacks]
    if len(set(names)) != len(names):
        raise ValueError(f"attack names must be distinct, got {names}")
