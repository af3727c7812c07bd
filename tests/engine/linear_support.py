"""A generated payments set whose columns are bound by linear constraints (a total that is the
sum of its parts, a weekly count that is today's plus the week's earlier ones, a cap on cash
against card), an MLP plainly trained on it, and a validator written from the schema's JSON
alone, sharing no code with the engine's checks."""

from __future__ import annotations

import copy
import math
from typing import Any

import numpy as np

from tests.engine.tabular_support import valid_rows

SCHEMA: dict[str, Any] = {
    "features": [
        {"name": "card", "lower": 0, "upper": 1000, "budget": {"range_share": 0.05}},
        {"name": "cash", "lower": 0, "upper": 500, "budget": {"absolute": 30}},
        {"name": "total", "lower": 0, "upper": 1500},
        {"name": "account_age", "kind": "integer", "lower": 0, "upper": 5000, "mutable": False},
        {"name": "tx_today", "kind": "integer", "lower": 0, "upper": 50, "budget": {"absolute": 2}},
        {"name": "tx_earlier", "kind": "integer", "lower": 0, "upper": 300,
         "budget": {"absolute": 4}},
        {"name": "tx_week", "kind": "integer", "lower": 0, "upper": 350},
        {"name": "foreign", "kind": "binary"},
        {"name": "merchant", "kind": "categorical", "columns": ["food", "travel", "online"]},
    ],
    "constraints": [
        {"name": "total is card plus cash", "terms": {"total": 1, "card": -1, "cash": -1},
         "op": "==", "value": 0},
        {"name": "the week's count", "terms": {"tx_week": 1, "tx_today": -1, "tx_earlier": -1},
         "op": "==", "value": 0, "dependent": "tx_week"},
        {"name": "cash at most half the card plus 300", "terms": {"cash": 1, "card": -0.5},
         "op": "<=", "value": 300},
        {"name": "online needs a card", "terms": {"card": 1, "online": -50}, "op": ">=",
         "value": 0},
    ],
}  # fmt: skip
COLUMNS = 11
EPS = 0.5


def payment_rows(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` rows that satisfy every constraint of :data:`SCHEMA`, and their labels."""
    rng = np.random.default_rng(seed)
    rows: list[np.ndarray] = []
    while sum(len(r) for r in rows) < n:
        m = 2 * n
        card = np.round(rng.uniform(0, 1000, m), 2)
        cash = np.round(rng.uniform(0, 500, m), 2)
        age = rng.integers(0, 5001, m)
        today = rng.integers(0, 51, m)
        earlier = rng.integers(0, 301, m)
        foreign = rng.integers(0, 2, m)
        merchant = np.eye(3)[rng.integers(0, 3, m)]
        block = np.column_stack(
            [card, cash, card + cash, age, today, earlier, today + earlier, foreign, merchant]
        )
        keep = (cash - 0.5 * card <= 300) & (card - 50 * merchant[:, 2] >= 0)
        rows.append(block[keep])
    x = np.concatenate(rows)[:n]
    score = (
        x[:, 2] / 400
        - x[:, 3] / 1500
        + x[:, 4] / 10
        + x[:, 6] / 150
        + 1.2 * x[:, 7]
        + 1.2 * x[:, 10]
        - 4.0
        + rng.normal(0, 0.5, n)
    )
    return x.astype(np.float32), (score > 0).astype(np.int64)


def valid_payment_rows(
    schema: dict[str, Any], point: np.ndarray, clean: np.ndarray, eps: float, train_x: np.ndarray
) -> np.ndarray:
    """Per row, whether ``point`` is a valid move from ``clean``: every feature as
    :func:`valid_rows` checks it (a dependent of an equality held to its range, not a budget of
    its own), and every linear constraint to a relative tolerance of 1e-5."""
    relaxed = copy.deepcopy(schema)
    dependents = {_dependent(c, schema) for c in schema.get("constraints", [])} - {None}
    for feature in relaxed["features"]:
        if feature["name"] in dependents:
            feature["budget"] = {"absolute": math.inf}
    ok = valid_rows(relaxed, point, clean, eps, train_x)
    names = [
        column
        for feature in schema["features"]
        for column in feature.get("columns", [feature["name"]])
    ]
    for constraint in schema.get("constraints", []):
        lhs = np.zeros(len(point))
        size = np.full(len(point), abs(float(constraint["value"])))
        for column, coefficient in constraint["terms"].items():
            term = coefficient * point[:, names.index(column)].astype(np.float64)
            lhs += term
            size += np.abs(term)
        gap = lhs - constraint["value"]
        tolerance = 1e-5 * size + 1e-9
        if constraint["op"] == "==":
            ok &= np.abs(gap) <= tolerance
        elif constraint["op"] == "<=":
            ok &= gap <= tolerance
        else:
            ok &= gap >= -tolerance
    return ok


def _dependent(constraint: dict[str, Any], schema: dict[str, Any]) -> str | None:
    if constraint["op"] != "==":
        return None
    if "dependent" in constraint:
        return str(constraint["dependent"])
    continuous = {
        f["name"]
        for f in schema["features"]
        if f.get("kind", "continuous") == "continuous" and f.get("mutable", True)
    }
    return next((c for c in constraint["terms"] if c in continuous), None)
