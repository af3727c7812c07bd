"""The exhaustive step of the tabular suite: which points it tries, what it finds that the attacks
miss, and how its cost is bounded and reported.

The sets are checked against an independent enumeration: a product over a superset of each
feature's values (fractions, out-of-range values and non-one-hot vectors included) filtered by
a validator written here from the schema's JSON alone.
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import pytest
import torch
from torch import Tensor, nn

from workers.engine.errors import Cancelled
from workers.engine.evaluation.suite import EvaluationTarget
from workers.engine.progress import Reporter
from workers.engine.spec import EvaluationSuite
from workers.engine.tabular.evaluation import evaluate_tabular
from workers.engine.tabular.exhaustive import CHUNK_POINTS, ExhaustiveSearch, Neighbourhood
from workers.engine.tabular.schema import parse_schema
from workers.engine.tabular.threat import TabularThreat, build_threat

EPS = 0.5

# columns: level (integer 0-6, budget 2), flag (binary), colour (3 one-hot), age (immutable
# integer), weight (immutable continuous)
SMALL: dict[str, Any] = {
    "features": [
        {"name": "level", "kind": "integer", "lower": 0, "upper": 6, "budget": {"absolute": 2}},
        {"name": "flag", "kind": "binary"},
        {"name": "colour", "kind": "categorical", "columns": ["red", "green", "blue"]},
        {"name": "age", "kind": "integer", "lower": 18, "upper": 99, "mutable": False},
        {"name": "weight", "lower": 0, "upper": 200, "mutable": False},
    ],
    "constraints": [{"terms": {"level": 1, "flag": 2}, "op": "<=", "value": 6}],
}
SMALL_ROWS = np.array(
    [[5, 0, 0, 1, 0, 40, 71.5], [1, 1, 1, 0, 0, 23, 80.25], [6, 0, 0, 0, 1, 60, 55]],
    dtype=np.float32,
)


def _threat(document: dict[str, Any], rows: np.ndarray) -> TabularThreat:
    return build_threat(parse_schema(document), EPS, rows)


def _small_valid(point: tuple[float, ...], clean: np.ndarray) -> bool:
    """SMALL's rules, from its JSON: level an integer in [0, 6] within 2 of the clean value;
    flag 0 or 1; colour one-hot; age and weight unchanged; level + 2 * flag <= 6."""
    level, flag, red, green, blue, age, weight = point
    return (
        level == round(level)
        and 0 <= level <= 6
        and abs(level - clean[0]) <= 2
        and flag in (0, 1)
        and sorted((red, green, blue)) == [0, 0, 1]
        and (age, weight) == (clean[5], clean[6])
        and level + 2 * flag <= 6
    )


@pytest.mark.parametrize("row", range(len(SMALL_ROWS)))
def test_the_enumeration_yields_exactly_the_valid_points(row: int) -> None:
    clean = SMALL_ROWS[row]
    neighbourhood = Neighbourhood(*_parts(_threat(SMALL, SMALL_ROWS)))
    superset = itertools.product(
        np.arange(-3, 10, 0.5),
        (0, 0.5, 1),
        *[(0, 1)] * 3,
        (clean[5], clean[5] + 1),
        (clean[6], clean[6] + 0.5),
    )
    expected = {p for p in superset if _small_valid(p, clean)}

    found = neighbourhood.valid_points(torch.from_numpy(clean))

    as_tuples = [tuple(float(v) for v in point) for point in found.tolist()]
    assert len(as_tuples) == len(set(as_tuples))
    assert set(as_tuples) == {tuple(float(v) for v in p) for p in expected}


def _parts(threat: TabularThreat) -> tuple[Any, Any]:
    return threat.schema, threat.constraints


# A model that is right everywhere but at one point, with no gradient anywhere: nothing leads an
# attack to it.

SPREAD: dict[str, Any] = {
    "features": [
        {"name": f"count_{i}", "kind": "integer", "lower": 0, "upper": 20,
         "budget": {"absolute": 3}}
        for i in range(5)
    ]
}  # fmt: skip
SPREAD_ROWS = np.array([[10, 10, 10, 10, 10], [2, 15, 8, 12, 6]], dtype=np.float32)


class OneWeakPoint(nn.Module):
    """Class 0 everywhere but at ``weak`` (class 1); the output depends on the input through a
    zero gradient only."""

    def __init__(self, weak: Tensor) -> None:
        super().__init__()
        self.register_buffer("weak", weak)

    def forward(self, x: Tensor) -> Tensor:
        hit = (x == self.weak).all(dim=1, keepdim=True).to(x.dtype)
        return torch.cat([1 - hit, hit], dim=1) + 0 * x.sum(dim=1, keepdim=True)


def _target(rows: np.ndarray, threat: TabularThreat) -> EvaluationTarget:
    return EvaluationTarget(
        x=torch.from_numpy(rows),
        y=torch.zeros(len(rows), dtype=torch.long),
        norm="linf",
        eps=EPS,
        box=threat.box,
        suite=EvaluationSuite.FAST,
        curve_points=2,
        batch_size=500,
        seed=0,
        num_classes=2,
    )


def test_a_single_weak_point_the_attacks_miss_is_found_and_counted_as_missed() -> None:
    torch.set_num_threads(1)
    threat = _threat(SPREAD, SPREAD_ROWS)
    weak = torch.tensor([13.0, 7.0, 12.0, 8.0, 11.0])  # every feature moved, by 1 to 3
    model = OneWeakPoint(weak)

    scores = evaluate_tabular(model, _target(SPREAD_ROWS, threat), threat, Reporter(), "flat")

    counted = {audit.name: audit.counted for audit in scores.audits}
    assert counted == {"capgd-ce": 0, "capgd-t": 0, "evolution": 0, "exhaustive": 1}
    assert scores.broken.tolist() == [True, False]
    assert torch.equal(scores.adversarial[0], weak)
    assert scores.scores.robust.correct == 1
    assert scores.exhaustive["missed_by_attacks"] == 1
    assert scores.exhaustive["headline_exact"] is True
    (check,) = [c for c in scores.scores.masking if c.name.startswith("exhaustive")]
    assert check.fired


class Constant(nn.Module):
    """Class 0 for every input: robust everywhere, so every point of every set is tried."""

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([torch.ones_like(x[:, :1]), torch.zeros_like(x[:, :1])], dim=1)


def _run(search: ExhaustiveSearch, rows: np.ndarray, threat: TabularThreat) -> Tensor:
    x = torch.from_numpy(rows)
    y = torch.zeros(len(rows), dtype=torch.long)
    return search(Constant(), x, y, threat.constraints, torch.Generator())


def test_a_sample_above_the_per_sample_cap_is_skipped_and_counted() -> None:
    threat = _threat(SPREAD, SPREAD_ROWS)
    search = ExhaustiveSearch(
        threat.schema, threat.constraints, point_budget=10**6, max_points_per_sample=7**5 - 1
    )

    _run(search, SPREAD_ROWS, threat)  # row 0: 7**5 points; row 1: 6 * 7**4 (2 - 3 < 0)

    tally = search.tally
    assert tally.skipped["too_many_points"] == 1
    assert (tally.exact, tally.points) == (1, 6 * 7**4)
    assert "skipped 1 (1 too many points)" in tally.summary()


def test_the_step_stops_when_the_point_budget_is_spent_and_says_so() -> None:
    rows = np.repeat(SPREAD_ROWS[:1], 4, axis=0)
    threat = _threat(SPREAD, rows)
    search = ExhaustiveSearch(threat.schema, threat.constraints, point_budget=2 * 7**5 + 100)

    _run(search, rows, threat)

    tally = search.tally
    assert tally.budget_exhausted
    assert (tally.exact, tally.skipped["point_budget"], tally.points) == (2, 2, 2 * 7**5)
    assert search.tally.to_dict()["budget_exhausted"] is True
    assert "skipped 2 (2 point budget spent)" in tally.summary()


def test_a_cancelled_job_stops_the_enumeration_between_chunks() -> None:
    threat = _threat(SPREAD, SPREAD_ROWS[:1])  # 7**5 points: two chunks
    checks: list[int] = []

    def cancel_on_the_second_check() -> None:
        checks.append(1)
        if len(checks) == 2:
            raise Cancelled("the job was cancelled")

    search = ExhaustiveSearch(
        threat.schema, threat.constraints, point_budget=10**6, check=cancel_on_the_second_check
    )

    with pytest.raises(Cancelled):
        _run(search, SPREAD_ROWS[:1], threat)
    assert search.tally.points == CHUNK_POINTS


LINEAR: dict[str, Any] = {
    "features": [
        {"name": "today", "kind": "integer", "lower": 0, "upper": 9, "budget": {"absolute": 1}},
        {"name": "earlier", "kind": "integer", "lower": 0, "upper": 9,
         "budget": {"absolute": 2}},
        {"name": "week", "kind": "integer", "lower": 0, "upper": 12},
        {"name": "spend", "lower": 0, "upper": 100},
        {"name": "online", "kind": "binary"},
    ],
    "constraints": [
        {"terms": {"week": 1, "today": -1, "earlier": -1}, "op": "==", "value": 0},
        {"terms": {"spend": 1, "today": -2.5, "earlier": -1.5, "online": -4}, "op": "==",
         "value": 1},
    ],
}  # fmt: skip
LINEAR_ROWS = np.array([[5, 6, 11, 26.5, 1], [2, 3, 5, 10.5, 0]], dtype=np.float32)


def test_every_enumerated_point_keeps_the_linear_equalities() -> None:
    threat = _threat(LINEAR, LINEAR_ROWS)
    neighbourhood = Neighbourhood(*_parts(threat))

    for clean in LINEAR_ROWS:
        found = neighbourhood.valid_points(torch.from_numpy(clean)).double()
        today, earlier, week, spend, online = found.T
        assert torch.equal(week, today + earlier)
        assert torch.allclose(spend, 1 + 2.5 * today + 1.5 * earlier + 4 * online)
        # every free move whose week stays within its range [0, 12]
        expected = {
            (t, e, o)
            for t in range(int(clean[0]) - 1, int(clean[0]) + 2)
            for e in range(int(clean[1]) - 2, int(clean[1]) + 3)
            for o in (0, 1)
            if 0 <= t <= 9 and 0 <= e <= 9 and t + e <= 12
        }
        moves = zip(today.tolist(), earlier.tolist(), online.tolist(), strict=True)
        assert {(int(t), int(e), int(o)) for t, e, o in moves} == expected


def test_a_continuous_feature_that_moves_makes_the_step_not_apply() -> None:
    document = {"features": [*SPREAD["features"], {"name": "amount", "lower": 0, "upper": 50}]}
    rows = np.column_stack([SPREAD_ROWS, [[20.0], [30.0]]]).astype(np.float32)
    threat = _threat(document, rows)
    search = ExhaustiveSearch(threat.schema, threat.constraints, point_budget=10**6)

    found = _run(search, rows, threat)

    assert torch.equal(found, torch.from_numpy(rows))
    assert search.tally.skipped["continuous_feature"] == 2
    assert search.tally.points == 0
    assert search.tally.to_dict()["applies"] is False
    assert "does not apply (feature 'amount' is continuous and mutable" in search.tally.summary()
    with pytest.raises(ValueError, match="not finite"):
        Neighbourhood(threat.schema, threat.constraints)
