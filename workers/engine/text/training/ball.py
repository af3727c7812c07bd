"""The per-token ball that embedding-space training perturbs in.

Each real token's embedding may move by at most ``radius`` in L2; padding never moves. The
radius is ``eps`` times the mean L2 norm of the batch's real-token embeddings, so one ``eps``
means the same share of an embedding's size whatever the model's scale (an embedding trained
to norms near 1 and one near 30 get the same relative budget), and the ball grows with the
embeddings as training grows them.
"""

from __future__ import annotations

import torch
from torch import Tensor


def token_radius(embedded: Tensor, mask: Tensor, eps: float) -> Tensor:
    """``eps`` times the mean L2 norm of the real tokens' embeddings (a detached scalar);
    ``mask`` is [B, T, 1] floats."""
    norms = torch.linalg.vector_norm(embedded.detach().float(), dim=-1, keepdim=True)
    mean = (norms * mask).sum() / mask.sum().clamp_min(1.0)
    return eps * mean


def random_start(embedded: Tensor, mask: Tensor, radius: Tensor, gen: torch.Generator) -> Tensor:
    """A perturbation drawn uniformly from each real token's ball, zero at padding."""
    shape = embedded.shape
    direction = torch.randn(shape, generator=gen, dtype=torch.float32)
    direction = direction / torch.linalg.vector_norm(direction, dim=-1, keepdim=True).clamp_min(
        1e-12
    )
    scale = torch.rand((*shape[:2], 1), generator=gen, dtype=torch.float32) ** (1.0 / shape[-1])
    delta = direction.to(embedded.device) * scale.to(embedded.device) * radius
    return delta * mask


def ascent_direction(grad: Tensor, mask: Tensor) -> Tensor:
    """Per token, the gradient scaled to unit L2 norm: steepest ascent in a product of balls.
    Padding and non-finite gradients give no direction."""
    grad = torch.where(torch.isfinite(grad), grad, torch.zeros_like(grad))
    norms = torch.linalg.vector_norm(grad, dim=-1, keepdim=True)
    return grad / norms.clamp_min(1e-12) * mask


def clip_tokens(delta: Tensor, mask: Tensor, radius: Tensor) -> Tensor:
    """Each token's perturbation scaled back into its ball; padding set to zero."""
    norms = torch.linalg.vector_norm(delta, dim=-1, keepdim=True)
    scale = (radius / norms.clamp_min(1e-12)).clamp(max=1.0)
    return delta * scale * mask
