"""The evaluation suite: a cascade for the headline, every attack on a fixed subset for the rest.

Headline: AutoAttack's cascade. The attacks run in order, cheapest first, each only on the
samples that every attack before it left standing; a sample counts as robust only if it is
classified correctly on the clean input and survives every attack of the cascade. That is the
per-sample worst case over those attacks (a sample one attack breaks is broken whatever the
others do), at the cost of AutoAttack's standard version rather than of every attack on every
sample.

Per-attack figures: the masking diagnostics compare attacks with each other, so on the first
:data:`PER_ATTACK_SAMPLES` evaluation samples every attack runs on every clean-correct sample
(reusing what the cascade already computed there). The per-attack table and the masking checks
are on that subset; the report says so.

The suite judges each attack's output itself: it checks the point lies in the ball and the box
and re-classifies it, trusting nothing an attack reports. See docs/evaluation.md.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from functools import partial

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from workers.engine.errors import TemperingError
from workers.engine.evaluation import apgd, fab, gradient_attacks, square
from workers.engine.evaluation.masking import MaskingCheck, diagnose
from workers.engine.evaluation.stats import Accuracy
from workers.engine.geometry import Box, NormName
from workers.engine.progress import ProgressEvent, Reporter
from workers.engine.spec import EvaluationSuite

log = logging.getLogger(__name__)

AttackFn = Callable[..., Tensor]
"""``(model, x, y, *, norm, eps, box, generator) -> x_adv``."""

PER_ATTACK_SAMPLES = 100
"""The per-attack figures and the masking checks are on the first this many samples."""

HEARTBEAT_SECONDS = 20.0
"""A progress line at least this often, also in the middle of one long attack."""

FAB_STEP_COST = 2.0
SQUARE_QUERY_COST = 0.75
"""A FAB step and a Square query in gradient evaluations, for the time estimate: measured on the
small MNIST CNN, where the attacks' own tensor work weighs as much as the model's."""


@dataclass(frozen=True)
class Attack:
    name: str
    run: AttackFn
    white_box: bool = True
    description: str = ""
    cost: float = 1.0
    """Gradient evaluations per sample that it does not break, for the time estimate."""
    in_cascade: bool = True
    """False: it runs on the per-attack subset only (the masking checks need it, the headline
    does not: a stronger attack of the cascade dominates it)."""


def attacks_for(suite: EvaluationSuite) -> list[Attack]:
    """The attacks of a suite in cascade order. ``standard`` is AutoAttack's standard version
    (APGD-CE, APGD-T, FAB-T, Square at its budgets) after one FGSM step, which removes the
    easily broken samples for the price of one gradient; PGD on two losses, which the masking
    checks compare, runs on the per-attack subset only."""
    full = suite is EvaluationSuite.STANDARD
    steps = 100 if full else 20
    targets = 9 if full else 3
    pgd_steps, pgd_restarts = (50, 3) if full else (10, 1)
    queries = 5000 if full else 300
    return [
        Attack("fgsm", gradient_attacks.fgsm, description="one signed-gradient step on CE"),
        Attack(
            "apgd-ce",
            partial(apgd.apgd, loss="ce", steps=steps, restarts=1),
            description="AutoAttack's APGD on cross-entropy",
            cost=steps,
        ),
        Attack(
            "apgd-t",
            partial(apgd.apgd_targeted, n_target_classes=targets, steps=steps),
            description="AutoAttack's targeted APGD on the DLR loss",
            cost=targets * steps,
        ),
        Attack(
            "fab-t",
            partial(fab.fab_targeted, n_target_classes=targets, steps=steps),
            description="AutoAttack's targeted FAB (minimal-norm boundary attack)",
            cost=targets * steps * FAB_STEP_COST,
        ),
        Attack(
            "square",
            partial(square.square, queries=queries),
            white_box=False,
            description="Square: score-based black-box attack on the margin",
            cost=queries * SQUARE_QUERY_COST,
        ),
        Attack(
            "pgd-ce",
            partial(gradient_attacks.pgd, loss="ce", steps=pgd_steps, restarts=pgd_restarts),
            description="PGD on cross-entropy with random restarts",
            cost=pgd_steps * pgd_restarts,
            in_cascade=False,
        ),
        Attack(
            "pgd-cw",
            partial(gradient_attacks.pgd, loss="cw", steps=pgd_steps, restarts=pgd_restarts),
            description="PGD on the logit margin (Carlini-Wagner loss)",
            cost=pgd_steps * pgd_restarts,
            in_cascade=False,
        ),
    ]


def curve_attacks(suite: EvaluationSuite) -> list[Attack]:
    """A cheap cascade for the robustness-versus-epsilon curve away from the requested epsilon,
    and for the large-epsilon check: the curve shows a trend, the headline is at the requested
    epsilon."""
    steps = 20 if suite is EvaluationSuite.STANDARD else 10
    return [
        Attack("apgd-ce", partial(apgd.apgd, loss="ce", steps=steps), cost=steps),
        Attack(
            "apgd-t",
            partial(apgd.apgd_targeted, n_target_classes=3, steps=steps),
            cost=3 * steps,
        ),
    ]


@dataclass(frozen=True)
class AttackScore:
    name: str
    description: str
    white_box: bool
    robust: Accuracy
    """On the per-attack subset: ``robust.total`` is its size."""
    in_cascade: bool = True


@dataclass(frozen=True)
class CurvePoint:
    eps: float
    robust: Accuracy


@dataclass(frozen=True)
class ModelScores:
    clean: Accuracy
    robust: Accuracy
    """Per-sample worst case over the cascade (and, on the per-attack subset, over every
    attack): the headline."""
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
    per_attack_samples: int = PER_ATTACK_SAMPLES


class AttackContractViolation(TemperingError):
    """An attack returned a point outside the threat model; scoring it would be dishonest."""


class _Progress:
    """Progress lines for one model: one per finished attack with its counts, and a heartbeat
    at least every :data:`HEARTBEAT_SECONDS` in between, also from inside an attack (the suite
    hands attacks a model that ticks on every forward pass). Each line also goes to the log."""

    def __init__(self, reporter: Reporter, label: str, steps: int) -> None:
        self.reporter, self.label, self.steps = reporter, label, steps
        self.step = 0
        self.current = ""
        self.started = time.monotonic()
        self.last = self.started
        self.estimate = 0.0

    def say(self, message: str, *, finished: bool = False) -> None:
        self.step += finished
        self.last = time.monotonic()
        eta = max(0.0, self.estimate - (self.last - self.started)) if self.estimate else None
        line = f"{self.label}: {message}"
        log.info("%s", line)
        self.reporter.emit(
            ProgressEvent(
                stage="evaluating",
                step=min(self.step, self.steps),
                steps=self.steps,
                eta_seconds=eta,
                message=line,
            )
        )

    def tick(self) -> None:
        self.reporter.check()
        if time.monotonic() - self.last >= HEARTBEAT_SECONDS:
            self.say(f"{self.current}, {time.monotonic() - self.started:.0f} s so far")


class _Ticking(nn.Module):
    """The model under attack, calling ``tick`` before every forward pass."""

    def __init__(self, model: nn.Module, tick: Callable[[], None]) -> None:
        super().__init__()
        self.model = model
        self._tick = tick

    def forward(self, x: Tensor) -> Tensor:
        self._tick()
        out: Tensor = self.model(x)
        return out


def evaluate(
    model: nn.Module,
    target: EvaluationTarget,
    reporter: Reporter,
    label: str,
    attacks: list[Attack] | None = None,
) -> ModelScores:
    """Score ``model``: the cascade for the headline, every attack on the per-attack subset,
    the curve and the masking checks. ``attacks`` defaults to the target's suite."""
    model.eval()
    device = next(iter(model.parameters()), torch.empty(0)).device
    box = target.box.to(device)
    suite = attacks if attacks is not None else attacks_for(target.suite)
    progress = _Progress(reporter, label, len(suite) + 1)
    ticking = _Ticking(model, progress.tick)
    clean_correct = _correct(model, target.x, target.y, target.batch_size, device)
    subset = torch.arange(len(target.y)) < target.per_attack_samples
    progress.estimate = _estimate_seconds(model, target, suite, clean_correct, subset, device)
    progress.say(
        f"evaluating {len(target.y)} samples, {int(clean_correct.sum())} correct without attack;"
        f" estimated at most {progress.estimate:.0f} s"
    )
    survived, standing = _cascade(ticking, target, box, suite, clean_correct, subset, progress)
    worst = standing.clone()
    for mask in survived.values():
        worst &= mask | ~subset
    curve = _curve(ticking, target, box, clean_correct, worst, progress)
    total = len(target.y)
    per_attack = _per_attack_scores(suite, survived, subset)
    masking = diagnose(
        {a.name: a.robust for a in per_attack},
        Accuracy(int((clean_correct & subset).sum()), int(subset.sum())),
        _large_eps_accuracy(ticking, target, box, worst, progress),
        _zero_gradient_fraction(model, target, clean_correct, device),
        target.num_classes,
    )
    progress.say(
        f"done: {int(worst.sum())}/{total} robust, {time.monotonic() - progress.started:.0f} s",
        finished=True,
    )
    return ModelScores(
        Accuracy(int(clean_correct.sum()), total),
        Accuracy(int(worst.sum()), total),
        per_attack,
        curve,
        masking,
    )


