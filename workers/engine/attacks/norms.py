"""Step rules for the training-time attacks, one per threat-model norm.

A :class:`NormBall` knows how to draw a random start inside the ball, take an ascent step along
a gradient, and project back onto the ball. Clipping to the input domain is separate (``clamp``)
and always comes after projection, which keeps the point inside both sets.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch
from torch import Tensor

from workers.engine.spec import Norm


def _flat_norm(t: Tensor) -> Tensor:
    """Per-sample L2 norm, shaped to broadcast against ``t``."""
    norms = t.flatten(1).norm(dim=1).clamp_min(1e-12)
    return norms.view(-1, *([1] * (t.dim() - 1)))


class NormBall(Protocol):
    def random(self, like: Tensor, eps: float, generator: torch.Generator | None) -> Tensor: ...

    def step(self, grad: Tensor, alpha: float) -> Tensor: ...

    def project(self, delta: Tensor, eps: float) -> Tensor: ...


@dataclass(frozen=True)
class LinfBall:
    def random(self, like: Tensor, eps: float, generator: torch.Generator | None) -> Tensor:
        noise = torch.rand(like.shape, generator=generator, dtype=like.dtype).to(like.device)
        return (2 * noise - 1) * eps

    def step(self, grad: Tensor, alpha: float) -> Tensor:
        return alpha * grad.sign()

    def project(self, delta: Tensor, eps: float) -> Tensor:
        return delta.clamp(-eps, eps)


@dataclass(frozen=True)
class L2Ball:
    def random(self, like: Tensor, eps: float, generator: torch.Generator | None) -> Tensor:
        """Uniform in the ball: a Gaussian direction scaled by a radius drawn as U^(1/d)."""
        direction = torch.randn(like.shape, generator=generator, dtype=like.dtype).to(like.device)
        dims = like[0].numel()
        radius = torch.rand(like.shape[0], generator=generator, dtype=like.dtype) ** (1.0 / dims)
        radius = radius.to(like.device).view(-1, *([1] * (like.dim() - 1)))
        return direction / _flat_norm(direction) * radius * eps

    def step(self, grad: Tensor, alpha: float) -> Tensor:
        return alpha * grad / _flat_norm(grad)

    def project(self, delta: Tensor, eps: float) -> Tensor:
        norms = _flat_norm(delta)
        return delta * torch.clamp(eps / norms, max=1.0)


def ball(norm: Norm) -> NormBall:
    return LinfBall() if norm is Norm.LINF else L2Ball()
