"""Gradient-masking diagnostics (Athalye, Carlini and Wagner 2018; Carlini et al. 2019).

A defence that hides its gradients looks robust to gradient attacks without being robust. Each
check compares attacks whose order of strength is known in advance; when the order is broken,
the check fires and explains in plain words what that means for the scores.
"""

from __future__ import annotations

from dataclasses import dataclass

from workers.engine.evaluation.stats import Accuracy

MARGIN_CE_GAP = 0.10
LARGE_EPS_CEILING = 0.10
ZERO_GRADIENT_CEILING = 0.10


@dataclass(frozen=True)
class MaskingCheck:
    name: str
    fired: bool
    detail: str
    explanation: str

    def to_dict(self) -> dict[str, object]:
        return {
            "check": self.name,
            "fired": self.fired,
            "detail": self.detail,
            "explanation": self.explanation,
        }


def _slack(total: int) -> int:
    """Differences smaller than this many samples are noise, not evidence."""
    return max(2, total // 100)


def diagnose(
    attacks: dict[str, Accuracy],
    clean: Accuracy,
    large_eps: Accuracy,
    zero_gradient_fraction: float,
    num_classes: int,
) -> list[MaskingCheck]:
    total = clean.total
    checks = [
        _iterative_weaker_than_single_step(attacks, total),
        _black_box_stronger(attacks, total),
        _cross_entropy_weaker_than_margin(attacks),
        _no_collapse_at_large_eps(large_eps),
        _zero_gradients(zero_gradient_fraction),
    ]
    return checks


def _iterative_weaker_than_single_step(attacks: dict[str, Accuracy], total: int) -> MaskingCheck:
    pgd, fgsm = attacks["pgd-ce"], attacks["fgsm"]
    fired = pgd.correct - fgsm.correct > _slack(total)
    return MaskingCheck(
        "iterative-weaker-than-single-step",
        fired,
        f"PGD-CE leaves {pgd.value:.1%} robust, FGSM {fgsm.value:.1%}",
        "Many small gradient steps should do at least as well as one big one. When they do "
        "worse, the loss surface is too rugged or flat for local gradients to be trusted, and "
        "gradient-based scores overstate robustness.",
    )


def _black_box_stronger(attacks: dict[str, Accuracy], total: int) -> MaskingCheck:
    white = min(a.correct for name, a in attacks.items() if name != "square")
    black = attacks["square"]
    fired = white - black.correct > _slack(total)
    return MaskingCheck(
        "black-box-stronger-than-white-box",
        fired,
        f"Square leaves {black.value:.1%} robust,"
        f" the best gradient attack {white / max(1, total):.1%}",
        "An attack that only queries outputs found adversarial examples that attacks using the "
        "model's gradients missed: the gradients are misleading the attacks.",
    )


def _cross_entropy_weaker_than_margin(attacks: dict[str, Accuracy]) -> MaskingCheck:
    ce = min(attacks["pgd-ce"].value, attacks["apgd-ce"].value)
    margin = min(attacks["pgd-cw"].value, attacks["apgd-t"].value)
    fired = ce - margin > MARGIN_CE_GAP
    return MaskingCheck(
        "cross-entropy-much-weaker-than-margin",
        fired,
        f"cross-entropy attacks leave {ce:.1%} robust, margin attacks {margin:.1%}",
        "Attacks on the cross-entropy of the softmax fail where attacks on the raw logits "
        "succeed. This is the signature of a saturated softmax, as produced by defensive "
        "distillation: its gradients vanish, not its vulnerability (Carlini and Wagner 2017).",
    )


def _no_collapse_at_large_eps(large: Accuracy) -> MaskingCheck:
    fired = large.value > LARGE_EPS_CEILING
    return MaskingCheck(
        "no-collapse-at-large-eps",
        fired,
        f"{large.value:.1%} robust when the ball covers the whole input domain",
        "With a budget that lets the attacker reach any input, robust accuracy must fall to "
        "about zero. If the attacks cannot get there, they are failing to optimise, and the "
        "scores at the requested epsilon are not trustworthy either.",
    )


def _zero_gradients(fraction: float) -> MaskingCheck:
    fired = fraction > ZERO_GRADIENT_CEILING
    return MaskingCheck(
        "zero-gradients",
        fired,
        f"{fraction:.1%} of correctly classified samples have an exactly zero loss gradient",
        "The cross-entropy gradient is exactly zero in float32 for many inputs, so gradient "
        "attacks on it cannot move. Robustness measured by such attacks is an artefact.",
    )
