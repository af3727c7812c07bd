"""A feature schema as tensors: where each sample may move, and how a candidate is made valid.

Gradient attacks move in a relaxation of the schema (each feature within its own interval
around the clean value; a categorical group anywhere in its 0/1 box) and :meth:`repair` maps the
result onto the schema: integers rounded inside their interval, binary features to 0 or 1, each
categorical group to the one-hot of its largest entry, immutable features back to their clean
value. :func:`violations` checks a point against the schema with code of its own, so a repair
that went wrong is caught rather than counted.

Linear constraints between features (:class:`LinearSystem`) are kept by :meth:`project`, which
attacks call after every projection step: each dependent column is written as what its equality
makes it of the free columns, then a few rounds move the mutable free columns (weighted by their
budgets, none pushed past its bound) onto each broken inequality and each dependent's interval,
and finally each equality is solved exactly for its dependent, in the schema's order.
:meth:`repair` does the same after rounding with the continuous columns only, and a candidate it
still cannot make valid is pulled back towards the clean point (which satisfies every
constraint) until it is valid: the clean point itself if need be.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from workers.engine.tabular.schema import LINEAR_TOLERANCE, Feature, FeatureSchema, Kind, Op

TOLERANCE = 1e-5
PROJECTION_ROUNDS = 30
"""At most this many rounds of moving onto broken constraints; a row stops once it keeps them
all (to :data:`_AIM`, well inside the schema's tolerance) or no longer moves."""
_AIM = LINEAR_TOLERANCE / 1000
RETREATS = (0.5, 0.25, 0.125, 0.0625)
"""Shares of the way from the clean point to a candidate that repair tries, in turn, when the
candidate itself cannot be made to satisfy the linear constraints."""


@dataclass(frozen=True)
class LinearSystem:
    """The schema's linear constraints as float64 tensors: ``matrix @ x <= value`` (``>=`` rows
    negated) or ``==`` where ``equality``; ``dependent`` is the column each equality is solved
    for (-1: none, or an inequality), rows in the schema's order, which is the solving order."""

    matrix: Tensor
    value: Tensor
    equality: Tensor
    dependent: Tensor
    reduced: Tensor
    """The inequalities with every dependent replaced by what its equality makes it: rows over
    the free columns only (``reduced @ x <= reduced_value``)."""
    reduced_value: Tensor
    expression: Tensor
    """Per dependent (``dependents``), its value as ``offset + expression @ x`` over the free
    columns."""
    offset: Tensor
    dependents: Tensor

    def to(self, device: torch.device | str) -> LinearSystem:
        return LinearSystem(
            *(
                t.to(device)
                for t in (
                    self.matrix,
                    self.value,
                    self.equality,
                    self.dependent,
                    self.reduced,
                    self.reduced_value,
                    self.expression,
                    self.offset,
                    self.dependents,
                )
            )
        )

    def free_rows(self, lower: Tensor, upper: Tensor) -> tuple[Tensor, Tensor]:
        """The half-spaces over the free columns that a point must lie in, per sample: the
        reduced inequalities, and each dependent's interval (``lower``/``upper``, per sample)
        as two of them. Returns the rows ``(R, F)`` and their values ``(N, R)``."""
        rows = torch.cat([self.reduced, self.expression, -self.expression])
        n = lower.shape[0]
        values = torch.cat(
            [
                self.reduced_value.expand(n, -1),
                upper[:, self.dependents].double() - self.offset,
                self.offset - lower[:, self.dependents].double(),
            ],
            dim=1,
        )
        return rows, values

    def satisfied(self, point: Tensor, share: float = LINEAR_TOLERANCE) -> Tensor:
        """Per sample and row, whether ``point`` (float64) satisfies it to ``share`` of the size
        of its terms (by default the schema's tolerance)."""
        residual = point @ self.matrix.T - self.value
        size = point.abs() @ self.matrix.abs().T + self.value.abs()
        tolerance = share * size + 1e-9
        return torch.where(self.equality, residual.abs() <= tolerance, residual <= tolerance)

    def holds(self, point: Tensor) -> Tensor:
        """Per sample, whether ``point`` (float64) satisfies every row."""
        return self.satisfied(point).all(dim=1)

    def solve_dependents(self, point: Tensor) -> Tensor:
        """Each equality solved for its dependent column, in order (a dependent used by a later
        equality is solved first): exact whatever the other columns are."""
        point = point.clone()
        for k in range(self.matrix.shape[0]):
            d = int(self.dependent[k])
            if d < 0:
                continue
            row = self.matrix[k]
            others = point @ row - row[d] * point[:, d]
            point[:, d] = (self.value[k] - others) / row[d]
        return point

    def chain_gradient(self, grad: Tensor) -> Tensor:
        """The gradient with respect to the free columns when each dependent is the function of
        the others its equality makes it (chain rule, last equality first); 0 on dependents."""
        grad = grad.clone()
        for k in reversed(range(self.matrix.shape[0])):
            d = int(self.dependent[k])
            if d < 0:
                continue
            row = self.matrix[k].to(grad.dtype)
            carried = grad[:, d : d + 1] * (-row / row[d])
            carried[:, d] = 0
            grad = grad + carried
            grad[:, d] = 0
        return grad


def _linear_system(schema: FeatureSchema) -> LinearSystem | None:
    if not schema.constraints:
        return None
    index = schema.column_index()
    matrix = torch.zeros(len(schema.constraints), len(schema.columns), dtype=torch.float64)
    value = torch.zeros(len(schema.constraints), dtype=torch.float64)
    equality = torch.zeros(len(schema.constraints), dtype=torch.bool)
    dependent = torch.full((len(schema.constraints),), -1, dtype=torch.long)
    for k, constraint in enumerate(schema.constraints):
        sign = -1.0 if constraint.op is Op.GE else 1.0
        for column, coefficient in constraint.terms:
            matrix[k, index[column]] += sign * coefficient
        value[k] = sign * constraint.value
        equality[k] = constraint.op is Op.EQ
        if constraint.dependent is not None:
            dependent[k] = index[constraint.dependent]
    # Every column as offset + expression @ x over the free columns, dependents in solving
    # order (a dependent used by a later equality is substituted there in turn).
    expression = torch.eye(len(schema.columns), dtype=torch.float64)
    offset = torch.zeros(len(schema.columns), dtype=torch.float64)
    for k in (dependent >= 0).nonzero().flatten().tolist():
        d = int(dependent[k])
        solved = -matrix[k] / matrix[k, d]
        solved[d] = 0
        offset[d] = value[k] / matrix[k, d] + solved @ offset
        expression[d] = solved @ expression
    inequalities = ~equality
    reduced = matrix[inequalities] @ expression
    reduced_value = value[inequalities] - matrix[inequalities] @ offset
    dependents = dependent[dependent >= 0]
    return LinearSystem(
        matrix,
        value,
        equality,
        dependent,
        reduced,
        reduced_value,
        expression[dependents],
        offset[dependents],
        dependents,
    )


@dataclass(frozen=True)
class FeatureConstraints:
    """Per column: the valid range, the attacker's radius (0 for immutable features, infinite
    for flips), the integer and binary columns; and the column indices of each mutable
    categorical group."""

    lower: Tensor
    upper: Tensor
    radius: Tensor
    integer: Tensor
    binary: Tensor
    groups: tuple[Tensor, ...]
    frozen_groups: tuple[Tensor, ...]
    linear: LinearSystem | None = None
    """The linear constraints between columns, if the schema has any. A dependent column's
    radius is the farthest its equality lets it move when the others move within theirs."""

    def to(self, device: torch.device | str) -> FeatureConstraints:
        return FeatureConstraints(
            self.lower.to(device),
            self.upper.to(device),
            self.radius.to(device),
            self.integer.to(device),
            self.binary.to(device),
            tuple(g.to(device) for g in self.groups),
            tuple(g.to(device) for g in self.frozen_groups),
            self.linear.to(device) if self.linear is not None else None,
        )

    def scaled(self, factor: float) -> FeatureConstraints:
        """The same schema with every finite budget times ``factor`` (flips and immutables as
        they are): how epsilon warm-up and the robustness curve shrink or grow the threat."""
        if factor < 0:
            raise ValueError(f"a budget factor is non-negative, got {factor}")
        radius = torch.where(torch.isinf(self.radius), self.radius, self.radius * factor)
        return dataclasses.replace(self, radius=_derived_radius(radius, self.linear))

    def step_unit(self) -> Tensor:
        """Per column, the length an attack step is measured in: the column's budget, or 1 (its
        0/1 range) for a flip; 0 for immutable columns."""
        return torch.where(torch.isinf(self.radius), torch.ones_like(self.radius), self.radius)

    def bounds_around(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Per sample and column, the interval the attacker may reach from ``x``: the valid
        range cut to the column's radius around ``x`` (a point, for immutable columns)."""
        lower = torch.maximum(self.lower, x - self.radius)
        upper = torch.minimum(self.upper, x + self.radius)
        return torch.minimum(lower, x), torch.maximum(upper, x)

    def repair(self, candidate: Tensor, x: Tensor) -> Tensor:
        """The valid point nearest in spirit to ``candidate``: clamped to its intervals, integers
        rounded inside them, binaries to 0/1, each categorical group one-hot at its largest
        entry (ties to the clean category), frozen groups as in ``x``."""
        lower, upper = self.bounds_around(x)
        point = torch.minimum(torch.maximum(candidate, lower), upper)
        rounded = torch.round(point)
        rounded = torch.where(rounded > upper, torch.floor(upper), rounded)
        rounded = torch.where(rounded < lower, torch.ceil(lower), rounded)
        point = torch.where(self.integer, rounded, point)
        point = torch.where(self.binary, (point >= 0.5).to(point.dtype), point)
        for group in self.groups:
            scores = point[:, group] + TOLERANCE * x[:, group]
            one_hot = torch.zeros_like(scores)
            one_hot.scatter_(1, scores.argmax(dim=1, keepdim=True), 1.0)
            point[:, group] = one_hot
        for group in self.frozen_groups:
            point[:, group] = x[:, group]
        if self.linear is None:
            return point
        return self._repair_linear(candidate, point, x)

    def project(self, point: Tensor, x: Tensor) -> Tensor:
        """``point`` clipped to its intervals around ``x`` and, with linear constraints, moved
        onto them in the relaxation (every mutable column may move, integers and flips relaxed;
        each equality solved for its dependent): what attacks call after each step."""
        lower, upper = self.bounds_around(x)
        point = torch.minimum(torch.maximum(point, lower), upper)
        if self.linear is None:
            return point
        return self._satisfy(point, lower, upper, self.radius > 0, exact=False).to(point.dtype)

    def gradient(self, grad: Tensor) -> Tensor:
        """The gradient an attack should step along: with linear equalities, what moving each
        free column does through the dependents recomputed from it; 0 on dependents."""
        if self.linear is None:
            return grad
        return self.linear.chain_gradient(grad)

    def _satisfy(
        self, point: Tensor, lower: Tensor, upper: Tensor, movable: Tensor, *, exact: bool
    ) -> Tensor:
        """Rounds of moving the ``movable`` free columns onto each broken half-space of
        :meth:`LinearSystem.free_rows` (the inequalities with each dependent replaced by what
        its equality makes it, and each dependent's interval), weighted by their step unit
        squared, none pushed past its bound; then the equalities solved for their dependents
        (integer ones rounded if ``exact``); float64. Equalities never enter the rounds, so
        they cannot slow them: they hold exactly by the final solve."""
        assert self.linear is not None
        system = self.linear
        z = point.double()
        lo, hi = lower.double(), upper.double()
        zero = torch.zeros((), dtype=torch.float64, device=z.device)
        weight = torch.where(movable, self.step_unit().double() ** 2, zero)
        z = torch.minimum(torch.maximum(z, lo), hi)
        rows, values = system.free_rows(lo, hi)
        active = torch.arange(z.shape[0], device=z.device)
        for _ in range(PROJECTION_ROUNDS):
            satisfied = _within(z[active], rows, values[active], _AIM)
            broken = ~satisfied.all(dim=1)
            active, satisfied = active[broken], satisfied[broken]
            if active.numel() == 0:
                break
            za, la, ha, va = z[active], lo[active], hi[active], values[active]
            for k in (~satisfied).any(dim=0).nonzero().flatten().tolist():
                row = rows[k]
                need = (za @ row - va[:, k]).clamp(min=0)
                rising = (-need[:, None] * row) > 0
                room = torch.where(rising, za < ha, za > la) & (row != 0)
                w = weight * room
                denominator = (w * row**2).sum(dim=1)
                shift = torch.where(denominator > 0, need / denominator.clamp_min(1e-300), 0.0)
                za = za - shift[:, None] * w * row
            za = torch.minimum(torch.maximum(za, la), ha)
            moved = (za != z[active]).any(dim=1)
            z[active] = za
            active = active[moved]
        solved = system.solve_dependents(z)
        if not exact:
            return solved
        return torch.where(self.integer, torch.round(solved), solved)

    def _valid_linear(self, point: Tensor, lower: Tensor, upper: Tensor) -> Tensor:
        assert self.linear is not None
        slack = TOLERANCE * torch.clamp(point.abs(), min=1.0)
        inside = ((point >= lower - slack) & (point <= upper + slack)).all(dim=1)
        return inside & self.linear.holds(point.double())

    def _round_into_inequalities(
        self, point: Tensor, candidate: Tensor, lower: Tensor, upper: Tensor
    ) -> Tensor:
        """For each inequality that rounding broke, its integer columns rounded again from the
        candidate towards the side that keeps it (down where the coefficient is positive, up
        where it is negative), inside their intervals: a candidate that kept the inequality in
        the relaxation then keeps it rounded. Dependents are left to their equalities."""
        assert self.linear is not None
        system = self.linear
        free = self.integer & (self.radius > 0)
        free[system.dependent[system.dependent >= 0]] = False
        if not bool(free.any()):
            return point
        relaxed = torch.minimum(torch.maximum(candidate, lower), upper)
        low, high = torch.ceil(lower), torch.floor(upper)
        point = point.clone()
        for k in range(system.matrix.shape[0]):
            row = system.matrix[k].to(point.dtype)
            columns = free & (row != 0)
            if bool(system.equality[k]) or not bool(columns.any()):
                continue
            broken = ~system.satisfied(point.double())[:, k]
            if not bool(broken.any()):
                continue
            directed = torch.where(row > 0, torch.floor(relaxed), torch.ceil(relaxed))
            directed = torch.minimum(torch.maximum(directed, low), high)
            point = torch.where(broken[:, None] & columns, directed, point)
        return point

    def _repair_linear(self, candidate: Tensor, rounded: Tensor, x: Tensor) -> Tensor:
        """``rounded`` (the candidate mapped onto everything but the linear constraints) moved
        onto them with its continuous columns; a row that cannot be is repaired again from
        points nearer ``x`` (:data:`RETREATS`), and as ``x`` if none works."""
        lower, upper = self.bounds_around(x)
        continuous = torch.isfinite(self.radius) & (self.radius > 0) & ~self.integer
        rounded = self._round_into_inequalities(rounded, candidate, lower, upper)
        fixed = self._satisfy(rounded, lower, upper, continuous, exact=True).to(rounded.dtype)
        ok = self._valid_linear(fixed, lower, upper)
        plain = dataclasses.replace(self, linear=None)
        for share in RETREATS:
            rows = (~ok).nonzero().squeeze(1)
            if rows.numel() == 0:
                return fixed
            nearer = x[rows] + share * (candidate[rows] - x[rows])
            again = plain.repair(nearer, x[rows])
            again = self._satisfy(again, lower[rows], upper[rows], continuous, exact=True)
            again = again.to(rounded.dtype)
            good = self._valid_linear(again, lower[rows], upper[rows])
            fixed[rows[good]] = again[good]
            ok[rows[good]] = True
        fixed[~ok] = x[~ok]
        return fixed


def build_constraints(
    schema: FeatureSchema, default_radius: float, train_x: np.ndarray
) -> FeatureConstraints:
    """Tensors for ``schema``; features without a budget get ``default_radius`` (the request's
    epsilon), ``std_share`` budgets are taken of ``train_x``'s standard deviation."""
    columns = len(schema.columns)
    lower = torch.full((columns,), -math.inf)
    upper = torch.full((columns,), math.inf)
    radius = torch.zeros(columns)
    integer = torch.zeros(columns, dtype=torch.bool)
    binary = torch.zeros(columns, dtype=torch.bool)
    groups: list[Tensor] = []
    frozen: list[Tensor] = []
    start = 0
    for feature in schema.features:
        span = torch.arange(start, start + len(feature.columns))
        start += len(feature.columns)
        lower[span], upper[span] = feature.lower, feature.upper
        if feature.kind is Kind.CATEGORICAL:
            (groups if feature.mutable else frozen).append(span)
            radius[span] = math.inf if feature.mutable else 0.0
            continue
        integer[span] = feature.kind is Kind.INTEGER
        binary[span] = feature.kind is Kind.BINARY
        if not feature.mutable:
            radius[span] = 0.0
        elif feature.kind is Kind.BINARY:
            radius[span] = math.inf
        else:
            column = train_x[:, int(span[0])]
            radius[span] = _radius(feature, default_radius, column)
    linear = _linear_system(schema)
    return FeatureConstraints(
        lower,
        upper,
        _derived_radius(radius, linear),
        integer,
        binary,
        tuple(groups),
        tuple(frozen),
        linear,
    )


def _within(point: Tensor, rows: Tensor, values: Tensor, share: float) -> Tensor:
    """Per sample and row, whether ``rows @ point <= values`` to ``share`` of the terms' size."""
    residual = point @ rows.T - values
    size = point.abs() @ rows.abs().T + values.abs()
    return residual <= share * size + 1e-9


def _derived_radius(radius: Tensor, linear: LinearSystem | None) -> Tensor:
    """``radius`` with each dependent's replaced by how far its equality can move it: the sum
    over the other terms of their coefficient over its own times their radius (1 for a flip),
    in solving order so that a dependent used by a later equality counts with its own."""
    if linear is None:
        return radius
    radius = radius.clone()
    for k in range(linear.matrix.shape[0]):
        d = int(linear.dependent[k])
        if d < 0:
            continue
        row = linear.matrix[k].to(radius.device)
        unit = torch.where(torch.isinf(radius), torch.ones_like(radius), radius).double()
        ratio = (row / row[d]).abs()
        ratio[d] = 0
        radius[d] = float((ratio * unit).sum())
    return radius


def _radius(feature: Feature, default: float, column: np.ndarray) -> float:
    budget = feature.budget
    if budget is None:
        return default
    if budget.absolute is not None:
        return budget.absolute
    if budget.range_share is not None:
        return budget.range_share * (feature.upper - feature.lower)
    assert budget.std_share is not None
    return budget.std_share * float(np.std(column))


CONSTRAINT_KINDS = ("immutable", "range", "budget", "integer", "binary", "one_hot", "linear")
"""What :func:`violations_by_kind` tells apart, in the order reports list them."""


def constraint_kinds(schema: FeatureSchema) -> tuple[str, ...]:
    """The kinds of constraint a report lists for ``schema``: ``linear`` only if it has any."""
    return CONSTRAINT_KINDS if schema.constraints else CONSTRAINT_KINDS[:-1]


def violations(
    schema: FeatureSchema, constraints: FeatureConstraints, point: Tensor, x: Tensor
) -> Tensor:
    """Per sample, whether ``point`` breaks the schema relative to its clean ``x``: written
    apart from :meth:`FeatureConstraints.repair`, column by column from the schema itself."""
    bad = torch.zeros(point.shape[0], dtype=torch.bool, device=point.device)
    for broken in violations_by_kind(schema, constraints, point, x).values():
        bad |= broken
    return bad


def violations_by_kind(
    schema: FeatureSchema, constraints: FeatureConstraints, point: Tensor, x: Tensor
) -> dict[str, Tensor]:
    """Per kind of constraint (:data:`CONSTRAINT_KINDS`), which samples of ``point`` break it."""
    bad = {
        kind: torch.zeros(point.shape[0], dtype=torch.bool, device=point.device)
        for kind in CONSTRAINT_KINDS
    }
    start = 0
    for feature in schema.features:
        span = slice(start, start + len(feature.columns))
        start += len(feature.columns)
        block, clean = point[:, span], x[:, span]
        if not feature.mutable:
            bad["immutable"] |= (block != clean).any(dim=1)
            continue
        if feature.kind is Kind.CATEGORICAL:
            is_binary = (block == 0) | (block == 1)
            bad["one_hot"] |= ~is_binary.all(dim=1) | (block.sum(dim=1) != 1)
            continue
        value = block[:, 0]
        bad["range"] |= (value < feature.lower - TOLERANCE) | (value > feature.upper + TOLERANCE)
        if feature.kind is Kind.BINARY:
            bad["binary"] |= (value != 0) & (value != 1)
            continue
        if feature.kind is Kind.INTEGER:
            bad["integer"] |= value != torch.round(value)
        limit = constraints.radius[span.start]
        bad["budget"] |= (value - clean[:, 0]).abs() > limit + TOLERANCE * max(1.0, float(limit))
    bad["linear"] = _linear_broken(schema, point)
    return bad


def _linear_broken(schema: FeatureSchema, point: Tensor) -> Tensor:
    """Per sample, whether ``point`` breaks a linear constraint of the schema, computed from the
    schema's own terms in float64 (not from the repair's matrix)."""
    broken = torch.zeros(point.shape[0], dtype=torch.bool, device=point.device)
    index = schema.column_index()
    for constraint in schema.constraints:
        lhs = torch.zeros(point.shape[0], dtype=torch.float64, device=point.device)
        size = torch.full_like(lhs, abs(constraint.value))
        for column, coefficient in constraint.terms:
            term = coefficient * point[:, index[column]].double()
            lhs += term
            size += term.abs()
        residual = lhs - constraint.value
        tolerance = LINEAR_TOLERANCE * size + 1e-9
        if constraint.op is Op.EQ:
            broken |= residual.abs() > tolerance
        elif constraint.op is Op.LE:
            broken |= residual > tolerance
        else:
            broken |= residual < -tolerance
    return broken
