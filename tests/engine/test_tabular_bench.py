"""bench/tabular_hardening.py: its validator, its collapse flag and its exhaustive
neighbourhoods, which the figures of issue 14 rest on, and its data sets fitting their schemas
(the CSV files ship inside statsmodels)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bench.tabular_hardening import (
    ANES96_SCHEMA,
    DATA_SETS,
    collapsed,
    neighbourhood,
    valid_rows,
)
from workers.engine.tabular.schema import load_schema

# popul, TVnews, selfLR, ClinLR, DoleLR, PID, age, educ (7, one-hot), income
ROW = np.array([[120, 3, 4, 2, 6, 3, 40, 0, 0, 1, 0, 0, 0, 0, 12]], dtype=np.float32)
PID, AGE, EDUC = 5, 6, slice(7, 14)


def moved(column: int | slice, value: Any) -> np.ndarray:
    point = ROW.copy()
    point[0, column] = value
    return point


def test_the_validator_accepts_moves_within_every_budget() -> None:
    point = moved(PID, 4)
    point[0, EDUC] = [0, 0, 0, 0, 0, 0, 1]
    point[0, 14] = 14
    assert valid_rows(ANES96_SCHEMA, point, ROW).all()


@pytest.mark.parametrize(
    ("column", "value"),
    [
        (AGE, 41),  # immutable
        (PID, 5),  # two steps, budget one
        (PID, 3.5),  # fractional integer
        (EDUC, [0, 0, 1, 1, 0, 0, 0]),  # two categories at once
        (EDUC, [0, 0, 0.5, 0, 0, 0, 0]),  # not one-hot
        (14, 25),  # above its range
    ],
)
def test_the_validator_refuses_a_move_the_schema_forbids(column: int | slice, value: Any) -> None:
    assert not valid_rows(ANES96_SCHEMA, moved(column, value), ROW).any()


PLAIN = {"clean": 0.9, "clean_balanced": 0.9, "majority_share": 0.6}


def test_a_model_no_better_than_the_constant_answer_is_collapsed() -> None:
    assert collapsed({"clean": 0.6, "clean_balanced": 0.8, "majority_share": 0.6}, PLAIN)


def test_a_model_that_lost_half_its_balanced_margin_is_collapsed() -> None:
    assert collapsed({"clean": 0.75, "clean_balanced": 0.69, "majority_share": 0.6}, PLAIN)


def test_a_model_that_keeps_both_classes_is_not_collapsed() -> None:
    assert not collapsed({"clean": 0.88, "clean_balanced": 0.87, "majority_share": 0.6}, PLAIN)


@pytest.mark.parametrize("name", sorted(DATA_SETS))
def test_each_data_set_fits_its_schema(name: str, tmp_path: Path) -> None:
    data_set = DATA_SETS[name]
    path = tmp_path / "schema.json"
    path.write_text(json.dumps(data_set.schema))
    x, y = data_set.load()
    load_schema(path).check_against(x)
    assert set(np.unique(y)) == {0, 1}


def test_the_neighbourhood_holds_every_reachable_point_and_only_valid_ones() -> None:
    points = neighbourhood(ANES96_SCHEMA, ROW[0])
    assert points is not None
    # TVnews 1-5, selfLR 3-5, ClinLR 1-3, DoleLR 5-7, PID 2-4, educ 7 levels, income 10-14
    assert len(points) == 5 * 3 * 3 * 3 * 3 * 7 * 5
    assert len(np.unique(points, axis=0)) == len(points)
    assert valid_rows(ANES96_SCHEMA, points, np.repeat(ROW, len(points), axis=0)).all()


def test_the_neighbourhood_is_clipped_to_each_range() -> None:
    row = moved(PID, 0)[0]
    points = neighbourhood(ANES96_SCHEMA, row)
    assert points is not None
    assert set(np.unique(points[:, PID])) == {0.0, 1.0}


def test_a_schema_with_a_movable_continuous_feature_has_no_finite_neighbourhood() -> None:
    x, _ = DATA_SETS["fair"].load()
    assert neighbourhood(DATA_SETS["fair"].schema, x[0]) is None
