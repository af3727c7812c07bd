"""White-box gradient attacks for robustness evaluation: FGSM and PGD.

The building blocks every evaluation attack shares also live here (``apgd.py`` reuses them): the
losses and :class:`AttackOutcome`, the per-sample bookkeeping behind the common contract (the
geometry of balls and box is :mod:`workers.engine.geometry`):

* a sample misclassified at ``x`` comes back unchanged;
* a sample keeps the first misclassified iterate found by any restart, and later restarts run
  only on the samples still classified correctly;
* any other sample comes back as the highest-loss point seen (``x`` itself if nothing beat it);
* every returned point lies in the eps-ball around ``x`` and in the box, exactly in floating
  point, not just up to rounding.

All randomness is drawn on the CPU from the caller's ``torch.Generator`` and then moved to the
device of ``x``, so results are reproducible and CPU and CUDA share one code path.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from workers.engine.evaluation.types import Classifier
from workers.engine.geometry import Box, NormName, ascent_direction, project, uniform_in_ball

LossFn = Callable[[Tensor, Tensor], Tensor]
"""A per-sample loss to maximise, computed from logits ``(N, C)`` and labels ``(N,)``."""


def cross_entropy_loss(logits: Tensor, y: Tensor) -> Tensor:
    return F.cross_entropy(logits, y, reduction="none")


def margin_loss(logits: Tensor, y: Tensor) -> Tensor:
    """The Carlini-Wagner margin ``max_{j != y} z_j - z_y``; positive means misclassified.

    Taken on logits, never on probabilities: once softmax saturates its gradient vanishes while
    the logit margin still points the way (Carlini & Wagner, S&P 2017).
    """
    true_logit = logits.gather(1, y[:, None]).squeeze(1)
    is_true = F.one_hot(y, logits.shape[1]).bool()
    best_other = logits.masked_fill(is_true, float("-inf")).amax(dim=1)
    return best_other - true_logit


def fgsm(
    model: Classifier,
    x: Tensor,
    y: Tensor,
    *,
    norm: NormName,
    eps: float,
    box: Box,
    loss: Literal["ce", "cw"] = "ce",
    generator: torch.Generator | None = None,
) -> Tensor:
    """One gradient step of length ``eps`` from ``x`` (Goodfellow et al., ICLR 2015).

    The step is the gradient sign for linf and the L2-normalised gradient for l2. Following the
    common contract, a sample the step does not fool keeps the step only if it raised the loss.
    ``generator`` is accepted so every attack shares one call signature; FGSM draws nothing.
    """
    del generator
    check_arguments(norm=norm, eps=eps, steps=1, restarts=1)
    loss_fn = _untargeted_loss(loss)
    x, y, box, clean_logits = prepare_inputs(model, x, y, box)
    outcome = AttackOutcome.for_clean_point(x, y, clean_logits, loss_fn(clean_logits, y))
    rows = outcome.pending()
    if rows.numel() > 0:
        x_rows, y_rows = x[rows], y[rows]
        _, _, grad = loss_and_grad(model, x_rows, y_rows, loss_fn)
        stepped = x_rows + eps * ascent_direction(grad, norm)
        candidate = project(stepped, x_rows, norm=norm, eps=eps, box=box)
        logits, loss_value = _loss_without_grad(model, candidate, y_rows, loss_fn)
        outcome.record(rows, candidate, logits, y_rows, loss_value)
    return outcome.x_adv


def pgd(
    model: Classifier,
    x: Tensor,
    y: Tensor,
    *,
    norm: NormName,
    eps: float,
    box: Box,
    loss: Literal["ce", "cw"] = "ce",
    steps: int = 50,
    step_size: float | None = None,
    restarts: int = 1,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Projected gradient ascent from a uniform random start (Madry et al., ICLR 2018).

    ``loss="cw"`` ascends the logit margin instead of cross-entropy. ``step_size`` defaults to
    ``2.5 * eps / steps``, enough to cross the ball from any start. Every restart, including the
    first, starts at a point drawn uniformly from the ball.
    """
    check_arguments(norm=norm, eps=eps, steps=steps, restarts=restarts)
    loss_fn = _untargeted_loss(loss)
    alpha = 2.5 * eps / steps if step_size is None else step_size
    if alpha < 0:
        raise ValueError(f"step_size must be non-negative, got {step_size}")
    generator = default_generator() if generator is None else generator
    x, y, box, clean_logits = prepare_inputs(model, x, y, box)
    outcome = AttackOutcome.for_clean_point(x, y, clean_logits, loss_fn(clean_logits, y))
    for _ in range(restarts):
        rows = outcome.pending()
        if rows.numel() == 0:
            break
        x_rows, y_rows = x[rows], y[rows]
        start = x_rows + uniform_in_ball(x_rows, norm, eps, generator)
        current = project(start, x_rows, norm=norm, eps=eps, box=box)
        for _ in range(steps):
            logits, loss_value, grad = loss_and_grad(model, current, y_rows, loss_fn)
            outcome.record(rows, current, logits, y_rows, loss_value)
            stepped = current + alpha * ascent_direction(grad, norm)
            current = project(stepped, x_rows, norm=norm, eps=eps, box=box)
        logits, loss_value = _loss_without_grad(model, current, y_rows, loss_fn)
        outcome.record(rows, current, logits, y_rows, loss_value)
    return outcome.x_adv


