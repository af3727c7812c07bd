"""The evaluation suite: every attack on every sample, and the per-sample worst case.

Each attack runs on all clean-correct samples (not only on those that survived the attack
before it, as AutoAttack's cascade does) so that per-attack accuracies are comparable; the
masking diagnostics depend on that. The headline robust accuracy counts a sample as robust only
if it is classified correctly on the clean input and on every attack's output. The suite judges
each attack's output itself: it checks the point lies in the ball and the box and re-classifies
it, trusting nothing an attack reports.

See docs/evaluation.md for the choice of attacks and their budgets.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import partial

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from workers.engine.errors import TemperingError
from workers.engine.evaluation import apgd, fab, gradient_attacks, square
from workers.engine.evaluation.masking import MaskingCheck, diagnose
from workers.engine.evaluation.stats import Accuracy
from workers.engine.evaluation.types import Box, NormName
from workers.engine.progress import ProgressEvent, Reporter
from workers.engine.spec import EvaluationSuite

AttackFn = Callable[..., Tensor]
"""``(model, x, y, *, norm, eps, box, generator) -> x_adv``."""


@dataclass(frozen=True)
class Attack:
    name: str
    run: AttackFn
    white_box: bool = True
    description: str = ""


def attacks_for(suite: EvaluationSuite) -> list[Attack]:
    """The attacks of a suite. ``standard`` follows AutoAttack's standard budgets and adds
    FGSM and multi-restart PGD on two losses, which the masking checks compare."""
    full = suite is EvaluationSuite.STANDARD
    steps, pgd_restarts = (100, 1) if full else (20, 1)
    targets = 9 if full else 3
    return [
        Attack("fgsm", gradient_attacks.fgsm, description="one signed-gradient step on CE"),
        Attack(
            "pgd-ce",
            partial(
                gradient_attacks.pgd, loss="ce", steps=50 if full else 10, restarts=3 if full else 1
            ),
            description="PGD on cross-entropy with random restarts",
        ),
        Attack(
            "pgd-cw",
            partial(
                gradient_attacks.pgd, loss="cw", steps=50 if full else 10, restarts=3 if full else 1
            ),
            description="PGD on the logit margin (Carlini-Wagner loss)",
        ),
        Attack(
            "apgd-ce",
            partial(apgd.apgd, loss="ce", steps=steps, restarts=pgd_restarts),
            description="AutoAttack's APGD on cross-entropy",
        ),
        Attack(
            "apgd-t",
            partial(apgd.apgd_targeted, n_target_classes=targets, steps=steps),
            description="AutoAttack's targeted APGD on the DLR loss",
        ),
        Attack(
            "fab-t",
            partial(fab.fab_targeted, n_target_classes=targets, steps=steps),
            description="AutoAttack's targeted FAB (minimal-norm boundary attack)",
        ),
        Attack(
            "square",
            partial(square.square, queries=5000 if full else 300),
            white_box=False,
            description="Square: score-based black-box attack on the margin",
        ),
    ]


def curve_attacks(suite: EvaluationSuite) -> list[Attack]:
    """A cheaper pair for the robustness-versus-epsilon curve away from the requested epsilon."""
    steps = 50 if suite is EvaluationSuite.STANDARD else 10
    return [
        Attack("apgd-ce", partial(apgd.apgd, loss="ce", steps=steps)),
        Attack("apgd-t", partial(apgd.apgd_targeted, n_target_classes=3, steps=steps)),
    ]


@dataclass(frozen=True)
class AttackScore:
    name: str
    description: str
    white_box: bool
    robust: Accuracy


@dataclass(frozen=True)
class CurvePoint:
    eps: float
    robust: Accuracy


@dataclass(frozen=True)
class ModelScores:
    clean: Accuracy
    robust: Accuracy
    """Per-sample worst case over the whole suite: the headline."""
    attacks: list[AttackScore]
    curve: list[CurvePoint]
    masking: list[MaskingCheck]

    @property
    def masking_suspected(self) -> bool:
        return any(check.fired for check in self.masking)


@dataclass(frozen=True)
class EvaluationTarget:
    """What to score: the same samples, bounds and seed for the original and hardened model."""

    x: Tensor
    y: Tensor
    norm: NormName
    eps: float
    box: Box
    suite: EvaluationSuite
    curve_points: int
    batch_size: int
    seed: int
    num_classes: int


class AttackContractViolation(TemperingError):
    """An attack returned a point outside the threat model; scoring it would be dishonest."""


def evaluate(
    model: nn.Module, target: EvaluationTarget, reporter: Reporter, label: str
) -> ModelScores:
    model.eval()
    device = next(iter(model.parameters()), torch.empty(0)).device
    box = target.box.to(device)
    clean_correct = _correct(model, target.x, target.y, target.batch_size, device)
    attack_masks: dict[str, Tensor] = {}
    suite = attacks_for(target.suite)
    for index, attack in enumerate(suite):
        reporter.check()
        reporter.emit(
            ProgressEvent(
                stage="evaluating",
                step=index + 1,
                steps=len(suite),
                message=f"{label}: {attack.name}",
            )
        )
        attack_masks[attack.name] = _survives(
            model, attack, target, target.eps, box, clean_correct, device
        )
    worst = clean_correct.clone()
    for mask in attack_masks.values():
        worst &= mask
    curve = _curve(model, target, box, clean_correct, worst, device, reporter, label)
    total = len(target.y)
    clean = Accuracy(int(clean_correct.sum()), total)
    per_attack = [
        AttackScore(
            a.name, a.description, a.white_box, Accuracy(int(attack_masks[a.name].sum()), total)
        )
        for a in suite
    ]
    masking = diagnose(
        {a.name: a.robust for a in per_attack},
        clean,
        _large_eps_accuracy(model, target, box, clean_correct, device),
        _zero_gradient_fraction(model, target, clean_correct, device),
        target.num_classes,
    )
    return ModelScores(clean, Accuracy(int(worst.sum()), total), per_attack, curve, masking)


def _survives(
    model: nn.Module,
    attack: Attack,
    target: EvaluationTarget,
    eps: float,
    box: Box,
    clean_correct: Tensor,
    device: torch.device,
) -> Tensor:
    """Boolean mask over all samples: correct on the clean input and on this attack's output."""
    survived = clean_correct.clone()
    candidates = torch.nonzero(clean_correct).flatten()
    generator = torch.Generator().manual_seed(target.seed)
    for start in range(0, len(candidates), target.batch_size):
        index = candidates[start : start + target.batch_size]
        x = target.x[index].to(device)
        y = target.y[index].to(device)
        x_adv = attack.run(
            model, x, y, norm=target.norm, eps=eps, box=box, generator=generator
        ).detach()
        _check_contract(attack.name, x, x_adv, target.norm, eps, box)
        with torch.no_grad():
            still = model(x_adv).argmax(1) == y
        survived[index] = still.cpu()
    return survived