def _per_attack_scores(
    suite: list[Attack], survived: dict[str, Tensor], subset: Tensor
) -> list[AttackScore]:
    return [
        AttackScore(
            a.name,
            a.description,
            a.white_box,
            Accuracy(int((survived[a.name] & subset).sum()), int(subset.sum())),
            a.in_cascade,
        )
        for a in suite
    ]


def _cascade(
    model: nn.Module,
    target: EvaluationTarget,
    box: Box,
    suite: list[Attack],
    clean_correct: Tensor,
    subset: Tensor,
    progress: _Progress,
) -> tuple[dict[str, Tensor], Tensor]:
    """Run every attack: a cascade attack on the samples still standing and on the subset
    samples it has not yet seen, any other attack on the subset only.

    Returns, per attack, the mask of samples it was run on and left correct (all subset samples
    correct on the clean input were run on), and the samples the cascade left standing."""
    standing = clean_correct.clone()
    survived: dict[str, Tensor] = {}
    for attack in suite:
        run_on = (standing if attack.in_cascade else torch.zeros_like(standing)) | (
            clean_correct & subset
        )
        progress.current = f"{attack.name} on {int(run_on.sum())} samples"
        survived[attack.name] = _survives(model, attack, target, target.eps, box, run_on)
        if attack.in_cascade:
            standing &= survived[attack.name]
        progress.say(
            f"{attack.name}: {int(standing.sum())}/{len(standing)} still robust"
            f" ({int((survived[attack.name] & subset).sum())}/{int(subset.sum())} of the"
            f" per-attack subset), {time.monotonic() - progress.started:.0f} s",
            finished=True,
        )
    return survived, standing


