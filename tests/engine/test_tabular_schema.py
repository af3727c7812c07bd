"""Feature schemas for tabular data: what each column is, and what an attacker may do to it."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from workers.engine.data import load_npz
from workers.engine.errors import InvalidData
from workers.engine.tabular.constraints import build_constraints, violations
from workers.engine.tabular.schema import FeatureSchema, Kind, parse_schema

FRAUD: dict[str, Any] = {
    "features": [
        {"name": "amount", "lower": 0, "upper": 1000, "budget": {"range_share": 0.05}},
        {"name": "account_age", "kind": "integer", "lower": 0, "mutable": False},
        {"name": "tx_24h", "kind": "integer", "lower": 0, "upper": 50, "budget": {"absolute": 2}},
        {"name": "foreign", "kind": "binary"},
        {"name": "merchant", "kind": "categorical", "columns": ["food", "travel", "online"]},
    ]
}


def _rows() -> np.ndarray:
    return np.array(
        [
            [120.0, 400, 3, 0, 1, 0, 0],
            [15.5, 20, 0, 1, 0, 0, 1],
            [999.0, 3000, 50, 0, 0, 1, 0],
        ],
        dtype=np.float32,
    )


def _with(**changes: Any) -> dict[str, Any]:
    feature = {"name": "f", **changes}
    return {"features": [feature]}


def test_a_categorical_feature_stands_for_its_one_hot_columns_in_order() -> None:
    schema = parse_schema(FRAUD)
    assert schema.columns == (
        "amount",
        "account_age",
        "tx_24h",
        "foreign",
        "food",
        "travel",
        "online",
    )
    assert schema.features[4].kind is Kind.CATEGORICAL


def test_an_unknown_key_is_refused_naming_the_feature() -> None:
    with pytest.raises(InvalidData, match=re.escape("feature 'f': unknown keys ['bounds']")):
        parse_schema(_with(bounds=[0, 1]))


def test_a_lower_bound_above_the_upper_is_refused() -> None:
    with pytest.raises(InvalidData, match=re.escape("lower (5.0) must be below upper (1.0)")):
        parse_schema(_with(lower=5, upper=1))


def test_an_unknown_kind_is_refused_listing_the_kinds() -> None:
    with pytest.raises(InvalidData, match="kind must be one of"):
        parse_schema(_with(kind="ordinal"))


def test_a_categorical_group_needs_at_least_two_columns() -> None:
    with pytest.raises(InvalidData, match="at least two names"):
        parse_schema(_with(kind="categorical", columns=["only"]))


def test_a_column_named_twice_is_refused() -> None:
    document = {
        "features": [{"name": "a"}, {"name": "g", "kind": "categorical", "columns": ["a", "b"]}]
    }
    with pytest.raises(InvalidData, match="names 'a' twice"):
        parse_schema(document)


def test_a_share_of_the_range_needs_both_bounds() -> None:
    with pytest.raises(InvalidData, match="range_share needs both lower and upper"):
        parse_schema(_with(lower=0, budget={"range_share": 0.1}))


def test_a_binary_feature_takes_no_budget() -> None:
    with pytest.raises(InvalidData, match="flipped, not budgeted"):
        parse_schema(_with(kind="binary", budget={"absolute": 1}))


def test_data_with_another_column_count_is_refused() -> None:
    with pytest.raises(InvalidData, match="describes 7 columns but x has 6"):
        parse_schema(FRAUD).check_against(_rows()[:, :6])


def test_a_group_that_is_not_one_hot_in_the_data_is_refused_naming_the_row() -> None:
    rows = _rows()
    rows[1, 4] = 1.0
    with pytest.raises(InvalidData, match="'merchant' is not one-hot in row 1"):
        parse_schema(FRAUD).check_against(rows)


def test_a_fractional_integer_in_the_data_is_refused() -> None:
    rows = _rows()
    rows[2, 2] = 2.5
    with pytest.raises(InvalidData, match=re.escape("integer feature 'tx_24h' is 2.5 in row 2")):
        parse_schema(FRAUD).check_against(rows)


def test_a_value_outside_its_range_is_refused() -> None:
    rows = _rows()
    rows[0, 0] = -3.0
    with pytest.raises(InvalidData, match="'amount' is -3 in row 0, outside its range"):
        parse_schema(FRAUD).check_against(rows)


def test_data_the_schema_describes_passes() -> None:
    parse_schema(FRAUD).check_against(_rows())


def test_uint8_data_is_refused_as_image_data_rather_than_checked_scaled(tmp_path: Path) -> None:
    """uint8 arrays are read as 8-bit images and divided by 255: a count of 3 would be checked
    (and attacked) as 0.0118, and refused as a fractional integer, with no word of why."""
    rows = np.array([[120, 40, 3, 0, 1, 0, 0]], dtype=np.uint8)
    np.savez(tmp_path / "data.npz", x=rows, y=np.zeros(1, np.int64))
    dataset = load_npz(tmp_path / "data.npz")

    with pytest.raises(InvalidData, match=r"x is uint8, .* save x as float32 in the features. own"):
        parse_schema(FRAUD).check_against(dataset.x, scaled_from_uint8=dataset.scaled_from_uint8)


def _constraints(schema: FeatureSchema, eps: float = 0.5) -> Any:
    return build_constraints(schema, eps, _rows())


def test_an_immutable_feature_has_no_room_to_move() -> None:
    constraints = _constraints(parse_schema(FRAUD))
    x = torch.from_numpy(_rows())
    lower, upper = constraints.bounds_around(x)
    assert torch.equal(lower[:, 1], x[:, 1])
    assert torch.equal(upper[:, 1], x[:, 1])


def test_budgets_are_absolute_or_shares_of_the_range_or_of_the_spread() -> None:
    document = {
        "features": [
            {"name": "a", "budget": {"absolute": 2}},
            {"name": "b", "lower": 0, "upper": 1000, "budget": {"range_share": 0.05}},
            {"name": "c", "budget": {"std_share": 0.5}},
            {"name": "d"},
        ]
    }
    train = np.array([[0, 0, 0, 0], [0, 0, 4, 0]], dtype=np.float32)
    constraints = build_constraints(parse_schema(document), 0.25, train)
    assert constraints.radius.tolist() == [2.0, 50.0, 1.0, 0.25]


def test_repair_rounds_an_integer_to_a_value_inside_its_budget() -> None:
    constraints = _constraints(parse_schema(FRAUD))
    x = torch.from_numpy(_rows())
    candidate = x.clone()
    candidate[0, 2] = 5.0 - 1e-3
    repaired = constraints.repair(candidate, x)
    assert repaired[0, 2].item() == 5.0
    candidate[0, 2] = 9.7
    assert constraints.repair(candidate, x)[0, 2].item() == 5.0


def test_repair_makes_each_categorical_group_one_hot_at_its_largest_entry() -> None:
    constraints = _constraints(parse_schema(FRAUD))
    x = torch.from_numpy(_rows())
    candidate = x.clone()
    candidate[0, 4:7] = torch.tensor([0.4, 0.3, 0.9])
    assert constraints.repair(candidate, x)[0, 4:7].tolist() == [0.0, 0.0, 1.0]


def test_an_immutable_categorical_group_keeps_its_category() -> None:
    document = {
        "features": [
            {"name": "country", "kind": "categorical", "columns": ["a", "b"], "mutable": False}
        ]
    }
    train = np.array([[1, 0], [0, 1]], dtype=np.float32)
    constraints = build_constraints(parse_schema(document), 0.1, train)
    x = torch.from_numpy(train)
    assert torch.equal(constraints.repair(1 - x, x), x)


def test_every_repaired_candidate_satisfies_the_independent_check() -> None:
    schema = parse_schema(FRAUD)
    constraints = _constraints(schema)
    x = torch.from_numpy(_rows()).repeat(50, 1)
    generator = torch.Generator().manual_seed(0)
    candidate = x + 40 * torch.randn(x.shape, generator=generator)
    assert bool(violations(schema, constraints, candidate, x).any())
    assert not bool(violations(schema, constraints, constraints.repair(candidate, x), x).any())


def test_the_check_catches_a_fractional_integer_and_a_two_hot_group() -> None:
    schema = parse_schema(FRAUD)
    constraints = _constraints(schema)
    x = torch.from_numpy(_rows())
    point = x.clone()
    point[0, 2] = 3.5
    point[1, 4] = 1.0
    assert violations(schema, constraints, point, x).tolist() == [True, True, False]