def _check_contract(
    name: str, x: Tensor, x_adv: Tensor, norm: NormName, eps: float, box: Box
) -> None:
    delta = (x_adv - x).flatten(1)
    size = delta.abs().max(dim=1).values if norm == "linf" else delta.norm(dim=1)
    tolerance = 1e-5 * max(1.0, eps)
    if x_adv.shape != x.shape or bool((size > eps + tolerance).any()):
        raise AttackContractViolation(f"attack {name} left the {norm} ball of radius {eps}")
    if bool((x_adv < box.lower - 1e-6).any() or (x_adv > box.upper + 1e-6).any()):
        raise AttackContractViolation(f"attack {name} left the input domain")


def _curve(
    model: nn.Module,
    target: EvaluationTarget,
    box: Box,
    clean_correct: Tensor,
    worst_at_eps: Tensor,
    device: torch.device,
    reporter: Reporter,
    label: str,
) -> list[CurvePoint]:
    """Robust accuracy at evenly spaced epsilons from 0 to twice the requested one. At the
    requested epsilon the full suite's per-sample result is folded in."""
    total = len(target.y)
    points = []
    for i in range(target.curve_points):
        eps = 2 * target.eps * i / (target.curve_points - 1)
        reporter.check()
        reporter.emit(ProgressEvent(stage="evaluating", message=f"{label}: curve at eps={eps:.4g}"))
        robust = clean_correct.clone()
        if eps > 0:
            for attack in curve_attacks(target.suite):
                robust &= _survives(model, attack, target, eps, box, clean_correct, device)
        if abs(eps - target.eps) < 1e-12:
            robust &= worst_at_eps
        points.append(CurvePoint(round(eps, 8), Accuracy(int(robust.sum()), total)))
    return points


LARGE_EPS_SAMPLES = 200


def _large_eps_accuracy(
    model: nn.Module,
    target: EvaluationTarget,
    box: Box,
    clean_correct: Tensor,
    device: torch.device,
) -> Accuracy:
    """Robust accuracy when the ball covers the whole input domain, where any working attack
    must reach (near) zero: any input can be turned into any other."""
    span = float((box.upper - box.lower).max())
    dims = target.x[0].numel()
    eps = span if target.norm == "linf" else span * dims**0.5
    n = min(LARGE_EPS_SAMPLES, len(target.y))
    sub = replace(target, x=target.x[:n], y=target.y[:n], eps=eps)
    robust = clean_correct[:n].clone()
    for attack in curve_attacks(target.suite):
        robust &= _survives(model, attack, sub, eps, box, clean_correct[:n], device)
    return Accuracy(int(robust.sum()), n)


def _zero_gradient_fraction(
    model: nn.Module, target: EvaluationTarget, clean_correct: Tensor, device: torch.device
) -> float:
    """Share of correctly classified samples whose cross-entropy gradient is exactly zero in
    float32: the signature of a saturated softmax (defensive distillation)."""
    index = torch.nonzero(clean_correct).flatten()[: target.batch_size]
    if len(index) == 0:
        return 0.0
    x = target.x[index].to(device).requires_grad_(True)
    loss = F.cross_entropy(model(x), target.y[index].to(device), reduction="sum")
    (grad,) = torch.autograd.grad(loss, x)
    zero = grad.flatten(1).abs().amax(dim=1) == 0
    return float(zero.float().mean())


def _correct(
    model: nn.Module, x: Tensor, y: Tensor, batch_size: int, device: torch.device
) -> Tensor:
    out = []
    with torch.no_grad():
        for start in range(0, len(y), batch_size):
            logits = model(x[start : start + batch_size].to(device))
            out.append((logits.argmax(1) == y[start : start + batch_size].to(device)).cpu())
    return torch.cat(out)
