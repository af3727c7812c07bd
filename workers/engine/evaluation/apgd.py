"""Auto-PGD, the gradient attacks of AutoAttack.

Croce & Hein, "Reliable evaluation of adversarial robustness with an ensemble of diverse
parameter-free attacks", ICML 2020. APGD is PGD with momentum whose step size needs no tuning: it
starts at ``2 * eps`` and halves at checkpoints when progress stalls, resuming each time from the
best point found so far. :func:`apgd` is the untargeted attack on cross-entropy or the DLR loss;
:func:`apgd_targeted` is APGD-T, the targeted DLR attack of AutoAttack's "standard" version.

Where the paper and the reference implementation (fra31/auto-attack) differ, this follows the
paper (Algorithm 1 and Section 3.2):

* condition 1 halves when the share of loss increases in the last window is strictly below
  ``rho``, and the first window also counts the first step's increase over the starting point;
* condition 2 (step size and best loss both unchanged since the previous checkpoint) can already
  fire at the first checkpoint, since the step size trivially has not changed since iteration 0;
* after a restart from the best point, the next increase is measured against the best loss.

With few classes the DLR losses lack the logits their denominators use, see
:func:`dlr_loss` and :func:`targeted_dlr_loss`.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from fractions import Fraction
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from workers.engine.evaluation.gradient_attacks import (
    AttackOutcome,
    LossFn,
    check_arguments,
    cross_entropy_loss,
    default_generator,
    loss_and_grad,
    margin_loss,
    prepare_inputs,
)
from workers.engine.evaluation.types import Classifier
from workers.engine.geometry import (
    Box,
    NormName,
    ascent_direction,
    cpu_rand,
    cpu_randn,
    l2_norms,
    linf_norms,
    project,
)

_MOMENTUM = 0.75
_INITIAL_STEP = 2.0
_FIRST_CHECKPOINT = Fraction(22, 100)
_CHECKPOINT_GAP_DECAY = Fraction(3, 100)
_MIN_CHECKPOINT_GAP = Fraction(6, 100)
_DLR_EPS = 1e-12


def dlr_loss(logits: Tensor, y: Tensor) -> Tensor:
    """Difference of Logits Ratio: ``-(z_y - max_{i != y} z_i) / (z_pi1 - z_pi3 + 1e-12)``.

    ``z_pi1 >= z_pi2 >= ...`` are the sorted logits. Dividing by a spread of the logits makes the
    loss invariant to shifting and rescaling them, so it cannot be gamed by inflated logits the
    way cross-entropy can (Croce & Hein 2020, Section 4). With fewer than three classes there is no
    ``z_pi3``; the loss falls back to its numerator, the logit margin, which has the same sign and
    the same ascent direction as the DLR loss would.
    """
    margin = margin_loss(logits, y)
    if logits.shape[1] < 3:
        return margin
    top = logits.topk(3, dim=1).values
    return margin / (top[:, 0] - top[:, 2] + _DLR_EPS)


def targeted_dlr_loss(logits: Tensor, y: Tensor, target: Tensor) -> Tensor:
    """Targeted DLR: ``-(z_y - z_t) / (z_pi1 - (z_pi3 + z_pi4) / 2 + 1e-12)``.

    With three classes the denominator falls back to the untargeted ``z_pi1 - z_pi3`` (still a
    shift- and scale-invariant spread); with two, the loss is the bare logit gap ``z_t - z_y``.
    """
    gap = _logit_at(logits, target) - _logit_at(logits, y)
    n_classes = logits.shape[1]
    if n_classes < 3:
        return gap
    top = logits.topk(min(n_classes, 4), dim=1).values
    low = top[:, 2] if n_classes == 3 else (top[:, 2] + top[:, 3]) / 2
    return gap / (top[:, 0] - low + _DLR_EPS)


@functools.cache
def apgd_checkpoints(steps: int) -> tuple[int, ...]:
    """The iterations ``w_j = ceil(p_j * steps)`` at which APGD may halve its step size.

    ``p_0 = 0``, ``p_1 = 0.22`` and ``p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03, 0.06)``: long
    windows first, for exploration, then ever shorter ones. Computed in exact fractions, as
    ``0.41 * 100`` in floating point rounds up to 42.
    """
    fractions = [Fraction(0), _FIRST_CHECKPOINT]
    while fractions[-1] < 1:
        gap = max(fractions[-1] - fractions[-2] - _CHECKPOINT_GAP_DECAY, _MIN_CHECKPOINT_GAP)
        fractions.append(fractions[-1] + gap)
    iterations = {math.ceil(p * steps) for p in fractions[1:]}
    return tuple(sorted(w for w in iterations if 0 < w < steps))


def apgd(
    model: Classifier,
    x: Tensor,
    y: Tensor,
    *,
    norm: NormName,
    eps: float,
    box: Box,
    loss: Literal["ce", "dlr"] = "ce",
    steps: int = 100,
    restarts: int = 1,
    rho: float = 0.75,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Untargeted APGD on cross-entropy (APGD-CE) or the DLR loss (APGD-DLR).

    Each restart starts at a random point on the ball's boundary and runs on the samples that no
    earlier restart has fooled.
    """
    check_arguments(norm=norm, eps=eps, steps=steps, restarts=restarts)
    _check_rho(rho)
    losses: dict[str, LossFn] = {"ce": cross_entropy_loss, "dlr": dlr_loss}
    if loss not in losses:
        raise ValueError(f"loss must be 'ce' or 'dlr', got {loss!r}")
    loss_fn = losses[loss]
    generator = default_generator() if generator is None else generator
    x, y, box, clean_logits = prepare_inputs(model, x, y, box)
    outcome = AttackOutcome.for_clean_point(x, y, clean_logits, loss_fn(clean_logits, y))
    settings = _Settings(norm=norm, eps=eps, box=box, steps=steps, rho=rho)
    for _ in range(restarts):
        rows = outcome.pending()
        if rows.numel() == 0:
            break
        _run(model, x[rows], y[rows], rows, outcome, loss_fn, settings, generator)
    return outcome.x_adv


