"""Linear constraints between features: reading them, refusing the ones that cannot be kept,
repair, and what the attacks and the training perturbation return."""

from __future__ import annotations

import copy
import math
import re
from typing import Any

import numpy as np
import pytest
import torch

from tests.engine.linear_support import EPS, SCHEMA, payment_rows, valid_payment_rows
from workers.engine.errors import InvalidData
from workers.engine.tabular.constraints import build_constraints, violations, violations_by_kind
from workers.engine.tabular.schema import Op, parse_schema

TOTAL, CARD, CASH, TODAY, EARLIER, WEEK, ONLINE = 2, 0, 1, 4, 5, 6, 10


def _schema(**change: Any) -> dict[str, Any]:
    document = copy.deepcopy(SCHEMA)
    document["constraints"] = change.pop("constraints", document["constraints"])
    return document


def _refused(document: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidData, match=re.escape(message)):
        parse_schema(document)


def _equality(terms: dict[str, float], **more: Any) -> dict[str, Any]:
    return {"terms": terms, "op": "==", "value": 0, **more}


# Reading


def test_constraints_are_read_with_their_terms_op_and_dependent() -> None:
    schema = parse_schema(SCHEMA)

    first, second, third, fourth = schema.constraints
    assert first.terms == (("total", 1.0), ("card", -1.0), ("cash", -1.0))
    assert first.op is Op.EQ
    assert first.dependent == "total"
    assert second.dependent == "tx_week"
    assert third.op is Op.LE
    assert third.dependent is None
    assert fourth.op is Op.GE
    assert first.describe() == "total - card - cash == 0"
    assert third.describe() == "cash - 0.5 * card <= 300"


def test_an_equality_without_a_dependent_recomputes_its_first_term_without_a_budget() -> None:
    schema = parse_schema(_schema(constraints=[_equality({"card": -1, "total": 1, "cash": -1})]))

    assert schema.constraints[0].dependent == "total"


def test_an_equality_over_immutable_features_only_needs_no_dependent() -> None:
    document = copy.deepcopy(SCHEMA)
    document["features"].append({"name": "limit", "mutable": False})
    document["constraints"] = [_equality({"limit": 1, "account_age": -2})]

    assert parse_schema(document).constraints[0].dependent is None


# Refusing what cannot be kept


def test_a_constraint_naming_an_unknown_feature_is_refused_naming_it() -> None:
    _refused(
        _schema(constraints=[_equality({"total": 1, "fees": -1})]),
        "linear constraint 1 ('linear constraint 1') names unknown feature 'fees'",
    )


def test_a_categorical_group_is_named_by_its_columns() -> None:
    _refused(
        _schema(constraints=[{"terms": {"merchant": 1}, "op": "<=", "value": 1}]),
        "names unknown feature 'merchant' (a categorical feature: name its columns"
        " ['food', 'travel', 'online'])",
    )


@pytest.mark.parametrize("coefficient", [math.inf, math.nan, 0, "1", True])
def test_a_coefficient_that_is_not_a_finite_nonzero_number_is_refused(coefficient: Any) -> None:
    with pytest.raises(InvalidData, match="the coefficient of 'card'"):
        parse_schema(
            _schema(constraints=[{"terms": {"card": coefficient}, "op": "<=", "value": 1}])
        )


def test_an_unknown_op_is_refused_listing_the_ops() -> None:
    _refused(
        _schema(constraints=[{"terms": {"card": 1}, "op": "<", "value": 1}]),
        "op must be one of ['==', '<=', '>='], got '<'",
    )


def test_an_unknown_key_of_a_constraint_is_refused() -> None:
    _refused(
        _schema(constraints=[{"terms": {"card": 1}, "op": "<=", "value": 1, "weight": 2}]),
        "linear constraint 1: unknown keys ['weight']",
    )


def test_an_unknown_top_level_key_is_refused() -> None:
    _refused({**SCHEMA, "constraint": []}, "the feature schema has unknown keys ['constraint']")


def test_an_equality_over_discrete_features_that_cannot_be_solved_exactly_is_refused() -> None:
    _refused(
        _schema(constraints=[_equality({"tx_today": 2, "tx_earlier": -1, "foreign": -1})]),
        "an equality that moves ['tx_today', 'tx_earlier', 'foreign'] cannot be repaired exactly",
    )


def test_an_integer_dependent_needs_integral_terms() -> None:
    _refused(
        _schema(constraints=[_equality({"tx_week": 1, "card": -0.5}, dependent="tx_week")]),
        "'tx_week' cannot be its dependent: an integer dependent needs coefficient +-1",
    )


