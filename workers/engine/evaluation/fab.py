"""FAB-T: the targeted Fast Adaptive Boundary attack, as AutoAttack's standard version runs it.

Croce & Hein, "Minimally distorted adversarial examples with a fast adaptive boundary attack",
ICML 2020; the targeted variant and its use in AutoAttack are from Croce & Hein, "Reliable
evaluation of adversarial robustness with an ensemble of diverse parameter-free attacks",
ICML 2020.

FAB searches for the adversarial point of *smallest* norm. Each step linearises the decision
boundary between the true class and one target class at the current iterate, projects both the
iterate and the original point onto that hyperplane intersected with the input box, and moves to
a convex combination of the two projections (biased towards the original point), overshooting by
``eta``. Whenever the iterate is adversarial it is recorded if it beats the best norm so far and
pulled back towards the original point by ``beta``.

At a budget ``eps`` a sample counts as broken only if the smallest adversarial point found is at
norm ``<= eps``; :func:`fab_targeted` stops working on a sample as soon as that happens.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from workers.engine.evaluation.gradient_attacks import default_generator
from workers.engine.evaluation.types import Classifier
from workers.engine.geometry import Box, NormName, clamp_between, per_sample

__all__ = ["fab_targeted", "fab_targeted_min_norm", "project_to_hyperplane_in_box"]

_TINY = 1e-12


@dataclass(frozen=True)
class _FabConfig:
    norm: NormName
    steps: int
    restarts: int
    alpha_max: float
    eta: float
    beta: float


def fab_targeted(
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
    alpha_max: float = 0.1,
    eta: float = 1.05,
    beta: float = 0.9,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Run FAB-T and return, per sample, an adversarial point within ``eps`` if one was found.

    The targets are the ``n_target_classes`` (capped at classes - 1) classes with the highest
    clean logits other than ``y``, attacked one after another, each with ``restarts`` runs of
    ``steps`` iterations; only samples not yet broken within ``eps`` are attacked further. The
    first run per target starts at ``x``; later runs start at a random point at radius ``eps / 2``
    (as AutoAttack does). Samples not broken, and samples misclassified at ``x``, come back
    equal to ``x``.
    """
    _check_eps(eps)
    cfg = _config(norm, steps, restarts, alpha_max, eta, beta)
    if eps == 0:
        return x.detach().clone()
    x_min, dist = _fab_search(model, x, y, box, cfg, n_target_classes, eps, eps, generator)
    broken = per_sample(dist <= eps, x)
    return torch.where(broken, x_min, x.detach())