def apgd_targeted(
    model: Classifier,
    x: Tensor,
    y: Tensor,
    *,
    norm: NormName,
    eps: float,
    box: Box,
    n_target_classes: int = 9,
    steps: int = 100,
    restarts: int = 1,
    rho: float = 0.75,
    generator: torch.Generator | None = None,
) -> Tensor:
    """APGD-T: APGD on the targeted DLR loss, one target class after another.

    The targets are the ``n_target_classes`` (at most classes - 1) wrong classes with the highest
    logits at ``x``, most likely first; each gets ``restarts`` runs on the samples still correct.
    A sample never fooled comes back as the point of highest targeted loss over all targets; the
    losses of different targets share a scale thanks to the DLR normalisation.
    """
    check_arguments(norm=norm, eps=eps, steps=steps, restarts=restarts)
    _check_rho(rho)
    if n_target_classes < 1:
        raise ValueError(f"n_target_classes must be at least 1, got {n_target_classes}")
    generator = default_generator() if generator is None else generator
    x, y, box, clean_logits = prepare_inputs(model, x, y, box)
    no_loss_yet = torch.full_like(y, -math.inf, dtype=clean_logits.dtype)
    outcome = AttackOutcome(x, settled=clean_logits.argmax(dim=1) != y, best_loss=no_loss_yet)
    targets = _likely_wrong_classes(clean_logits, y, n_target_classes)
    settings = _Settings(norm=norm, eps=eps, box=box, steps=steps, rho=rho)
    for rank in range(targets.shape[1]):
        for _ in range(restarts):
            rows = outcome.pending()
            if rows.numel() == 0:
                return outcome.x_adv
            loss_fn = functools.partial(targeted_dlr_loss, target=targets[rows, rank])
            _run(model, x[rows], y[rows], rows, outcome, loss_fn, settings, generator)
    return outcome.x_adv


@dataclass(frozen=True)
class _Settings:
    norm: NormName
    eps: float
    box: Box
    steps: int
    rho: float

    def project(self, points: Tensor, x: Tensor) -> Tensor:
        return project(points, x, norm=self.norm, eps=self.eps, box=self.box)