def test_a_dependent_with_a_budget_of_its_own_is_refused() -> None:
    _refused(
        _schema(constraints=[_equality({"total": 1, "card": -1, "cash": -1}, dependent="cash")]),
        "'cash' cannot be its dependent: a dependent is recomputed from the others and takes no"
        " budget of its own",
    )


def test_an_immutable_dependent_is_refused() -> None:
    _refused(
        _schema(
            constraints=[_equality({"account_age": 1, "tx_week": -1}, dependent="account_age")]
        ),
        "'account_age' cannot be its dependent: it is immutable",
    )


def test_two_equalities_recomputing_one_column_are_refused() -> None:
    _refused(
        _schema(
            constraints=[
                _equality({"total": 1, "card": -1, "cash": -1}, dependent="total"),
                _equality({"total": 1, "card": -2}, dependent="total"),
            ]
        ),
        "linear constraints 1 and 2 both recompute 'total'",
    )


def test_an_equality_using_a_column_a_later_one_recomputes_is_refused() -> None:
    document = copy.deepcopy(SCHEMA)
    document["features"].append({"name": "grand_total", "lower": 0})
    document["constraints"] = [
        _equality({"grand_total": 1, "total": -1}, dependent="grand_total"),
        _equality({"total": 1, "card": -1, "cash": -1}, dependent="total"),
    ]

    _refused(document, "linear constraint 1 ('linear constraint 1') uses 'total', which linear")


def test_data_that_breaks_a_constraint_is_refused_naming_the_constraint_and_row() -> None:
    x, _ = payment_rows(20)
    x[7, TOTAL] += 1.0

    with pytest.raises(InvalidData, match=re.escape("linear constraint 1 ('total is card plus")):
        parse_schema(SCHEMA).check_against(x)
    with pytest.raises(InvalidData, match="does not hold in row 7"):
        parse_schema(SCHEMA).check_against(x)


def test_data_within_the_tolerance_is_accepted() -> None:
    x, _ = payment_rows(50)
    x[:, TOTAL] *= 1 + 1e-7

    parse_schema(SCHEMA).check_against(x)


# Repair and violations


@pytest.fixture(scope="module")
def data() -> np.ndarray:
    return payment_rows(400)[0]


def _constraints(data: np.ndarray) -> Any:
    return build_constraints(parse_schema(SCHEMA), EPS, data)


def test_a_dependent_may_move_as_far_as_its_parts_make_it(data: np.ndarray) -> None:
    constraints = _constraints(data)

    assert float(constraints.radius[TOTAL]) == pytest.approx(50 + 30)
    assert float(constraints.radius[WEEK]) == pytest.approx(2 + 4)
    assert float(constraints.scaled(0.5).radius[TOTAL]) == pytest.approx(25 + 15)


def test_repair_recomputes_the_total_from_its_parts(data: np.ndarray) -> None:
    constraints = _constraints(data)
    x = torch.from_numpy(data[:5])
    candidate = x.clone()
    candidate[:, CARD] += 20
    candidate[:, TOTAL] -= 7

    repaired = constraints.repair(candidate, x)

    assert torch.allclose(repaired[:, TOTAL], repaired[:, CARD] + repaired[:, CASH])


def test_repair_keeps_integer_equalities_exact(data: np.ndarray) -> None:
    constraints = _constraints(data)
    x = torch.from_numpy(data[:50])
    candidate = x + torch.rand(x.shape, generator=torch.Generator().manual_seed(0)) * 3

    repaired = constraints.repair(candidate, x)

    assert torch.equal(repaired[:, WEEK], repaired[:, TODAY] + repaired[:, EARLIER])


def test_repair_moves_continuous_columns_back_under_an_inequality() -> None:
    x, _ = payment_rows(400, seed=4)
    constraints = build_constraints(parse_schema(SCHEMA), EPS, x)
    xt = torch.from_numpy(x)
    candidate = xt.clone()
    candidate[:, CASH] += 30
    candidate[:, CARD] -= 50

    repaired = constraints.repair(candidate, xt)

    cap = repaired[:, CASH] - 0.5 * repaired[:, CARD]
    assert bool(((candidate[:, CASH] - 0.5 * candidate[:, CARD]) > 300).any())
    assert bool((cap <= 300 + 1e-2).all())
    assert valid_payment_rows(SCHEMA, repaired.numpy(), x, EPS, x).all()


def test_repair_rounds_integers_towards_the_side_that_keeps_an_inequality() -> None:
    """2a + b <= 10: the candidate (2.6, 4.8) keeps it, rounded to nearest (3, 5) it does not;
    rounded down (2, 4) it does, a valid move rather than a retreat to the clean point."""
    schema = parse_schema(
        {
            "features": [
                {"name": "a", "kind": "integer", "lower": 0, "budget": {"absolute": 2}},
                {"name": "b", "kind": "integer", "lower": 0, "budget": {"absolute": 2}},
            ],
            "constraints": [{"terms": {"a": 2, "b": 1}, "op": "<=", "value": 10}],
        }
    )
    x = torch.tensor([[3.0, 4.0]])
    constraints = build_constraints(schema, EPS, x.numpy())

    repaired = constraints.repair(torch.tensor([[2.6, 4.8]]), x)

    assert repaired.tolist() == [[2.0, 4.0]]
    assert not violations(schema, constraints, repaired, x).any()