def fab_targeted_min_norm(
    model: Classifier,
    x: Tensor,
    y: Tensor,
    *,
    norm: NormName,
    box: Box,
    n_target_classes: int = 9,
    steps: int = 100,
    restarts: int = 1,
    alpha_max: float = 0.1,
    eta: float = 1.05,
    beta: float = 0.9,
    start_radius: float | None = None,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    """Run FAB-T without a budget and return the smallest adversarial points it found.

    Returns ``(x_min, dist)``: ``dist[i]`` is the ``norm`` distance from ``x[i]`` to ``x_min[i]``;
    it is ``0`` (and ``x_min[i] == x[i]``) for samples misclassified at ``x`` and ``inf`` (again
    with ``x_min[i] == x[i]``) where no adversarial point was found. Random restarts (runs after the
    first per target) start at radius ``min(best distance so far, start_radius) / 2``; with
    neither finite they start at ``x``.
    """
    if start_radius is not None:
        _check_eps(start_radius)
    cfg = _config(norm, steps, restarts, alpha_max, eta, beta)
    radius = float("inf") if start_radius is None else start_radius
    return _fab_search(model, x, y, box, cfg, n_target_classes, 0.0, radius, generator)


def project_to_hyperplane_in_box(
    t: Tensor, w: Tensor, delta: Tensor, lower: Tensor, upper: Tensor, norm: NormName
) -> Tensor:
    """Return the smallest step ``d`` (in ``norm``) with ``w . d = delta`` and ``t + d`` in the box.

    All of ``t, w, lower, upper`` are ``(n, D)`` with ``lower <= t <= upper``; ``delta`` is
    ``(n,)``. This is the exact projection of FAB (Croce & Hein 2020, Sec. 3.1 and the
    appendix): moving coordinate ``i`` in the direction of ``sign(w_i)`` changes ``w . d`` at rate
    ``|w_i|`` until it reaches its bound, so the achievable change as a function of the step's
    linf radius (l2: of the Lagrange multiplier, ``d_i = clip(mu * w_i)``) is piecewise linear,
    concave and increasing. One sort of the breakpoints plus cumulative sums give the smallest
    radius (multiplier) that reaches ``|delta|``. If the hyperplane does not meet the box, every
    coordinate moves to its bound towards the hyperplane (the box point closest to it), as in the
    paper.
    """
    side = torch.where(delta >= 0, 1.0, -1.0).to(w.dtype).unsqueeze(1)
    w_side = w * side
    need = delta.abs()
    room = torch.where(w_side > 0, upper - t, t - lower).clamp_min(0.0)
    room = torch.where(w_side == 0, torch.zeros_like(room), room)
    weight = w_side.abs()
    if norm == "linf":
        level, feasible = _smallest_level(room, weight, need)
        step = torch.minimum(level.unsqueeze(1), room)
    else:
        safe = torch.where(weight > 0, weight, torch.ones_like(weight))
        knots = torch.where(weight > 0, room / safe, torch.zeros_like(room))
        level, feasible = _smallest_level(knots, weight * weight, need)
        reach = torch.where(feasible, level, torch.zeros_like(level)).unsqueeze(1) * weight
        step = torch.where(feasible.unsqueeze(1), torch.minimum(reach, room), room)
    return torch.sign(w_side) * step


def _smallest_level(knots: Tensor, slopes: Tensor, need: Tensor) -> tuple[Tensor, Tensor]:
    """Smallest ``lam >= 0`` with ``sum_i slopes_i * min(lam, knots_i) >= need``, per row.

    Returns ``(lam, feasible)``; ``lam`` is ``inf`` where even ``lam = inf`` falls short.
    """
    order = torch.argsort(knots, dim=1, stable=True)
    k_sorted = knots.gather(1, order)
    s_sorted = slopes.gather(1, order)
    saturated = torch.cumsum(_product(s_sorted, k_sorted), dim=1)
    total = s_sorted.sum(dim=1, keepdim=True)
    remaining = (total - torch.cumsum(s_sorted, dim=1)).clamp_min(0.0)
    reach_at_knot = torch.cummax(saturated + _product(k_sorted, remaining), dim=1).values
    below = (reach_at_knot < need.unsqueeze(1)).sum(dim=1)
    feasible = below < knots.shape[1]
    prev = (below - 1).clamp_min(0).unsqueeze(1)
    cur = below.clamp_max(knots.shape[1] - 1).unsqueeze(1)
    has_prev = (below > 0).unsqueeze(1)
    sat_prev = torch.where(has_prev, saturated.gather(1, prev), torch.zeros_like(total))
    rem_prev = torch.where(has_prev, remaining.gather(1, prev), total)
    lo_knot = torch.where(has_prev, k_sorted.gather(1, prev), torch.zeros_like(total))
    lam = (need.unsqueeze(1) - sat_prev) / rem_prev.clamp_min(_TINY)
    lam = torch.minimum(torch.maximum(lam, lo_knot), k_sorted.gather(1, cur)).squeeze(1)
    lam = torch.where(need > 0, lam, torch.zeros_like(lam))
    return torch.where(feasible, lam, torch.full_like(lam, float("inf"))), feasible


def _product(a: Tensor, b: Tensor) -> Tensor:
    """``a * b`` with ``0 * inf = 0`` (unbounded boxes give infinite knots)."""
    return torch.where((a == 0) | (b == 0), torch.zeros_like(a), a * b)


def _fab_search(
    model: Classifier,
    x: Tensor,
    y: Tensor,
    box: Box,
    cfg: _FabConfig,
    n_target_classes: int,
    stop_below: float,
    start_radius: float,
    generator: torch.Generator | None,
) -> tuple[Tensor, Tensor]:
    """Attack every target in turn; return the best adversarial points and their distances.

    A sample stays under attack while its best distance exceeds ``stop_below``.
    """
    generator = default_generator() if generator is None else generator
    x0 = x.detach()
    lower, upper = box.broadcast_to(x0)
    with torch.no_grad():
        logits = model(x0)
    correct = logits.argmax(dim=1) == y
    best_x = x0.clone()
    best_d = torch.full((x0.shape[0],), float("inf"), dtype=x0.dtype, device=x0.device)
    best_d[~correct] = 0.0
    n_targets = max(0, min(n_target_classes, logits.shape[1] - 1))
    if n_targets == 0 or not correct.any():
        return best_x, best_d
    targets = _ranked_wrong_classes(logits, y, n_targets)
    for k in range(n_targets):
        for restart in range(cfg.restarts):
            idx = torch.nonzero(correct & (best_d > stop_below)).squeeze(1)
            if idx.numel() == 0:
                return best_x, best_d
            x_start = _start_point(
                x0[idx], lower[idx], upper[idx], best_d[idx], restart, start_radius, cfg, generator
            )
            run_x, run_d = _fab_run(
                model,
                x0[idx],
                y[idx],
                targets[idx, k],
                (lower[idx], upper[idx]),
                x_start,
                (best_x[idx], best_d[idx]),
                cfg,
                stop_below,
            )
            best_x[idx], best_d[idx] = run_x, run_d
    return best_x, best_d


def _fab_run(
    model: Classifier,
    x0: Tensor,
    y: Tensor,
    target: Tensor,
    bounds: tuple[Tensor, Tensor],
    x_start: Tensor,
    best: tuple[Tensor, Tensor],
    cfg: _FabConfig,
    stop_below: float,
) -> tuple[Tensor, Tensor]:
    """One FAB run of ``cfg.steps`` iterations towards ``target`` on a sub-batch."""
    lower, upper = bounds
    best_x, best_d = best[0].clone(), best[1].clone()
    x1 = x_start.clone()
    for _ in range(cfg.steps):
        live = torch.nonzero(best_d > stop_below).squeeze(1)
        if live.numel() == 0:
            break
        x0_l, lo_l, hi_l = x0[live], lower[live], upper[live]
        moved = _fab_step(model, x1[live], x0_l, y[live], target[live], lo_l, hi_l, cfg)
        with torch.no_grad():
            is_adv = model(moved).argmax(dim=1) != y[live]
        dist = _distance(moved, x0_l, cfg.norm)
        better = is_adv & (dist < best_d[live])
        best_d[live] = torch.where(better, dist, best_d[live])
        best_x[live] = torch.where(per_sample(better, moved), moved, best_x[live])
        backed = clamp_between(x0_l + cfg.beta * (moved - x0_l), lo_l, hi_l)
        x1[live] = torch.where(per_sample(is_adv, moved), backed, moved)
    return best_x, best_d


def _fab_step(
    model: Classifier,
    x1: Tensor,
    x0: Tensor,
    y: Tensor,
    target: Tensor,
    lower: Tensor,
    upper: Tensor,
    cfg: _FabConfig,
) -> Tensor:
    """Project the iterate and the origin onto the linearised boundary and combine them."""
    gap, grad = _target_gap_and_grad(model, x1, y, target)
    n = x1.shape[0]
    w = grad.reshape(n, -1)
    x1f, x0f = x1.reshape(n, -1), x0.reshape(n, -1)
    need_x1 = -gap
    need_x0 = (w * (x1f - x0f)).sum(dim=1) - gap
    steps = project_to_hyperplane_in_box(
        torch.cat((x1f, x0f)),
        torch.cat((w, w)),
        torch.cat((need_x1, need_x0)),
        torch.cat((lower.reshape(n, -1), lower.reshape(n, -1))),
        torch.cat((upper.reshape(n, -1), upper.reshape(n, -1))),
        cfg.norm,
    )
    d1, d0 = steps[:n], steps[n:]
    len1 = _flat_norm(d1, cfg.norm).clamp_min(1e-8)
    len0 = _flat_norm(d0, cfg.norm).clamp_min(1e-8)
    alpha = (len1 / (len1 + len0)).clamp(0.0, cfg.alpha_max).unsqueeze(1)
    mixed = (1 - alpha) * (x1f + cfg.eta * d1) + alpha * (x0f + cfg.eta * d0)
    return clamp_between(mixed.reshape(x1.shape), lower, upper)


def _target_gap_and_grad(
    model: Classifier, x1: Tensor, y: Tensor, target: Tensor
) -> tuple[Tensor, Tensor]:
    """``z_target - z_y`` at ``x1`` and its input gradient (samples are independent)."""
    x_req = x1.detach().requires_grad_(True)
    with torch.enable_grad():
        logits = model(x_req)
        rows = torch.arange(x1.shape[0], device=x1.device)
        gap = logits[rows, target] - logits[rows, y]
        (grad,) = torch.autograd.grad(gap.sum(), x_req)
    return gap.detach(), grad.detach()


def _start_point(
    x0: Tensor,
    lower: Tensor,
    upper: Tensor,
    best_d: Tensor,
    restart: int,
    start_radius: float,
    cfg: _FabConfig,
    generator: torch.Generator,
) -> Tensor:
    """``x0`` for the first run; afterwards a random point at half the current radius."""
    if restart == 0:
        return x0.clone()
    radius = torch.minimum(best_d, torch.full_like(best_d, start_radius)) / 2
    radius = torch.where(torch.isfinite(radius), radius, torch.zeros_like(radius))
    if cfg.norm == "linf":
        noise = 2 * torch.rand(x0.shape, generator=generator, dtype=x0.dtype) - 1
    else:
        noise = torch.randn(x0.shape, generator=generator, dtype=x0.dtype)
    noise = noise.to(x0.device)
    scale = radius / _flat_norm(noise.reshape(x0.shape[0], -1), cfg.norm).clamp_min(_TINY)
    return clamp_between(x0 + per_sample(scale, x0) * noise, lower, upper)


def _ranked_wrong_classes(logits: Tensor, y: Tensor, k: int) -> Tensor:
    """The ``k`` classes other than ``y`` with the highest logits, most likely first."""
    masked = logits.detach().clone()
    masked[torch.arange(logits.shape[0], device=logits.device), y] = -float("inf")
    return torch.argsort(masked, dim=1, descending=True, stable=True)[:, :k]


def _distance(a: Tensor, b: Tensor, norm: NormName) -> Tensor:
    return _flat_norm((a - b).reshape(a.shape[0], -1), norm)


def _flat_norm(v: Tensor, norm: NormName) -> Tensor:
    if norm == "linf":
        return v.abs().amax(dim=1)
    return torch.linalg.vector_norm(v, ord=2, dim=1)


def _check_eps(eps: float) -> None:
    if not eps >= 0:
        raise ValueError(f"eps must be a non-negative number, got {eps}")


def _config(
    norm: NormName, steps: int, restarts: int, alpha_max: float, eta: float, beta: float
) -> _FabConfig:
    if norm not in ("linf", "l2"):
        raise ValueError(f"norm must be 'linf' or 'l2', got {norm!r}")
    if steps < 0 or restarts < 0:
        raise ValueError("steps and restarts must be non-negative")
    return _FabConfig(norm, steps, restarts, alpha_max, eta, beta)
