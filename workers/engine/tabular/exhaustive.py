"""Exact constrained robustness where the attacker's set is finite: every valid point tried.

The attacks of the suite search, and a search can miss: on ANES 1996 the hardened model kept a
sample that a brute force broke. When every feature the attacker moves is discrete (integer,
binary, a categorical group) the points reachable from a sample are finitely many, often few
(at most 14,175 per respondent there), and trying all of them is the exact answer: a sample the
enumeration leaves standing is robust, not merely unbroken.

Which points: per feature, the immutable ones (and frozen groups) as in the clean row; an
integer every integer of its interval around the clean value (:meth:`FeatureConstraints.
bounds_around`: range and budget, as the attacks and the repair use it); a binary 0 and 1; a
mutable group each of its categories (a switch, whatever the budget). A dependent of a linear
equality is not enumerated but solved from the others, as repair does (integer ones rounded);
inequalities, and each dependent's range and reach, are then checked by
:func:`violations`, the suite's own check, so a point counts only if it is valid. A continuous
feature that may move (by more than nothing) makes the set infinite: then the step does not
apply, and the report says so, naming the feature.

The cost is bounded and counted without building a point first (the product of the option
counts): a sample with more than :data:`MAX_POINTS_PER_SAMPLE` points is skipped, and once a
sample would take the evaluation past its point budget (:data:`POINT_BUDGET`, per suite and per
model) the step stops; both are counted, so the report says for how many samples the headline is
exact. A sample's search stops at its first valid misclassified point whose repair (the suite's,
as for every attack) is still valid and misclassified: that point is its adversarial example.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from workers.engine.evaluation.types import Classifier
from workers.engine.spec import EvaluationSuite
from workers.engine.tabular.constraints import FeatureConstraints, violations
from workers.engine.tabular.schema import FeatureSchema, Kind

MAX_POINTS_PER_SAMPLE = 50_000
"""A sample whose set holds more points than this is skipped (and counted as skipped)."""
POINT_BUDGET = {EvaluationSuite.STANDARD: 5_000_000, EvaluationSuite.FAST: 1_000_000}
"""Points one model's evaluation may try in all; the step stops at the first sample that would
go past it."""
CHUNK_POINTS = 16_384
"""Points built and classified at once."""


@dataclass(frozen=True)
class _Free:
    """A feature the enumeration moves: its kind and its columns of ``x``."""

    kind: Kind
    columns: tuple[int, ...]


def not_finite(schema: FeatureSchema, constraints: FeatureConstraints) -> str | None:
    """Why the attacker's set is not finite under ``schema``, naming the feature; None when it
    is (every feature that moves is discrete, or a dependent solved from discrete ones)."""
    dependents = set(schema.dependents())
    start = 0
    for feature in schema.features:
        column = start
        start += len(feature.columns)
        moves = feature.mutable and float(constraints.radius[column]) > 0
        if feature.kind is Kind.CONTINUOUS and moves and feature.name not in dependents:
            return (
                f"feature {feature.name!r} is continuous and mutable: the points within its"
                " budget are not finitely many"
            )
    return None


class Neighbourhood:
    """The points an attacker can reach from a sample under a finite schema, numbered in mixed
    radix (one digit per moving feature, the last fastest), so that they can be counted and
    built a chunk at a time."""

    def __init__(self, schema: FeatureSchema, constraints: FeatureConstraints) -> None:
        reason = not_finite(schema, constraints)
        if reason is not None:
            raise ValueError(f"the attacker's set is not finite: {reason}")
        self.schema, self.constraints = schema, constraints
        self.free = _free_features(schema, constraints)

    def options(self, x: Tensor) -> Tensor:
        """Per sample (rows of ``x``) and moving feature, how many values it can take (int64)."""
        lower, upper = self.constraints.to(x.device).bounds_around(x)
        counts = torch.ones((x.shape[0], len(self.free)), dtype=torch.long, device=x.device)
        for j, feature in enumerate(self.free):
            column = feature.columns[0]
            if feature.kind is Kind.INTEGER:
                low, high = torch.ceil(lower[:, column]), torch.floor(upper[:, column])
                counts[:, j] = (high - low + 1).clamp(min=1).long()
            elif feature.kind is Kind.BINARY:
                counts[:, j] = 2
            else:
                counts[:, j] = len(feature.columns)
        return counts

    def sizes(self, x: Tensor, cap: int) -> list[int]:
        """Per sample, how many points its set holds before any check, counted without building
        them; a count above ``cap`` is given as ``cap + 1``."""
        sizes = []
        for row in self.options(x).tolist():
            size = 1
            for count in row:
                size = min(size * min(count, cap + 1), cap + 1)
            sizes.append(size)
        return sizes

    def points(self, x: Tensor, start: int, stop: int) -> Tensor:
        """Points ``start`` to ``stop`` of the set of the sample ``x`` (one row, shape ``(F,)``),
        each linear equality solved for its dependent; not yet checked."""
        counts = self.options(x[None])[0].tolist()
        lower, _ = self.constraints.to(x.device).bounds_around(x[None])
        number = torch.arange(start, stop, device=x.device)
        points = x.repeat(stop - start, 1)
        stride = 1
        for j in reversed(range(len(self.free))):
            feature, count = self.free[j], counts[j]
            digit = (number // stride) % count
            stride *= count
            columns = list(feature.columns)
            if feature.kind is Kind.CATEGORICAL:
                points[:, columns] = torch.nn.functional.one_hot(digit, count).to(x.dtype)
            elif feature.kind is Kind.BINARY:
                points[:, columns[0]] = digit.to(x.dtype)
            else:
                points[:, columns[0]] = torch.ceil(lower[0, columns[0]]) + digit.to(x.dtype)
        return self._solve(points)

    def valid(self, points: Tensor, x: Tensor) -> Tensor:
        """Per point, whether it is a valid move from the sample ``x`` (one row): the suite's
        own check, :func:`violations`."""
        constraints = self.constraints.to(points.device)
        clean = x.expand(points.shape[0], -1)
        return ~violations(self.schema, constraints, points, clean)

    def valid_points(self, x: Tensor) -> Tensor:
        """Every valid point reachable from the sample ``x`` (one row), the row itself among
        them: for tests and the benchmark; the search builds them a chunk at a time."""
        (size,) = self.sizes(x[None], cap=2**62)
        found = []
        for start in range(0, size, CHUNK_POINTS):
            points = self.points(x, start, min(size, start + CHUNK_POINTS))
            found.append(points[self.valid(points, x)])
        return torch.cat(found)

    def _solve(self, points: Tensor) -> Tensor:
        """Each equality solved for its dependent, integer columns rounded: what repair makes of
        a point whose free columns are already valid."""
        linear = self.constraints.linear
        if linear is None:
            return points
        solved = linear.to(points.device).solve_dependents(points.double())
        integer = self.constraints.integer.to(points.device)
        return torch.where(integer, torch.round(solved), solved).to(points.dtype)


def _free_features(schema: FeatureSchema, constraints: FeatureConstraints) -> list[_Free]:
    """The features the enumeration moves: mutable, discrete, not a dependent, able to move."""
    dependents = set(schema.dependents())
    free = []
    start = 0
    for feature in schema.features:
        columns = tuple(range(start, start + len(feature.columns)))
        start += len(feature.columns)
        if not feature.mutable or feature.name in dependents or feature.kind is Kind.CONTINUOUS:
            continue
        if float(constraints.radius[columns[0]]) > 0:
            free.append(_Free(feature.kind, columns))
    return free


@dataclass
class ExhaustiveTally:
    """What the enumeration did for one model: the report's ``exhaustive`` block."""

    point_budget: int
    max_points_per_sample: int
    not_finite: str | None
    """Why the step does not apply (a continuous feature that moves), or None."""
    samples: int = 0
    """Samples the attacks before it left robust, handed to it."""
    exact: int = 0
    """Samples whose every valid point was tried (robust or not)."""
    found: int = 0
    """Samples with a valid point the model misclassifies (kept as the example)."""
    skipped: dict[str, int] = field(
        default_factory=lambda: {"too_many_points": 0, "point_budget": 0, "continuous_feature": 0}
    )
    repair_disagreed: int = 0
    """Samples whose misclassified valid points the suite's repair all moved onto correctly
    classified ones: neither broken nor exact (never seen; counted so it could not hide)."""
    points: int = 0
    """Points built and checked."""
    budget_exhausted: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "applies": self.not_finite is None,
            "not_finite": self.not_finite,
            "samples": self.samples,
            "exact": self.exact,
            "found": self.found,
            "skipped": dict(self.skipped),
            "repair_disagreed": self.repair_disagreed,
            "points": self.points,
            "point_budget": self.point_budget,
            "max_points_per_sample": self.max_points_per_sample,
            "budget_exhausted": self.budget_exhausted,
            "summary": self.summary(),
        }

    def summary(self) -> str:
        """One line: ``applied to N samples, exact for M, skipped K (...)``."""
        if self.not_finite is not None:
            return (
                f"does not apply ({self.not_finite}); skipped {self.samples} samples"
                " (continuous feature)"
            )
        skipped = sum(self.skipped.values())
        reasons = ", ".join(
            f"{count} {words}"
            for count, words in (
                (self.skipped["too_many_points"], "too many points"),
                (self.skipped["point_budget"], "point budget spent"),
            )
            if count
        )
        return (
            f"applied to {self.samples} samples, exact for {self.exact}, skipped {skipped}"
            + (f" ({reasons})" if reasons else "")
            + f"; {self.points:,} points tried"
        )


