"""Training-time perturbations inside a feature schema instead of a norm ball.

The continuous relaxation of the schema (:mod:`workers.engine.tabular.constraints`): each column
moves inside its per-sample interval, in signed-gradient steps measured in its own budget,
binary and categorical columns inside their 0/1 box, immutable columns not at all, linear
constraints kept after every step (each equality's dependent recomputed); the last
iterate is repaired onto the schema (integers rounded, one category per group), so the model
trains on inputs that can exist. Scores come from the independent constrained attacks of
:mod:`workers.engine.tabular.attacks`.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from workers.engine.attacks.perturb import Objective
from workers.engine.geometry import cpu_rand
from workers.engine.tabular.constraints import FeatureConstraints


@dataclass(frozen=True)
class FeatureRegion:
    """Where a training attack may move a tabular sample: ``constraints`` at full budget, reached
    when the (warmed-up) epsilon equals ``full_eps``, the request's epsilon."""

    constraints: FeatureConstraints
    full_eps: float

    def at(self, eps: float) -> FeatureConstraints:
        """The schema's budgets scaled by ``eps / full_eps`` (epsilon warm-up)."""
        return self.constraints.scaled(min(1.0, max(0.0, eps / self.full_eps)))


def perturb_in_region(
    model: nn.Module,
    x: Tensor,
    objective: Objective,
    *,
    region: FeatureRegion,
    eps: float,
    step: float,
    steps: int,
    generator: torch.Generator | None = None,
    autocast: Callable[[], AbstractContextManager[object]] = nullcontext,
) -> Tensor:
    """``steps`` signed-gradient ascent steps on ``objective`` from a random point of the region
    at ``eps``; ``step`` is a share of each column's budget. Returns the repaired last iterate;
    gradients reach the input only."""
    if eps <= 0:
        return x.detach()
    constraints = region.at(eps).to(x.device)
    unit = constraints.step_unit().to(x.dtype)
    noise = 2 * cpu_rand(x.shape, x, generator) - 1
    point = constraints.project(x + noise * unit, x)
    for _ in range(steps):
        point.requires_grad_(True)
        with autocast():
            loss = objective(model(point))
        (grad,) = torch.autograd.grad(loss, point)
        grad = torch.where(torch.isfinite(grad), grad, torch.zeros_like(grad)).float()
        grad = constraints.gradient(grad)
        point = point.detach() + step * unit * grad.sign().to(x.dtype)
        point = constraints.project(point, x)
    return constraints.repair(point.detach(), x)
