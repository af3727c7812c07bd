"""Training-time perturbations: projected gradient ascent inside a norm ball.

FGSM with random start is the one-step case. These attacks generate training examples only;
scores come from the independent suite in :mod:`workers.engine.evaluation`.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from workers.engine.attacks.norms import NormBall

Objective = Callable[[Tensor], Tensor]
"""Maps the model's logits on perturbed inputs to the scalar the attacker maximises."""


@dataclass(frozen=True)
class Domain:
    """Elementwise input bounds, broadcastable against a batch."""

    lower: Tensor
    upper: Tensor

    def clamp(self, x: Tensor) -> Tensor:
        return torch.maximum(torch.minimum(x, self.upper), self.lower)

    def to(self, device: torch.device) -> Domain:
        return Domain(self.lower.to(device), self.upper.to(device))


def perturb(
    model: nn.Module,
    x: Tensor,
    objective: Objective,
    *,
    ball: NormBall,
    eps: float,
    alpha: float,
    steps: int,
    domain: Domain,
    random_start: bool = True,
    generator: torch.Generator | None = None,
    autocast: Callable[[], AbstractContextManager[object]] = nullcontext,
) -> Tensor:
    """Return ``x + delta`` after ``steps`` ascent steps on ``objective``, with ``delta`` inside
    the ball and ``x + delta`` inside the domain. Gradients reach the input only."""
    if eps <= 0:
        return x.detach()
    delta = ball.random(x, eps, generator) if random_start else torch.zeros_like(x)
    delta = domain.clamp(x + delta) - x
    for _ in range(steps):
        delta.requires_grad_(True)
        with autocast():
            loss = objective(model(x + delta))
        (grad,) = torch.autograd.grad(loss, delta)
        delta = ball.project(delta.detach() + ball.step(grad.float(), alpha), eps)
        delta = domain.clamp(x + delta) - x
    return (x + delta).detach()
