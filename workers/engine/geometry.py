"""The threat model's geometry: the input box and the norm balls around each input.

One definition for the attacks that make training examples (:mod:`workers.engine.attacks`) and
the attacks that grade a model (:mod:`workers.engine.evaluation`). The algorithms stay apart (a
model graded by the code that trained it is not graded); what a ball *is* does not. The suite
still checks every point an attack returns against the threat model with code of its own.

Two projections: :func:`clip_to_ball` is the cheap one training steps use, exact up to rounding;
:func:`project` is the one evaluation attacks use, exact in floating point, so that a point an
attack reports lies in the ball however a reviewer measures it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

NormName = Literal["linf", "l2"]

_MAX_ROUNDING_REPAIRS = 10


@dataclass(frozen=True)
class Box:
    """The input domain: elementwise ``lower <= x <= upper``.

    ``lower`` and ``upper`` broadcast against one batch of inputs: a scalar tensor, or one value
    per channel shaped ``(1, C, 1, 1)``, or per feature shaped ``(1, F)``.
    """

    lower: Tensor
    upper: Tensor

    def clamp(self, x: Tensor) -> Tensor:
        return clamp_between(x, self.lower, self.upper)

    def broadcast_to(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``lower`` and ``upper`` on ``x``'s device and dtype, one bound per entry of ``x``."""
        lower = self.lower.to(device=x.device, dtype=x.dtype)
        upper = self.upper.to(device=x.device, dtype=x.dtype)
        return torch.broadcast_to(lower, x.shape), torch.broadcast_to(upper, x.shape)

    def to(self, device: torch.device | str, dtype: torch.dtype | None = None) -> Box:
        return Box(
            self.lower.to(device=device, dtype=dtype), self.upper.to(device=device, dtype=dtype)
        )


def clamp_between(z: Tensor, lower: Tensor, upper: Tensor) -> Tensor:
    """``z`` clamped elementwise to ``[lower, upper]`` (tensors, broadcast against ``z``)."""
    return torch.maximum(torch.minimum(z, upper), lower)


def per_sample(values: Tensor, like: Tensor) -> Tensor:
    """One value per sample, shaped to broadcast against the batch ``like``."""
    return values.reshape(-1, *([1] * (like.dim() - 1)))


def l2_norms(t: Tensor) -> Tensor:
    """Per-sample L2 norms, shaped to broadcast against ``t``."""
    norms = torch.linalg.vector_norm(t.flatten(1), dim=1)
    return norms.view(-1, *([1] * (t.dim() - 1)))


def linf_norms(t: Tensor) -> Tensor:
    """Per-sample L-infinity norms, shaped to broadcast against ``t``."""
    norms = t.flatten(1).abs().amax(dim=1)
    return norms.view(-1, *([1] * (t.dim() - 1)))


def ascent_direction(grad: Tensor, norm: NormName) -> Tensor:
    """The steepest-ascent direction of unit norm: the gradient sign (linf), or the normalised
    gradient (l2). Non-finite gradient entries carry no usable direction and count as zero."""
    grad = torch.where(torch.isfinite(grad), grad, torch.zeros_like(grad))
    if norm == "linf":
        return grad.sign()
    return grad / l2_norms(grad).clamp_min(torch.finfo(grad.dtype).tiny)


def uniform_in_ball(
    like: Tensor, norm: NormName, eps: float, generator: torch.Generator | None
) -> Tensor:
    """A perturbation drawn uniformly from the eps-ball (before clamping to the box): uniform
    per entry (linf), or a Gaussian direction with a radius drawn as U^(1/d) (l2)."""
    if norm == "linf":
        return eps * (2 * cpu_rand(like.shape, like, generator) - 1)
    direction = cpu_randn(like.shape, like, generator)
    direction = direction / l2_norms(direction).clamp_min(torch.finfo(like.dtype).tiny)
    features = max(like[0].numel(), 1)
    radius = cpu_rand((like.shape[0],), like, generator).pow(1.0 / features)
    return eps * direction * radius.view(-1, *([1] * (like.dim() - 1)))


