"""Scoring under a feature schema: what the constrained attacks return and what the suite counts.

The generated fraud-like set of tabular_support has a continuous, an immutable integer, a
budgeted integer, a binary, a switchable and an immutable categorical feature; its MLP is
plainly trained, so the attacks break many samples and there is much to check. Every counted
example is checked by the validator of tabular_support, written from the schema's JSON alone.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.engine.tabular_support import COLUMNS, SCHEMA, fraud_rows, train_mlp, valid_rows
from workers.engine.evaluation.suite import EvaluationTarget
from workers.engine.progress import Reporter
from workers.engine.spec import EvaluationSuite
from workers.engine.tabular import attacks
from workers.engine.tabular.constraints import violations
from workers.engine.tabular.evaluation import TabularScores, evaluate_tabular
from workers.engine.tabular.schema import parse_schema
from workers.engine.tabular.threat import TabularThreat, build_threat

EPS = 0.5
INTEGER_COLUMNS = (1, 2)
GROUPS = ((4, 5, 6), (7, 8))

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def case() -> tuple[torch.nn.Module, np.ndarray, np.ndarray, TabularThreat]:
    torch.set_num_threads(1)
    x, y = fraud_rows(500, seed=0)
    model = train_mlp(x, y, epochs=20)
    threat = build_threat(parse_schema(SCHEMA), EPS, x)
    test_x, test_y = fraud_rows(120, seed=1)
    return model, test_x, test_y, threat


@pytest.fixture(scope="module")
def scored(case: tuple[torch.nn.Module, np.ndarray, np.ndarray, TabularThreat]) -> TabularScores:
    model, x, y, threat = case
    return evaluate_tabular(model, _target(x, y, threat), threat, Reporter(), "plain")


def _target(x: np.ndarray, y: np.ndarray, threat: TabularThreat) -> EvaluationTarget:
    return EvaluationTarget(
        x=torch.from_numpy(x),
        y=torch.from_numpy(y),
        norm="linf",
        eps=EPS,
        box=threat.box,
        suite=EvaluationSuite.FAST,
        curve_points=3,
        batch_size=500,
        seed=0,
        num_classes=2,
    )


def _counted(
    scored: TabularScores, case: tuple[torch.nn.Module, np.ndarray, np.ndarray, TabularThreat]
) -> tuple[np.ndarray, np.ndarray]:
    broken = scored.broken.numpy()
    assert broken.sum() >= 10, "the plain model should be broken often enough to check"
    return scored.adversarial.numpy()[broken], case[1][broken]


def test_every_counted_example_passes_an_independent_validator_and_violations(
    scored: TabularScores, case: tuple[torch.nn.Module, np.ndarray, np.ndarray, TabularThreat]
) -> None:
    points, clean = _counted(scored, case)
    threat = case[3]

    assert valid_rows(SCHEMA, points, clean, EPS, case[1]).all()
    assert not violations(
        threat.schema, threat.constraints, torch.from_numpy(points), torch.from_numpy(clean)
    ).any()


def test_every_counted_example_is_misclassified(
    scored: TabularScores, case: tuple[torch.nn.Module, np.ndarray, np.ndarray, TabularThreat]
) -> None:
    model, _, y, _ = case
    points, _ = _counted(scored, case)

    with torch.no_grad():
        predicted = model(torch.from_numpy(points)).argmax(1).numpy()
    assert (predicted != y[scored.broken.numpy()]).all()


def test_immutable_features_are_never_changed(
    scored: TabularScores, case: tuple[torch.nn.Module, np.ndarray, np.ndarray, TabularThreat]
) -> None:
    points, clean = _counted(scored, case)

    assert (points[:, 1] == clean[:, 1]).all()
    assert (points[:, 7:9] == clean[:, 7:9]).all()


def test_categorical_groups_stay_one_hot(
    scored: TabularScores, case: tuple[torch.nn.Module, np.ndarray, np.ndarray, TabularThreat]
) -> None:
    points, _ = _counted(scored, case)

    for group in GROUPS:
        block = points[:, list(group)]
        assert np.isin(block, (0.0, 1.0)).all()
        assert (block.sum(axis=1) == 1).all()


def test_integer_features_stay_integral(
    scored: TabularScores, case: tuple[torch.nn.Module, np.ndarray, np.ndarray, TabularThreat]
) -> None:
    points, _ = _counted(scored, case)

    for column in INTEGER_COLUMNS:
        assert (points[:, column] == np.round(points[:, column])).all()


def test_the_search_returns_valid_points_without_any_repair(
    case: tuple[torch.nn.Module, np.ndarray, np.ndarray, TabularThreat],
) -> None:
    model, x, y, threat = case
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)

    found = attacks.evolution_search(
        model, xt, yt, schema=threat.schema, constraints=threat.constraints, queries=100
    )

    assert found.shape == (len(y), COLUMNS)
    assert valid_rows(SCHEMA, found.numpy(), x, EPS, x).all()


def test_the_unconstrained_worst_case_is_at_most_the_constrained_one(
    scored: TabularScores,
) -> None:
    assert scored.unconstrained.robust.correct <= scored.scores.robust.correct
    assert scored.unconstrained.clean == scored.scores.clean


def test_the_suite_counts_only_what_survives_repair(scored: TabularScores) -> None:
    for audit in scored.audits:
        assert audit.counted + audit.dropped_after_repair >= audit.fooled_before_repair
        assert audit.counted <= audit.candidates
    by_name = {audit.name: audit for audit in scored.audits}
    assert by_name["evolution"].invalid_before_repair == 0
    assert by_name["capgd-ce"].invalid_before_repair > 0


def test_capgd_breaks_a_linear_model_wherever_the_exact_constrained_optimum_does() -> None:
    """A linear score over continuous and integer features only: the worst valid point moves
    each feature to the end of its interval against the weight, so which samples can be broken
    is known exactly."""
    schema = parse_schema(
        {
            "features": [
                {"name": "a", "lower": 0, "upper": 10, "budget": {"absolute": 1.5}},
                {"name": "b", "kind": "integer", "lower": 0, "upper": 20,
                 "budget": {"absolute": 2}},
                {"name": "c", "lower": 0, "upper": 10, "mutable": False},
            ]
        }
    )  # fmt: skip
    rng = np.random.default_rng(3)
    x = np.column_stack(
        [rng.uniform(0, 10, 400), rng.integers(0, 21, 400), rng.uniform(0, 10, 400)]
    ).astype(np.float32)
    weights = torch.tensor([1.0, -0.5, 0.8])
    bias = -float((x @ weights.numpy()).mean())
    linear = torch.nn.Linear(3, 2)
    with torch.no_grad():
        linear.weight.copy_(torch.stack([-weights / 2, weights / 2]))
        linear.bias.copy_(torch.tensor([-bias / 2, bias / 2]))
    xt = torch.from_numpy(x)
    y = linear(xt).argmax(1).detach()
    threat = build_threat(schema, EPS, x)
    lower, upper = threat.constraints.bounds_around(xt)
    toward_zero = torch.where(weights > 0, lower, upper)
    toward_one = torch.where(weights > 0, upper, lower)
    toward_one[:, 1], toward_zero[:, 1] = (
        torch.floor(toward_one[:, 1]),
        torch.ceil(toward_zero[:, 1]),
    )
    worst = torch.where((y == 1)[:, None], toward_zero, toward_one)
    breakable = linear(worst).argmax(1) != y

    found = attacks.capgd(linear, xt, y, constraints=threat.constraints, steps=50)

    broken = linear(threat.constraints.repair(found, xt)).argmax(1) != y
    assert int(breakable.sum()) > 20
    assert torch.equal(broken, breakable)


def test_the_search_spends_at_most_its_query_budget_per_sample(
    case: tuple[torch.nn.Module, np.ndarray, np.ndarray, TabularThreat],
) -> None:
    model, x, y, threat = case
    rows_seen = []

    def counting(points: torch.Tensor) -> torch.Tensor:
        rows_seen.append(len(points))
        return model(points)

    attacks.evolution_search(
        counting,
        torch.from_numpy(x),
        torch.from_numpy(y),
        schema=threat.schema,
        constraints=threat.constraints,
        queries=60,
        population=20,
    )

    assert sum(rows_seen) <= len(y) * (60 + 1)
    assert sum(rows_seen) > len(y) * 20
