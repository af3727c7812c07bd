"""Scoring attacks on a model whose inputs follow a feature schema.

Two families, as in TabularBench (Simonetto et al. 2024):

- :func:`capgd`, constrained APGD (CAPGD): APGD's momentum and step-size schedule (Croce and
  Hein 2020) in the schema's relaxation: every column inside its per-sample interval
  (:meth:`FeatureConstraints.bounds_around`), steps measured in each column's own budget,
  binary and categorical columns relaxed into their 0/1 box, immutable columns never moved,
  linear constraints kept after every step (:meth:`FeatureConstraints.project`; the gradient
  carried through each equality's dependent to the columns it is computed from).
  Every iterate is repaired onto the schema and the repaired point classified, as CAPGD does,
  so the attack keeps the first relaxed iterate whose repair fools the model.
- :func:`evolution_search`, a black-box search over valid points only (in the spirit of MOEVA):
  each generation mutates a few features of the best point so far (a continuous or integer
  feature to a value of its interval, integers on integer steps; a binary flipped; a category
  switched) and keeps a mutant that lowers the true class's logit margin. It needs no
  gradient, so integer steps and category switches that a relaxation rounds away are searched
  directly.

Each returns one candidate per sample; the suite (:mod:`workers.engine.tabular.evaluation`)
repairs and checks it with code of its own before it counts. Written apart from the training
perturbation (:mod:`workers.engine.attacks.region`): a model graded by the attack that trained
it is not graded.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from workers.engine.evaluation.apgd import apgd_checkpoints, targeted_dlr_loss
from workers.engine.evaluation.gradient_attacks import cross_entropy_loss, margin_loss
from workers.engine.evaluation.types import Classifier
from workers.engine.geometry import cpu_rand
from workers.engine.tabular.constraints import FeatureConstraints
from workers.engine.tabular.schema import FeatureSchema, Kind

_MOMENTUM = 0.75
_INITIAL_STEP = 2.0
_RHO = 0.75

LossFn = Callable[[Tensor, Tensor, Tensor], Tensor]
"""A per-sample loss to maximise from logits, labels and the rows of the batch they are."""


def capgd(
    model: Classifier,
    x: Tensor,
    y: Tensor,
    *,
    constraints: FeatureConstraints,
    steps: int = 100,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Untargeted CAPGD on cross-entropy."""
    return _capgd(model, x, y, [_cross_entropy], constraints, steps, generator)


def _cross_entropy(logits: Tensor, y: Tensor, rows: Tensor) -> Tensor:
    del rows
    return cross_entropy_loss(logits, y)


def capgd_targeted(
    model: Classifier,
    x: Tensor,
    y: Tensor,
    *,
    constraints: FeatureConstraints,
    n_target_classes: int = 9,
    steps: int = 100,
    generator: torch.Generator | None = None,
) -> Tensor:
    """CAPGD on the targeted DLR loss, one likely wrong class after another."""
    with torch.no_grad():
        logits = model(x)
    count = min(n_target_classes, logits.shape[1] - 1)
    wrong = logits.masked_fill(F.one_hot(y, logits.shape[1]).bool(), -math.inf)
    targets = wrong.sort(dim=1, descending=True, stable=True).indices[:, :count]
    losses = [_targeted(targets[:, rank]) for rank in range(count)]
    return _capgd(model, x, y, losses, constraints, steps, generator)


def _targeted(target: Tensor) -> LossFn:
    def loss(logits: Tensor, y: Tensor, rows: Tensor) -> Tensor:
        return targeted_dlr_loss(logits, y, target[rows])

    return loss


@dataclass
class _Best:
    """Per sample: the candidate so far, whether its repair fooled the model, and its loss."""

    point: Tensor
    fooled: Tensor
    loss: Tensor

    def take(self, rows: Tensor, point: Tensor, fooled: Tensor, loss: Tensor) -> None:
        open_ = ~self.fooled[rows]
        better = open_ & (fooled | (loss > self.loss[rows]))
        self.point[rows[better]] = point[better]
        self.loss[rows[better]] = loss[better]
        self.fooled[rows[better & fooled]] = True


