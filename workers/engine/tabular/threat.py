"""A tabular job's threat model: the schema, its constraints, and the plain ball it relaxes to.

The constrained threat (the schema's per-sample intervals, integers, one-hot groups, immutable
features) is what the headline is scored under. The unconstrained one drops every constraint
but the budgets: each column, immutable ones too, may move within its budget (a flip's 0/1 range
for binary and categorical columns) inside the schema's box. It contains every constrained
point, so an attack there can only find more: its worst case is the report's sanity line.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from workers.engine.geometry import Box
from workers.engine.tabular.constraints import FeatureConstraints, build_constraints
from workers.engine.tabular.schema import FeatureSchema, load_schema


@dataclass(frozen=True)
class TabularThreat:
    schema: FeatureSchema
    constraints: FeatureConstraints
    unconstrained_scale: Tensor
    """Per column, the radius of the unconstrained ball (constraints dropped): the budget it
    would have if mutable, 1 for a flip."""
    box: Box
    """The schema's ranges, shaped ``(1, F)``; an open end is replaced by the data's extreme
    one scale beyond it, which no ball around the data reaches past."""
    eps: float
    """The request's epsilon: the budget of features that name none."""

    def to_dict(self) -> dict[str, Any]:
        """The schema as the report shows it: per feature its kind, columns, mutability, range
        and the budget in force (absolute, in the model's units; "flip" for a switch)."""
        features = []
        start = 0
        solved_by = {
            c.dependent: number
            for number, c in enumerate(self.schema.constraints, 1)
            if c.dependent is not None
        }
        for feature in self.schema.features:
            radius = float(self.constraints.radius[start])
            start += len(feature.columns)
            budget = _budget_words(feature.budget, radius, feature.mutable)
            if feature.name in solved_by:
                budget = (
                    f"recomputed by linear constraint {solved_by[feature.name]}"
                    f" (moves at most {radius:g})"
                )
            features.append(
                {
                    "name": feature.name,
                    "kind": feature.kind.value,
                    "columns": list(feature.columns),
                    "mutable": feature.mutable,
                    "lower": _finite_or_none(feature.lower),
                    "upper": _finite_or_none(feature.upper),
                    "budget": budget,
                    "radius": radius if math.isfinite(radius) else None,
                }
            )
        constraints = [
            {
                "name": c.name,
                "formula": c.describe(),
                "terms": dict(c.terms),
                "op": c.op.value,
                "value": c.value,
                "dependent": c.dependent,
            }
            for c in self.schema.constraints
        ]
        return {"features": features, "constraints": constraints, "default_budget": self.eps}


def _finite_or_none(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _budget_words(budget: Any, radius: float, mutable: bool) -> str:
    if not mutable:
        return "immutable"
    if math.isinf(radius):
        return "flip"
    if budget is None:
        return f"request eps ({radius:g})"
    if budget.absolute is not None:
        return f"absolute {radius:g}"
    if budget.range_share is not None:
        return f"{budget.range_share:g} of its range ({radius:g})"
    return f"{budget.std_share:g} of its standard deviation ({radius:g})"


def load_threat(path: Path, eps: float, train_x: np.ndarray, *others: np.ndarray) -> TabularThreat:
    """Read the schema at ``path``, check ``train_x`` and ``others`` against it, and build the
    constrained and the unconstrained threat (``std_share`` budgets from ``train_x``)."""
    schema = load_schema(path)
    for x in (train_x, *others):
        schema.check_against(x)
    return build_threat(schema, eps, train_x, *others)


def build_threat(
    schema: FeatureSchema, eps: float, train_x: np.ndarray, *others: np.ndarray
) -> TabularThreat:
    constraints = build_constraints(schema, eps, train_x)
    every_mutable = FeatureSchema(
        tuple(dataclasses.replace(f, mutable=True) for f in schema.features), schema.constraints
    )
    radius = build_constraints(every_mutable, eps, train_x).step_unit()
    scale = torch.where(radius > 0, radius, torch.ones_like(radius))
    data = torch.from_numpy(np.concatenate([train_x, *others]).astype(np.float32))
    lower = torch.where(
        torch.isfinite(constraints.lower), constraints.lower, data.min(0).values - scale
    )
    upper = torch.where(
        torch.isfinite(constraints.upper), constraints.upper, data.max(0).values + scale
    )
    return TabularThreat(
        schema, constraints, scale.float(), Box(lower[None].float(), upper[None].float()), eps
    )


class ScaledInput(nn.Module):
    """``model`` read in units of the unconstrained ball: ``u = x / scale`` per column, so the
    ball of radius 1 around ``u`` is each column's own budget around ``x``, and the image suite's
    L-inf attacks run on it unchanged."""

    scale: Tensor

    def __init__(self, model: nn.Module, scale: Tensor) -> None:
        super().__init__()
        self.model = model
        self.register_buffer("scale", scale.detach().clone())

    def forward(self, u: Tensor) -> Tensor:
        out: Tensor = self.model(u * self.scale)
        return out