class _Ascent:
    """The state of one APGD run over a batch, one row per sample.

    Holds the current and previous iterate (for momentum), the gradient at the current one, the
    best point so far with its loss and gradient (to restart from), the per-sample step size, and
    what the step-size rule needs to know about the window since the last checkpoint.
    """

    def __init__(self, point: Tensor, loss: Tensor, grad: Tensor, eps: float) -> None:
        self.current, self.previous, self.grad = point, point, grad
        self.best_point, self.best_loss, self.best_grad = point, loss, grad
        self.step = torch.full(
            loss.shape, _INITIAL_STEP * eps, dtype=point.dtype, device=point.device
        )
        self.last_loss = loss
        self.increases = torch.zeros_like(loss, dtype=torch.long)
        self.best_loss_at_check = loss
        self.halved_at_check = torch.zeros_like(loss, dtype=torch.bool)
        self.last_check = 0

    def propose(self, x: Tensor, first: bool, settings: _Settings) -> Tensor:
        """The next iterate: a projected step, then momentum (Algorithm 1, lines 4-5)::

        z = P(x_k + eta * d(grad)),  x_{k+1} = P(x_k + a (z - x_k) + (1 - a)(x_k - x_{k-1}))

        with ``a = 0.75``, or ``a = 1`` on the first step, which has no previous iterate.
        """
        weight = 1.0 if first else _MOMENTUM
        cur = self.current
        direction = ascent_direction(self.grad, settings.norm)
        z = settings.project(cur + _rows(self.step, cur) * direction, x)
        return settings.project(cur + weight * (z - cur) + (1 - weight) * (cur - self.previous), x)

    def accept(self, point: Tensor, loss: Tensor, grad: Tensor) -> None:
        self.previous, self.current, self.grad = self.current, point, grad
        self.increases += loss > self.last_loss
        self.last_loss = loss
        improved = loss > self.best_loss
        self.best_point = torch.where(_rows(improved, point), point, self.best_point)
        self.best_grad = torch.where(_rows(improved, grad), grad, self.best_grad)
        self.best_loss = torch.where(improved, loss, self.best_loss)

    def checkpoint(self, iteration: int, rho: float) -> None:
        """Halve the step size where progress stalled, and resume those samples from their best
        point (Section 3.2, conditions 1 and 2)."""
        window = iteration - self.last_check
        too_few_increases = self.increases < rho * window
        stalled = ~self.halved_at_check & (self.best_loss <= self.best_loss_at_check)
        halve = too_few_increases | stalled
        self.step = torch.where(halve, self.step / 2, self.step)
        self.current = torch.where(_rows(halve, self.current), self.best_point, self.current)
        self.grad = torch.where(_rows(halve, self.grad), self.best_grad, self.grad)
        self.last_loss = torch.where(halve, self.best_loss, self.last_loss)
        self.increases.zero_()
        self.halved_at_check = halve
        self.best_loss_at_check = self.best_loss
        self.last_check = iteration


def _run(
    model: Classifier,
    x: Tensor,
    y: Tensor,
    rows: Tensor,
    outcome: AttackOutcome,
    loss_fn: LossFn,
    settings: _Settings,
    generator: torch.Generator,
) -> None:
    """One APGD run from a random start on the samples ``rows``, recording every iterate."""
    start = settings.project(x + _boundary_start(x, settings.norm, settings.eps, generator), x)
    logits, loss, grad = loss_and_grad(model, start, y, loss_fn)
    outcome.record(rows, start, logits, y, loss)
    ascent = _Ascent(start, loss, grad, settings.eps)
    checkpoints = apgd_checkpoints(settings.steps)
    for iteration in range(1, settings.steps + 1):
        point = ascent.propose(x, first=iteration == 1, settings=settings)
        logits, loss, grad = loss_and_grad(model, point, y, loss_fn)
        outcome.record(rows, point, logits, y, loss)
        ascent.accept(point, loss, grad)
        if iteration in checkpoints:
            ascent.checkpoint(iteration, settings.rho)


def _boundary_start(x: Tensor, norm: NormName, eps: float, generator: torch.Generator) -> Tensor:
    """A random perturbation on the sphere of radius eps, as AutoAttack starts: uniform noise
    rescaled to linf norm eps, or a Gaussian direction of L2 norm eps."""
    tiny = torch.finfo(x.dtype).tiny
    if norm == "linf":
        noise = 2 * cpu_rand(x.shape, x, generator) - 1
        return eps * noise / linf_norms(noise).clamp_min(tiny)
    noise = cpu_randn(x.shape, x, generator)
    return eps * noise / l2_norms(noise).clamp_min(tiny)


def _likely_wrong_classes(logits: Tensor, y: Tensor, n_target_classes: int) -> Tensor:
    """Per sample, the wrong classes by decreasing logit, at most ``n_target_classes`` of them."""
    count = min(n_target_classes, logits.shape[1] - 1)
    is_true = F.one_hot(y, logits.shape[1]).bool()
    wrong_logits = logits.masked_fill(is_true, -math.inf)
    order = wrong_logits.sort(dim=1, descending=True, stable=True).indices
    return order[:, :count]


def _logit_at(logits: Tensor, classes: Tensor) -> Tensor:
    return logits.gather(1, classes[:, None]).squeeze(1)


def _rows(per_sample: Tensor, like: Tensor) -> Tensor:
    """Reshape a per-sample vector to broadcast against a batch shaped like ``like``."""
    return per_sample.view(-1, *([1] * (like.dim() - 1)))


def _check_rho(rho: float) -> None:
    if not 0.0 <= rho <= 1.0:
        raise ValueError(f"rho must lie in [0, 1], got {rho}")