class ExhaustiveSearch:
    """The suite's last member, called like an attack (:data:`AttackRun`) on the samples the
    attacks before it left robust: returns per sample a valid misclassified point if one
    exists and the budget allowed looking, else the clean row. Keeps its counts in
    :attr:`tally` across the batches of one model's evaluation."""

    def __init__(
        self,
        schema: FeatureSchema,
        constraints: FeatureConstraints,
        point_budget: int,
        max_points_per_sample: int = MAX_POINTS_PER_SAMPLE,
        check: Callable[[], None] = lambda: None,
    ) -> None:
        reason = not_finite(schema, constraints)
        self.schema = schema
        self.check = check
        """Raises to stop the enumeration between chunks (a cancelled job, its time limit)."""
        self.tally = ExhaustiveTally(point_budget, max_points_per_sample, reason)
        self.neighbourhood = None if reason else Neighbourhood(schema, constraints)

    def __call__(
        self,
        model: Classifier,
        x: Tensor,
        y: Tensor,
        constraints: FeatureConstraints,
        generator: torch.Generator,
    ) -> Tensor:
        del generator  # nothing is drawn
        tally = self.tally
        tally.samples += len(y)
        found = x.clone()
        if self.neighbourhood is None:
            tally.skipped["continuous_feature"] += len(y)
            return found
        sizes = self.neighbourhood.sizes(x, tally.max_points_per_sample)
        for row, size in enumerate(sizes):
            if not tally.budget_exhausted and size > tally.max_points_per_sample:
                tally.skipped["too_many_points"] += 1
                continue
            if tally.budget_exhausted or size > tally.point_budget - tally.points:
                tally.budget_exhausted = True
                tally.skipped["point_budget"] += 1
                continue
            point = self._search(model, x[row], y[row], size, constraints)
            if point is not None:
                found[row] = point
        return found

    def _search(
        self,
        model: Classifier,
        x: Tensor,
        y: Tensor,
        size: int,
        constraints: FeatureConstraints,
    ) -> Tensor | None:
        """Every point of the sample ``x``'s set, a chunk at a time, until a valid one is
        misclassified (and stays so once repaired); counts the sample and its points."""
        assert self.neighbourhood is not None
        tally = self.tally
        disagreed = False
        for start in range(0, size, CHUNK_POINTS):
            self.check()
            points = self.neighbourhood.points(x, start, min(size, start + CHUNK_POINTS))
            tally.points += len(points)
            valid = self.neighbourhood.valid(points, x)
            with torch.no_grad():
                wrong = model(points).argmax(1) != y
            fooled = (valid & wrong).nonzero().flatten()
            if fooled.numel() == 0:
                continue
            candidates = points[fooled]
            clean = x.expand(len(candidates), -1)
            repaired = constraints.repair(candidates, clean)
            with torch.no_grad():
                kept = model(repaired).argmax(1) != y
            kept &= ~violations(self.schema, constraints, repaired, clean)
            if bool(kept.any()):
                tally.exact += 1
                tally.found += 1
                return candidates[int(kept.nonzero()[0])]
            disagreed = True
        if disagreed:
            tally.repair_disagreed += 1
        else:
            tally.exact += 1
        return None


def exhaustive_search(
    suite: EvaluationSuite,
    schema: FeatureSchema,
    constraints: FeatureConstraints,
    check: Callable[[], None] = lambda: None,
) -> ExhaustiveSearch:
    """The enumeration with ``suite``'s point budget."""
    return ExhaustiveSearch(schema, constraints, POINT_BUDGET[suite], check=check)
