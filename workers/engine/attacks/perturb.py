"""Training-time perturbations: projected gradient ascent inside a norm ball.

FGSM with random start is the one-step case. These attacks generate training examples only;
scores come from the independent suite in :mod:`workers.engine.evaluation`.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext

import torch
from torch import Tensor, nn

from workers.engine.geometry import Box, NormName, ascent_direction, clip_to_ball, uniform_in_ball

Objective = Callable[[Tensor], Tensor]
"""Maps the model's logits on perturbed inputs to the scalar the attacker maximises."""


def perturb(
    model: nn.Module,
    x: Tensor,
    objective: Objective,
    *,
    norm: NormName,
    eps: float,
    alpha: float,
    steps: int,
    box: Box,
    random_start: bool = True,
    generator: torch.Generator | None = None,
    autocast: Callable[[], AbstractContextManager[object]] = nullcontext,
) -> Tensor:
    """Return ``x + delta`` after ``steps`` ascent steps on ``objective``, with ``delta`` inside
    the ball and ``x + delta`` inside the box. Gradients reach the input only."""
    if eps <= 0:
        return x.detach()
    delta = uniform_in_ball(x, norm, eps, generator) if random_start else torch.zeros_like(x)
    delta = box.clamp(x + delta) - x
    for _ in range(steps):
        delta.requires_grad_(True)
        with autocast():
            loss = objective(model(x + delta))
        (grad,) = torch.autograd.grad(loss, delta)
        step = alpha * ascent_direction(grad.float(), norm)
        delta = box.clamp(x + clip_to_ball(delta.detach() + step, norm, eps)) - x
    return (x + delta).detach()
