"""The Square attack: score-based black-box random search (Andriushchenko et al., ECCV 2020).

Andriushchenko, Croce, Flammarion & Hein, "Square Attack: a query-efficient black-box adversarial
attack via random search", ECCV 2020. It needs only logits, so it is the AutoAttack member that
still works when gradients are masked or obfuscated.

Each iteration proposes, for every sample still classified correctly, a change confined to one
random square window whose area is a fraction ``p`` of the image, and keeps it if the margin
``z_y - max_{j != y} z_j`` decreases. ``p`` follows the paper's piecewise-constant schedule,
halving at fixed fractions of the query budget.

* linf: the start is vertical stripes of ``+-eps``; a proposal sets the window, per channel, to
  ``+eps`` or ``-eps`` (resampled a few times if that would not change the current point).
* l2: the start is a grid of opposite-signed "pseudo-Gaussian" bumps rescaled to norm ``eps``; a
  proposal moves the mass of a second random window into a fresh bump in the first window,
  keeping the norm at ``eps``.

Inputs that are not ``(N, C, H, W)`` are viewed as images: ``(N, F)`` as ``(N, 1, 1, F)`` and
``(N, C, L)`` as ``(N, C, 1, L)``. On such ``1 x W`` strips the window is a run of about
``p * W`` adjacent coordinates (the same area fraction as a square window on an image), so for
tabular data the attack is random search over blocks of consecutive features.

Queries: the start point is the first query, then at most ``queries - 1`` proposals per sample;
the clean forward pass that decides which samples to attack is not counted.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from workers.engine.evaluation.gradient_attacks import default_generator
from workers.engine.evaluation.types import Classifier
from workers.engine.geometry import Box, NormName, clamp_between, per_sample

__all__ = ["square"]

_TINY = 1e-12
_LINF_RESAMPLES = 8
_P_HALVINGS = (10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000)


def square(
    model: Classifier,
    x: Tensor,
    y: Tensor,
    *,
    norm: NormName,
    eps: float,
    box: Box,
    queries: int = 5000,
    p_init: float = 0.8,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Untargeted Square attack with the margin loss; returns ``x_adv`` shaped like ``x``.

    ``x_adv[i]`` is the first misclassified point found for sample ``i`` (within the ``eps`` ball
    and the box), or ``x[i]`` if none was found or ``x[i]`` is already misclassified.
    """
    if norm not in ("linf", "l2"):
        raise ValueError(f"norm must be 'linf' or 'l2', got {norm!r}")
    if not eps >= 0:
        raise ValueError(f"eps must be a non-negative number, got {eps}")
    gen = default_generator() if generator is None else generator
    x0 = x.detach()
    with torch.no_grad():
        correct = model(x0).argmax(dim=1) == y
    out = x0.clone()
    idx = torch.nonzero(correct).squeeze(1)
    if idx.numel() == 0 or eps == 0 or queries < 1:
        return out
    img = _as_image(x0[idx])
    lower, upper = (_as_image(b[idx]) for b in box.broadcast_to(x0))
    search = _Search(model, x0.shape[1:], img, y[idx], (lower, upper), norm, eps, gen)
    search.run(queries, p_init)
    found = per_sample(search.success, img)
    out[idx] = torch.where(found, search.x_best, img).reshape(-1, *x0.shape[1:])
    return out


