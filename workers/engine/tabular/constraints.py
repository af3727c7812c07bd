"""A feature schema as tensors: where each sample may move, and how a candidate is made valid.

Gradient attacks move in a relaxation of the schema (each feature within its own interval
around the clean value; a categorical group anywhere in its 0/1 box) and :meth:`repair` maps the
result onto the schema: integers rounded inside their interval, binary features to 0 or 1, each
categorical group to the one-hot of its largest entry, immutable features back to their clean
value. :func:`violations` checks a point against the schema with code of its own, so a repair
that went wrong is caught rather than counted.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from workers.engine.tabular.schema import Feature, FeatureSchema, Kind

TOLERANCE = 1e-5


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

    def to(self, device: torch.device | str) -> FeatureConstraints:
        return FeatureConstraints(
            self.lower.to(device),
            self.upper.to(device),
            self.radius.to(device),
            self.integer.to(device),
            self.binary.to(device),
            tuple(g.to(device) for g in self.groups),
            tuple(g.to(device) for g in self.frozen_groups),
        )

    def scaled(self, factor: float) -> FeatureConstraints:
        """The same schema with every finite budget times ``factor`` (flips and immutables as
        they are): how epsilon warm-up and the robustness curve shrink or grow the threat."""
        if factor < 0:
            raise ValueError(f"a budget factor is non-negative, got {factor}")
        radius = torch.where(torch.isinf(self.radius), self.radius, self.radius * factor)
        return dataclasses.replace(self, radius=radius)

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
        return point


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
    return FeatureConstraints(lower, upper, radius, integer, binary, tuple(groups), tuple(frozen))


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


CONSTRAINT_KINDS = ("immutable", "range", "budget", "integer", "binary", "one_hot")
"""What :func:`violations_by_kind` tells apart, in the order reports list them."""


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
    return bad