def test_an_inequality_on_a_dependent_moves_its_parts() -> None:
    """total = card + cash and total <= 1000: parts pushed up past the cap are brought back
    onto it (not to the clean point) so that the recomputed total keeps it."""
    schema = parse_schema(
        {
            "features": [
                {"name": "card", "lower": 0, "upper": 1000, "budget": {"absolute": 50}},
                {"name": "cash", "lower": 0, "upper": 500, "budget": {"absolute": 30}},
                {"name": "total", "lower": 0, "upper": 1500},
            ],
            "constraints": [
                _equality({"total": 1, "card": -1, "cash": -1}),
                {"terms": {"total": 1}, "op": "<=", "value": 1000},
            ],
        }
    )
    x = torch.tensor([[600.0, 390.0, 990.0]])
    constraints = build_constraints(schema, EPS, x.numpy())

    repaired = constraints.repair(torch.tensor([[650.0, 420.0, 1070.0]]), x)

    card, cash, total = repaired[0].tolist()
    assert total == pytest.approx(card + cash)
    assert total == pytest.approx(1000, abs=1e-3)
    assert (card, cash) != (600.0, 390.0)
    assert not violations(schema, constraints, repaired, x).any()


def test_a_candidate_that_cannot_be_repaired_falls_back_towards_the_clean_point() -> None:
    """Online with a card of 10 needs the card at 50 or more: beyond a card budget of 5."""
    document = copy.deepcopy(SCHEMA)
    document["features"][0]["budget"] = {"absolute": 5}
    x = np.array([[10, 5, 15, 100, 1, 2, 3, 0, 1, 0, 0]], dtype=np.float32)
    constraints = build_constraints(parse_schema(document), EPS, x)
    xt = torch.from_numpy(x)
    candidate = xt.clone()
    candidate[0, 8:11] = torch.tensor([0.0, 0.0, 1.0])

    repaired = constraints.repair(candidate, xt)

    assert torch.equal(repaired, xt)


def test_violations_count_a_broken_linear_constraint(data: np.ndarray) -> None:
    constraints = _constraints(data)
    schema = parse_schema(SCHEMA)
    x = torch.from_numpy(data[:4])
    point = x.clone()
    point[1, TOTAL] += 1
    point[2, TODAY] += 1

    kinds = violations_by_kind(schema, constraints, point, x)

    assert kinds["linear"].tolist() == [False, True, True, False]
    assert violations(schema, constraints, point, x).tolist() == [False, True, True, False]


def test_repair_gives_points_the_independent_validator_accepts(data: np.ndarray) -> None:
    constraints = _constraints(data)
    x = torch.from_numpy(data)
    noise = torch.rand(x.shape, generator=torch.Generator().manual_seed(1)) * 2 - 1
    candidate = x + noise * constraints.step_unit() * 1.5

    repaired = constraints.repair(candidate, x)

    assert valid_payment_rows(SCHEMA, repaired.numpy(), data, EPS, data).all()
    assert not violations(parse_schema(SCHEMA), constraints, repaired, x).any()


def test_projection_keeps_the_relaxation_on_the_constraints(data: np.ndarray) -> None:
    constraints = _constraints(data)
    x = torch.from_numpy(data)
    noise = torch.rand(x.shape, generator=torch.Generator().manual_seed(2)) * 2 - 1

    projected = constraints.project(x + noise * constraints.step_unit(), x).double()

    assert torch.allclose(projected[:, TOTAL], projected[:, CARD] + projected[:, CASH])
    assert torch.allclose(projected[:, WEEK], projected[:, TODAY] + projected[:, EARLIER])
    assert bool((projected[:, CASH] - 0.5 * projected[:, CARD] <= 300 + 1e-3).all())


def test_the_gradient_reaches_the_parts_through_the_total(data: np.ndarray) -> None:
    constraints = _constraints(data)
    grad = torch.zeros(1, data.shape[1])
    grad[0, TOTAL] = 1.0
    grad[0, WEEK] = -2.0

    carried = constraints.gradient(grad)

    assert carried[0, TOTAL] == 0
    assert carried[0, WEEK] == 0
    assert carried[0, CARD] == 1.0
    assert carried[0, CASH] == 1.0
    assert carried[0, TODAY] == -2.0
    assert carried[0, EARLIER] == -2.0