def default_generator() -> torch.Generator:
    return torch.Generator(device="cpu").manual_seed(0)


class AttackOutcome:
    """Per-sample answer of an attack across all its restarts.

    ``settled`` marks samples whose answer is final: misclassified at ``x`` (answer ``x``), or
    fooled by some iterate (answer: the first such iterate). Unsettled samples hold the
    highest-loss point recorded so far.
    """

    def __init__(self, x: Tensor, settled: Tensor, best_loss: Tensor) -> None:
        self.x_adv = x.detach().clone()
        self.settled = settled.clone()
        self.best_loss = best_loss.detach().clone()

    @classmethod
    def for_clean_point(
        cls, x: Tensor, y: Tensor, clean_logits: Tensor, clean_loss: Tensor
    ) -> AttackOutcome:
        return cls(x, clean_logits.argmax(dim=1) != y, clean_loss)

    def pending(self) -> Tensor:
        return (~self.settled).nonzero().squeeze(1)

    def record(self, rows: Tensor, points: Tensor, logits: Tensor, y: Tensor, loss: Tensor) -> None:
        """Take in iterates ``points`` of the samples at indices ``rows``."""
        with torch.no_grad():
            open_ = ~self.settled[rows]
            fooled = open_ & (logits.argmax(dim=1) != y)
            better = open_ & ~fooled & (loss > self.best_loss[rows])
            take = fooled | better
            self.x_adv[rows[take]] = points[take].detach()
            self.best_loss[rows[better]] = loss[better].detach()
            self.settled[rows[fooled]] = True


def prepare_inputs(
    model: Classifier, x: Tensor, y: Tensor, box: Box
) -> tuple[Tensor, Tensor, Box, Tensor]:
    """Detach ``x``, move labels and box next to it, and classify it once without gradients."""
    if y.shape != x.shape[:1]:
        raise ValueError(f"y must have shape ({x.shape[0]},), got {tuple(y.shape)}")
    x = x.detach()
    y = y.to(device=x.device, dtype=torch.long)
    box = Box(
        box.lower.to(device=x.device, dtype=x.dtype), box.upper.to(device=x.device, dtype=x.dtype)
    )
    with torch.no_grad():
        logits = model(x)
    return x, y, box, logits


def check_arguments(*, norm: str, eps: float, steps: int, restarts: int) -> None:
    if norm not in ("linf", "l2"):
        raise ValueError(f"norm must be 'linf' or 'l2', got {norm!r}")
    if not eps >= 0 or eps == float("inf"):
        raise ValueError(f"eps must be finite and non-negative, got {eps}")
    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}")
    if restarts < 1:
        raise ValueError(f"restarts must be at least 1, got {restarts}")


def _untargeted_loss(name: str) -> LossFn:
    losses: dict[str, LossFn] = {"ce": cross_entropy_loss, "cw": margin_loss}
    if name not in losses:
        raise ValueError(f"loss must be 'ce' or 'cw', got {name!r}")
    return losses[name]


def loss_and_grad(
    model: Classifier, points: Tensor, y: Tensor, loss_fn: LossFn
) -> tuple[Tensor, Tensor, Tensor]:
    """Logits, per-sample loss and its gradient w.r.t. the input only."""
    points = points.detach().requires_grad_(True)
    with torch.enable_grad():
        logits = model(points)
        loss = loss_fn(logits, y)
        (grad,) = torch.autograd.grad(loss.sum(), points)
    return logits.detach(), loss.detach(), grad.detach()


def _loss_without_grad(
    model: Classifier, points: Tensor, y: Tensor, loss_fn: LossFn
) -> tuple[Tensor, Tensor]:
    with torch.no_grad():
        logits = model(points)
        return logits, loss_fn(logits, y)