def _capgd(
    model: Classifier,
    x: Tensor,
    y: Tensor,
    losses: list[LossFn],
    constraints: FeatureConstraints,
    steps: int,
    generator: torch.Generator | None,
) -> Tensor:
    generator = generator or torch.Generator().manual_seed(0)
    x, y = x.detach(), y.to(device=x.device, dtype=torch.long)
    constraints = constraints.to(x.device)
    with torch.no_grad():
        clean_wrong = model(x).argmax(1) != y
    best = _Best(x.clone(), clean_wrong.clone(), torch.full((len(y),), -math.inf, device=x.device))
    for loss_fn in losses:
        rows = (~best.fooled).nonzero().squeeze(1)
        if rows.numel() == 0:
            break
        _capgd_run(model, x[rows], y[rows], rows, best, loss_fn, constraints, steps, generator)
    return best.point


def _capgd_run(
    model: Classifier,
    x: Tensor,
    y: Tensor,
    rows: Tensor,
    best: _Best,
    loss_fn: LossFn,
    constraints: FeatureConstraints,
    steps: int,
    generator: torch.Generator,
) -> None:
    unit = constraints.step_unit().to(x.dtype)

    def evaluate(point: Tensor) -> tuple[Tensor, Tensor]:
        """Loss and gradient at the relaxed point; the repaired point judged and recorded."""
        point = point.detach().requires_grad_(True)
        with torch.enable_grad():
            loss = loss_fn(model(point), y, rows)
            (grad,) = torch.autograd.grad(loss.sum(), point)
        grad = constraints.gradient(grad)
        repaired = constraints.repair(point.detach(), x)
        with torch.no_grad():
            logits = model(repaired)
        fooled = logits.argmax(1) != y
        best.take(rows, point.detach(), fooled, loss_fn(logits, y, rows))
        return loss.detach(), grad.detach()

    noise = 2 * cpu_rand(x.shape, x, generator) - 1
    current = constraints.project(x + noise * unit, x)
    loss, grad = evaluate(current)
    previous = current
    step = torch.full((len(y), 1), _INITIAL_STEP, dtype=x.dtype, device=x.device)
    best_point, best_loss, best_grad = current, loss, grad
    last_loss, increases = loss, torch.zeros_like(loss, dtype=torch.long)
    loss_at_check, halved = loss, torch.zeros_like(loss, dtype=torch.bool)
    last_check = 0
    checkpoints = apgd_checkpoints(steps)
    for iteration in range(1, steps + 1):
        weight = 1.0 if iteration == 1 else _MOMENTUM
        direction = torch.where(torch.isfinite(grad), grad, torch.zeros_like(grad)).sign()
        z = constraints.project(current + step * unit * direction, x)
        proposal = current + weight * (z - current) + (1 - weight) * (current - previous)
        proposal = constraints.project(proposal, x)
        loss, grad_new = evaluate(proposal)
        previous, current, grad = current, proposal, grad_new
        increases += loss > last_loss
        last_loss = loss
        improved = (loss > best_loss)[:, None]
        best_point = torch.where(improved, current, best_point)
        best_grad = torch.where(improved, grad, best_grad)
        best_loss = torch.where(improved[:, 0], loss, best_loss)
        if iteration in checkpoints:
            window = iteration - last_check
            halve = (increases < _RHO * window) | (~halved & (best_loss <= loss_at_check))
            step = torch.where(halve[:, None], step / 2, step)
            current = torch.where(halve[:, None], best_point, current)
            grad = torch.where(halve[:, None], best_grad, grad)
            last_loss = torch.where(halve, best_loss, last_loss)
            increases.zero_()
            halved, loss_at_check, last_check = halve, best_loss, iteration