class _Search:
    """State of the random search over the samples that start out correctly classified."""

    def __init__(
        self,
        model: Classifier,
        sample_shape: torch.Size,
        x: Tensor,
        y: Tensor,
        bounds: tuple[Tensor, Tensor],
        norm: NormName,
        eps: float,
        generator: torch.Generator,
    ) -> None:
        self.model, self.sample_shape = model, sample_shape
        self.x, self.y, self.norm, self.eps, self.gen = x, y, norm, eps, generator
        self.lower, self.upper = bounds
        start = _linf_start if norm == "linf" else _l2_start
        self.x_best = self._fit(start(x, eps, generator), x, self.lower, self.upper)
        self.margin, self.success = self._query(self.x_best, y)

    def run(self, queries: int, p_init: float) -> None:
        for i in range(1, queries):
            live = torch.nonzero(~self.success).squeeze(1)
            if live.numel() == 0:
                return
            p = _p_schedule(p_init, i, queries)
            cand = self._propose(live, p)
            margin, success = self._query(cand, self.y[live])
            better = success | (margin < self.margin[live])
            self.margin[live] = torch.where(better, margin, self.margin[live])
            self.success[live] = success
            self.x_best[live] = torch.where(per_sample(better, cand), cand, self.x_best[live])

    def _propose(self, live: Tensor, p: float) -> Tensor:
        x, best = self.x[live], self.x_best[live]
        lower, upper = self.lower[live], self.upper[live]
        if self.norm == "linf":
            delta = _linf_proposal(x, best, (lower, upper), self.eps, p, self.gen)
        else:
            delta = _l2_proposal(x, best - x, self.eps, p, self.gen)
        return self._fit(x + delta, x, lower, upper)

    def _fit(self, cand: Tensor, x: Tensor, lower: Tensor, upper: Tensor) -> Tensor:
        return _into_ball(clamp_between(cand, lower, upper), x, lower, upper, self.eps, self.norm)

    def _query(self, cand: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        with torch.no_grad():
            logits = self.model(cand.reshape(-1, *self.sample_shape))
        rows = torch.arange(logits.shape[0], device=logits.device)
        true = logits[rows, y]
        others = logits.clone()
        others[rows, y] = -float("inf")
        return true - others.amax(dim=1), logits.argmax(dim=1) != y


def _p_schedule(p_init: float, i: int, queries: int) -> float:
    """Fraction of pixels per window: ``p_init`` halved at each passed point of a 10k scale."""
    scaled = int(i / queries * 10000)
    return p_init / 2 ** sum(scaled > t for t in _P_HALVINGS)


def _window_shape(p: float, h: int, w: int, norm: NormName) -> tuple[int, int]:
    """Window covering about ``p * h * w`` pixels: a square if it fits, else a strip.

    The l2 window is at least 3 wide and of odd side (as in the paper), where the image allows.
    """
    area = p * h * w
    side = round(math.sqrt(area))
    if side <= min(h, w):
        sh = sw = side
    elif h <= w:
        sh, sw = h, round(area / h)
    else:
        sh, sw = round(area / w), w
    smallest = 1 if norm == "linf" else 3
    return _side(sh, smallest, h, norm), _side(sw, smallest, w, norm)


def _side(s: int, smallest: int, limit: int, norm: NormName) -> int:
    s = max(s, smallest)
    if norm == "l2" and s % 2 == 0:
        s += 1
    return min(s, limit)


def _window_mask(
    top: Tensor, left: Tensor, shape: tuple[int, int], h: int, w: int, like: Tensor
) -> Tensor:
    """``(n, 1, h, w)`` boolean masks of the window with corner ``(top, left)`` per sample."""
    in_rows = (torch.arange(h) >= top[:, None]) & (torch.arange(h) < top[:, None] + shape[0])
    in_cols = (torch.arange(w) >= left[:, None]) & (torch.arange(w) < left[:, None] + shape[1])
    return (in_rows[:, :, None] & in_cols[:, None, :]).unsqueeze(1).to(like.device)


def _window_corners(
    n: int, h: int, w: int, shape: tuple[int, int], gen: torch.Generator
) -> tuple[Tensor, Tensor]:
    top = torch.randint(0, h - shape[0] + 1, (n,), generator=gen)
    left = torch.randint(0, w - shape[1] + 1, (n,), generator=gen)
    return top, left


def _random_signs(shape: tuple[int, ...], gen: torch.Generator, like: Tensor) -> Tensor:
    signs = torch.randint(0, 2, shape, generator=gen).to(like.dtype) * 2 - 1
    return signs.to(like.device)


def _linf_start(x: Tensor, eps: float, gen: torch.Generator) -> Tensor:
    """Vertical stripes: one random sign per (sample, channel, column)."""
    n, c, _, w = x.shape
    return x + eps * _random_signs((n, c, 1, w), gen, x)


def _linf_proposal(
    x: Tensor,
    best: Tensor,
    bounds: tuple[Tensor, Tensor],
    eps: float,
    p: float,
    gen: torch.Generator,
) -> Tensor:
    """New perturbation: one window set to ``+-eps`` per channel, resampled if it is a no-op."""
    n, c, h, w = x.shape
    shape = _window_shape(p, h, w, "linf")
    mask = _window_mask(*_window_corners(n, h, w, shape, gen), shape, h, w, x)
    delta = best - x
    cand = torch.where(mask, eps * _random_signs((n, c, 1, 1), gen, x), delta)
    for _ in range(_LINF_RESAMPLES):
        same = (clamp_between(x + cand, *bounds) == best).flatten(1).all(dim=1)
        if not same.any():
            break
        redraw = torch.where(mask, eps * _random_signs((n, c, 1, 1), gen, x), delta)
        cand = torch.where(per_sample(same, cand), redraw, cand)
    return cand


def _l2_start(x: Tensor, eps: float, gen: torch.Generator) -> Tensor:
    """A grid of bumps with random signs per (sample, channel, tile), rescaled to norm ``eps``.

    Tiles are ``h // 5 x w // 5`` (at least 1), laid out from a centred offset as in the paper.
    """
    n, c, h, w = x.shape
    th, tw = max(h // 5, 1), max(w // 5, 1)
    rows, cols = h // th, w // tw
    bumps = torch.stack((_bump(th, tw, 0), _bump(th, tw, 1))).to(x.dtype)
    pick = torch.randint(0, 2, (n, 1, rows, cols), generator=gen)
    tiles = bumps[pick] * _random_signs((n, c, rows, cols), gen, bumps)[..., None, None]
    grid = tiles.permute(0, 1, 2, 4, 3, 5).reshape(n, c, rows * th, cols * tw)
    top, left = max(0, (h - 5 * th) // 2), max(0, (w - 5 * tw) // 2)
    grid = F.pad(grid, (left, max(0, w - left - cols * tw), top, max(0, h - top - rows * th)))
    delta = grid[:, :, :h, :w].to(x.device)
    return x + delta * per_sample(eps / _l2(delta).clamp_min(_TINY), delta)


def _l2_proposal(x: Tensor, delta: Tensor, eps: float, p: float, gen: torch.Generator) -> Tensor:
    """Move the energy of window 2 and of window 1 into a fresh bump placed at window 1.

    The new window-1 content has, per channel, the energy the two windows held plus an equal
    share of the budget not yet used, so that the whole perturbation has norm ``eps`` again.
    """
    n, c, h, w = x.shape
    shape = _window_shape(p, h, w, "l2")
    top, left = _window_corners(n, h, w, shape, gen)
    rows = (top[:, None] + torch.arange(shape[0])).to(x.device)
    cols = (left[:, None] + torch.arange(shape[1])).to(x.device)
    samples = torch.arange(n, device=x.device)[:, None, None]
    index1 = (samples, slice(None), rows[:, :, None], cols[:, None, :])
    mask1 = _window_mask(top, left, shape, h, w, x)
    mask2 = _window_mask(*_window_corners(n, h, w, shape, gen), shape, h, w, x)
    window1 = delta[index1].permute(0, 3, 1, 2)
    union_energy = (delta * (mask1 | mask2)).square().sum(dim=(2, 3), keepdim=True)
    spare = (eps**2 - _l2(delta).square()).clamp_min(0.0)
    fresh = _bump_batch(n, shape, gen, x) * _random_signs((n, c, 1, 1), gen, x)
    fresh = fresh + window1 / _l2_per_channel(window1).clamp_min(_TINY)
    target = (per_sample(spare, fresh) / c + union_energy).sqrt()
    fresh = fresh / _l2_per_channel(fresh).clamp_min(_TINY) * target
    moved = delta.masked_fill(mask2, 0.0)
    moved[index1] = fresh.permute(0, 2, 3, 1)
    return moved * per_sample(eps / _l2(moved).clamp_min(_TINY), moved)


def _bump_batch(n: int, shape: tuple[int, int], gen: torch.Generator, like: Tensor) -> Tensor:
    """``(n, 1, sh, sw)`` bumps, each split along a randomly chosen axis."""
    bumps = torch.stack((_bump(*shape, 0), _bump(*shape, 1))).to(like.dtype)
    pick = torch.randint(0, 2, (n,), generator=gen)
    return bumps[pick].unsqueeze(1).to(like.device)


def _bump(sh: int, sw: int, axis: int) -> Tensor:
    """Unit-norm ``sh x sw`` pattern: two halves along ``axis`` with opposite-signed mounds."""
    if axis == 0:
        first, second = _mound(sh // 2, sw), _mound(sh - sh // 2, sw)
    else:
        first, second = _mound(sh, sw // 2), _mound(sh, sw - sw // 2)
    pattern = torch.cat((first, -second), dim=axis)
    return pattern / torch.linalg.vector_norm(pattern).clamp_min(_TINY)


def _mound(a: int, b: int) -> Tensor:
    """Unit-norm ``a x b`` mound: sum of centred nested rectangles of weight ``1 / (k + 1)^2``.

    A cell at Chebyshev distance ``d`` from the centre lies in rectangles ``k = d .. K - 1``.
    """
    if a == 0 or b == 0:
        return torch.zeros(a, b, dtype=torch.float64)
    levels = max(a // 2, b // 2) + 1
    weights = 1.0 / torch.arange(1, levels + 1, dtype=torch.float64).square()
    tail = weights.flip(0).cumsum(0).flip(0)
    dist_rows = (torch.arange(a) - a // 2).abs()
    dist_cols = (torch.arange(b) - b // 2).abs()
    mound = tail[torch.maximum(dist_rows[:, None], dist_cols[None, :])]
    return mound / torch.linalg.vector_norm(mound)


def _into_ball(
    cand: Tensor, x: Tensor, lower: Tensor, upper: Tensor, eps: float, norm: NormName
) -> Tensor:
    """Pull ``cand`` (already in the box) into the ball exactly as the norm is measured.

    Rounding in ``x + delta`` can leave ``|cand - x|`` an ulp beyond ``eps``; those points are
    moved towards ``x`` until the measured distance is within ``eps``.
    """
    if norm == "linf":
        cand = torch.minimum(torch.maximum(cand, x - eps), x + eps)
        for _ in range(4):
            over = (cand - x).abs() > eps
            if not over.any():
                break
            cand = torch.where(over, torch.nextafter(cand, x), cand)
        return cand
    for _ in range(4):
        size = _l2(cand - x)
        over = size > eps
        if not over.any():
            break
        shrink = eps / size.clamp_min(_TINY) * (1 - 1e-6)
        scaled = clamp_between(x + (cand - x) * per_sample(shrink, cand), lower, upper)
        cand = torch.where(per_sample(over, cand), scaled, cand)
    return cand


def _as_image(v: Tensor) -> Tensor:
    if v.dim() == 4:
        return v
    if v.dim() == 2:
        return v.reshape(v.shape[0], 1, 1, v.shape[1])
    if v.dim() == 3:
        return v.unsqueeze(2)
    raise ValueError(
        f"square expects inputs shaped (N, F), (N, C, L) or (N, C, H, W); got {v.shape}"
    )


def _l2(v: Tensor) -> Tensor:
    return torch.linalg.vector_norm(v.flatten(1), ord=2, dim=1)


def _l2_per_channel(v: Tensor) -> Tensor:
    return torch.linalg.vector_norm(v, ord=2, dim=(2, 3), keepdim=True)