def _survives(
    model: nn.Module,
    attack: Attack,
    target: EvaluationTarget,
    eps: float,
    box: Box,
    run_on: Tensor,
) -> Tensor:
    """Boolean mask over all samples: attacked (``run_on``) and correct on this attack's output.

    Each batch draws its randomness from a generator seeded by the job's seed and the index of
    its first sample, so that a sample attacked alone gets the same draws however many others
    the attack skips."""
    device = box.lower.device
    survived = torch.zeros_like(run_on)
    for index in _batches(run_on, target.batch_size):
        x = target.x[index].to(device)
        y = target.y[index].to(device)
        generator = torch.Generator().manual_seed(_batch_seed(target.seed, int(index[0])))
        x_adv = attack.run(
            model, x, y, norm=target.norm, eps=eps, box=box, generator=generator
        ).detach()
        _check_contract(attack.name, x, x_adv, target.norm, eps, box)
        with torch.no_grad():
            still = model(x_adv).argmax(1) == y
        survived[index] = still.cpu()
    return survived


def _batches(mask: Tensor, batch_size: int) -> Iterator[Tensor]:
    candidates = torch.nonzero(mask).flatten()
    for start in range(0, len(candidates), batch_size):
        yield candidates[start : start + batch_size]


def _batch_seed(seed: int, first_sample: int) -> int:
    return (seed * 1_000_003 + first_sample) % (2**63)