def clip_to_ball(delta: Tensor, norm: NormName, eps: float) -> Tensor:
    """``delta`` pulled into the eps-ball: clamped (linf) or rescaled (l2)."""
    if norm == "linf":
        return delta.clamp(-eps, eps)
    scale = (eps / l2_norms(delta).clamp_min(torch.finfo(delta.dtype).tiny)).clamp(max=1.0)
    return delta * scale


def project(x_adv: Tensor, x: Tensor, *, norm: NormName, eps: float, box: Box) -> Tensor:
    """Project ``x_adv`` onto the eps-ball around ``x``, then clamp it to ``box``.

    With ``x`` inside the box, clamping after projecting cannot leave the ball. The result
    satisfies both constraints exactly in floating point: the radius is rounded down to the
    dtype and the last few rounding errors of ``x + delta`` are undone, so a check such as
    ``(x_adv - x).abs() <= eps`` holds without a tolerance. Non-finite entries fall back to ``x``.
    """
    radius = _representable_radius(eps, x.dtype)
    x_adv = torch.where(torch.isfinite(x_adv), x_adv, x)
    if norm == "linf":
        inside = torch.minimum(torch.maximum(x_adv, x - radius), x + radius)
    else:
        inside = x + clip_to_ball(x_adv - x, norm, radius)
    return _undo_rounding(box.clamp(inside), x, norm=norm, radius=radius, box=box)


def cpu_rand(
    shape: tuple[int, ...] | torch.Size, like: Tensor, gen: torch.Generator | None
) -> Tensor:
    """Uniform draws made on the CPU with ``gen``, then moved to ``like``'s device and dtype:
    the same numbers on CPU and CUDA for the same seed."""
    draw = torch.rand(shape, generator=gen, dtype=like.dtype, device="cpu")
    return draw.to(like.device)


def cpu_randn(
    shape: tuple[int, ...] | torch.Size, like: Tensor, gen: torch.Generator | None
) -> Tensor:
    """Standard normal draws made on the CPU with ``gen``, then moved next to ``like``."""
    draw = torch.randn(shape, generator=gen, dtype=like.dtype, device="cpu")
    return draw.to(like.device)


def _representable_radius(eps: float, dtype: torch.dtype) -> float:
    """The largest value of ``dtype`` not above ``eps``: a radius rounded up (0.1 in float32 is
    0.10000000149) would let points leave the ball that callers check in exact arithmetic."""
    radius = torch.tensor(eps, dtype=torch.float64).to(dtype)
    if radius.item() > eps:
        radius = torch.nextafter(radius, torch.zeros_like(radius))
    return radius.item()


def _outside_ball(points: Tensor, x: Tensor, norm: NormName, radius: float) -> Tensor:
    """Which entries (linf) or samples (l2, shaped to broadcast) exceed ``radius``, judged both in
    the working dtype and in float64 so that either way of checking agrees."""
    delta, delta64 = points - x, points.double() - x.double()
    if norm == "linf":
        return (delta.abs() > radius) | (delta64.abs() > radius)
    return (l2_norms(delta) > radius) | (l2_norms(delta64) > radius)


def _undo_rounding(points: Tensor, x: Tensor, *, norm: NormName, radius: float, box: Box) -> Tensor:
    """Pull back points that rounding in ``x + delta`` left just outside the ball.

    linf moves the offending entries one unit in the last place towards ``x``; l2 rescales the
    offending samples' perturbation by a factor just below the needed one, shrinking a little more
    on each pass. Anything still outside after a few passes falls back to ``x``.
    """
    for attempt in range(_MAX_ROUNDING_REPAIRS):
        outside = _outside_ball(points, x, norm, radius)
        if not bool(outside.any()):
            return points
        if norm == "linf":
            repaired = torch.nextafter(points, x)
        else:
            delta = points - x
            slack = 1.0 - torch.finfo(x.dtype).eps * 4.0**attempt
            scale = radius / l2_norms(delta).clamp_min(torch.finfo(x.dtype).tiny) * slack
            repaired = box.clamp(x + delta * scale)
        points = torch.where(outside, repaired, points)
    return torch.where(_outside_ball(points, x, norm, radius), x, points)