def evolution_search(
    model: Classifier,
    x: Tensor,
    y: Tensor,
    *,
    schema: FeatureSchema,
    constraints: FeatureConstraints,
    queries: int = 1000,
    population: int = 20,
    generator: torch.Generator | None = None,
) -> Tensor:
    """A (1 + population) evolution strategy per sample over schema-valid points, minimising the
    logit margin of the true class; stops a sample once it is misclassified. Spends at most
    ``queries`` model evaluations per sample."""
    generator = generator or torch.Generator().manual_seed(0)
    x, y = x.detach(), y.to(device=x.device, dtype=torch.long)
    constraints = constraints.to(x.device)
    lower, upper = constraints.bounds_around(x)
    features = _mutable_features(schema, constraints)
    with torch.no_grad():
        best_score = -margin_loss(model(x), y)
    best = x.clone()
    if not features:
        return best
    for _ in range(max(1, queries // population)):
        open_rows = (best_score > 0).nonzero().squeeze(1)
        if open_rows.numel() == 0:
            break
        parents = best[open_rows].repeat_interleave(population, dim=0)
        clean = x[open_rows].repeat_interleave(population, dim=0)
        lo = lower[open_rows].repeat_interleave(population, dim=0)
        hi = upper[open_rows].repeat_interleave(population, dim=0)
        mutants = _mutate(parents, lo, hi, features, generator)
        mutants = constraints.repair(mutants, clean)
        with torch.no_grad():
            scores = -margin_loss(model(mutants), y[open_rows].repeat_interleave(population))
        scores = scores.view(len(open_rows), population)
        winner_score, winner = scores.min(dim=1)
        take = winner_score < best_score[open_rows]
        chosen = mutants.view(len(open_rows), population, -1)[torch.arange(len(open_rows)), winner]
        best[open_rows[take]] = chosen[take]
        best_score[open_rows[take]] = winner_score[take]
    return best


@dataclass(frozen=True)
class _Mutable:
    kind: Kind
    columns: Tensor


def _mutable_features(schema: FeatureSchema, constraints: FeatureConstraints) -> list[_Mutable]:
    """The features a mutation may change: mutable ones with a budget, but not the dependents of
    linear equalities, which repair recomputes from the others."""
    found = []
    start = 0
    dependents = set(schema.dependents())
    for feature in schema.features:
        span = torch.arange(start, start + len(feature.columns))
        start += len(feature.columns)
        if feature.name in dependents:
            continue
        if feature.mutable and float(constraints.radius[span[0]]) > 0:
            found.append(_Mutable(feature.kind, span))
    return found


def _mutate(
    parents: Tensor,
    lower: Tensor,
    upper: Tensor,
    features: list[_Mutable],
    generator: torch.Generator,
) -> Tensor:
    """Each mutant changes each mutable feature with probability 1.5 / features (at least one
    feature: the first drawn when none was)."""
    rows = parents.shape[0]
    share = min(1.0, 1.5 / len(features))
    chosen = cpu_rand((rows, len(features)), parents, generator) < share
    forced = (
        (cpu_rand((rows,), parents, generator) * len(features)).long().clamp_max(len(features) - 1)
    )
    chosen[torch.arange(rows), forced] = True
    mutants = parents.clone()
    for index, feature in enumerate(features):
        where = chosen[:, index]
        cols = feature.columns.to(parents.device)
        draw = cpu_rand((rows, len(cols)), parents, generator)
        if feature.kind is Kind.CATEGORICAL:
            pick = (draw[:, 0] * len(cols)).long().clamp_max(len(cols) - 1)
            one_hot = F.one_hot(pick, len(cols)).to(parents.dtype)
            mutants[:, cols] = torch.where(where[:, None], one_hot, mutants[:, cols])
            continue
        col = int(cols[0])
        if feature.kind is Kind.BINARY:
            value = 1 - mutants[:, col]
        else:
            low = lower[:, col]
            high = upper[:, col]
            if feature.kind is Kind.INTEGER:
                low, high = torch.ceil(low), torch.floor(high)
                value = torch.floor(low + draw[:, 0] * (high - low + 1)).clamp(max=high)
            else:
                value = low + draw[:, 0] * (high - low)
        mutants[:, col] = torch.where(where, value, mutants[:, col])
    return mutants