def _estimate_seconds(
    model: nn.Module,
    target: EvaluationTarget,
    suite: list[Attack],
    clean_correct: Tensor,
    subset: Tensor,
    device: torch.device,
) -> float:
    """An upper bound: the measured cost of one gradient evaluation per sample, times the
    attacks' budgets as if no sample were ever broken (a robust model's case), plus the curve
    and the large-epsilon check on the same terms."""
    correct = int(clean_correct.sum())
    on_subset = int((clean_correct & subset).sum())
    budget = sum(a.cost * (correct if a.in_cascade else on_subset) for a in suite)
    curve_cost = sum(a.cost for a in curve_attacks(target.suite))
    budget += curve_cost * (correct * max(0, target.curve_points - 2) + LARGE_EPS_SAMPLES)
    return budget * _gradient_seconds(model, target, device)


def _gradient_seconds(model: nn.Module, target: EvaluationTarget, device: torch.device) -> float:
    """Seconds per sample of one cross-entropy input gradient, best of two on one batch."""
    x = target.x[: target.batch_size].to(device)
    y = target.y[: target.batch_size].to(device)
    best = float("inf")
    for _ in range(2):
        started = time.perf_counter()
        x_req = x.clone().requires_grad_(True)
        torch.autograd.grad(F.cross_entropy(model(x_req), y), x_req)
        best = min(best, time.perf_counter() - started)
    return best / max(1, len(y))


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
    progress: _Progress,
) -> list[CurvePoint]:
    """Robust accuracy at evenly spaced epsilons from 0 to twice the requested one, in
    increasing order and as a cascade: a sample broken at one epsilon is broken at every larger
    one (its adversarial point lies in the larger ball), so each point attacks only the samples
    the smaller ones left. Below the requested epsilon only the samples the headline broke are
    attacked: the others survived the whole suite in the larger ball and count as robust. The
    point at the requested epsilon is the headline, and beyond it only its survivors are
    attacked."""
    total = len(target.y)
    points = []
    robust = clean_correct.clone()
    for i in range(target.curve_points):
        eps = 2 * target.eps * i / (target.curve_points - 1)
        below = eps < target.eps - 1e-12
        attacked = robust & ~worst_at_eps if below else robust & worst_at_eps
        robust &= worst_at_eps
        if eps > 0 and abs(eps - target.eps) >= 1e-12:
            progress.current = f"curve at eps={eps:.4g} on {int(attacked.sum())} samples"
            attacks = curve_attacks(target.suite)
            survivors = _cascade_survivors(model, attacks, target, eps, box, attacked)
            robust = robust | survivors if below else survivors
            progress.say(f"curve at eps={eps:.4g}: {int(robust.sum())}/{total} robust")
        elif below:
            robust |= attacked
        points.append(CurvePoint(round(eps, 8), Accuracy(int(robust.sum()), total)))
    return points


def _cascade_survivors(
    model: nn.Module,
    attacks: list[Attack],
    target: EvaluationTarget,
    eps: float,
    box: Box,
    standing: Tensor,
) -> Tensor:
    """The samples of ``standing`` that every attack, run on the survivors of the ones before
    it, leaves correct."""
    for attack in attacks:
        standing = _survives(model, attack, target, eps, box, standing)
    return standing


LARGE_EPS_SAMPLES = 200


def _large_eps_accuracy(
    model: nn.Module,
    target: EvaluationTarget,
    box: Box,
    worst_at_eps: Tensor,
    progress: _Progress,
) -> Accuracy:
    """Robust accuracy on the first :data:`LARGE_EPS_SAMPLES` samples when the ball covers the
    whole input domain, where any working attack must reach (near) zero: any input can be turned
    into any other. Samples broken at the requested epsilon are broken here too."""
    span = float((box.upper - box.lower).max())
    dims = target.x[0].numel()
    eps = span if target.norm == "linf" else span * dims**0.5
    n = min(LARGE_EPS_SAMPLES, len(target.y))
    sub = replace(target, x=target.x[:n], y=target.y[:n], eps=eps)
    progress.current = f"large-eps check on {int(worst_at_eps[:n].sum())} samples"
    robust = _cascade_survivors(model, curve_attacks(target.suite), sub, eps, box, worst_at_eps[:n])
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
