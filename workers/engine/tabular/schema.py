"""The feature schema of a tabular data set: what each column is and what an attacker may do to it.

An L-inf ball over standardised features lets an attacker change an account's age, make a count
fractional and switch on two merchant categories at once: robustness scored against inputs that
cannot exist (Simonetto et al., TabularBench 2024). A schema, a small JSON file beside the data,
says per column of ``x`` (in order, in the units the model reads):

- ``kind``: ``continuous``, ``integer``, ``binary``, or ``categorical`` for a one-hot group,
  which names its ``columns`` and stands for all of them;
- ``mutable`` (default true): false fixes the feature (an account's age, a country);
- ``lower`` / ``upper``: the feature's valid range (default: unbounded; binary and categorical
  columns are 0/1);
- ``budget``: how far the attacker may move it: ``{"absolute": 3}``, ``{"range_share": 0.05}``
  (of ``upper - lower``) or ``{"std_share": 0.25}`` (of its standard deviation in the training
  data); without one the request's epsilon applies. Binary and categorical features are
  flipped or switched, if mutable, whatever the budget.

Example::

    {"features": [
      {"name": "amount", "kind": "continuous", "lower": 0, "upper": 25000,
       "budget": {"range_share": 0.02}},
      {"name": "account_age_days", "kind": "integer", "lower": 0, "mutable": false},
      {"name": "tx_last_24h", "kind": "integer", "lower": 0, "upper": 500,
       "budget": {"absolute": 3}},
      {"name": "foreign", "kind": "binary"},
      {"name": "merchant", "kind": "categorical",
       "columns": ["merchant_food", "merchant_travel", "merchant_online"]}
    ]}

Integer means integer in the model's own units: a model that standardises its input inside the
graph reads raw counts, and its schema says so; one that was given standardised columns cannot
have integer constraints stated this way.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

import numpy as np

from workers.engine.errors import InvalidData

MAX_SCHEMA_BYTES = 1_000_000
MAX_FEATURES = 10_000


class Kind(StrEnum):
    CONTINUOUS = "continuous"
    INTEGER = "integer"
    BINARY = "binary"
    CATEGORICAL = "categorical"


@dataclass(frozen=True)
class Budget:
    """How far the attacker may move one feature; exactly one field is set."""

    absolute: float | None = None
    range_share: float | None = None
    std_share: float | None = None


@dataclass(frozen=True)
class Feature:
    name: str
    kind: Kind
    columns: tuple[str, ...]
    """The columns of ``x`` this feature stands for: one, or a categorical group's."""
    mutable: bool = True
    lower: float = -math.inf
    upper: float = math.inf
    budget: Budget | None = None


@dataclass(frozen=True)
class FeatureSchema:
    features: tuple[Feature, ...]
    columns: tuple[str, ...] = field(init=False)

    def __post_init__(self) -> None:
        columns = tuple(c for f in self.features for c in f.columns)
        object.__setattr__(self, "columns", columns)

    def check_against(self, x: np.ndarray) -> None:
        """Refuse data the schema does not describe: a column count that differs, values out of
        range, fractional integers, binary values other than 0/1, a group that is not one-hot."""
        if x.ndim != 2:
            raise InvalidData(f"a feature schema describes rows of features; x has shape {x.shape}")
        if x.shape[1] != len(self.columns):
            raise InvalidData(
                f"the schema describes {len(self.columns)} columns but x has {x.shape[1]}"
            )
        start = 0
        for feature in self.features:
            block = x[:, start : start + len(feature.columns)]
            _check_feature(feature, block)
            start += len(feature.columns)


def load_schema(path: Path) -> FeatureSchema:
    """Read and check a schema file; every problem is an :class:`InvalidData` naming the feature."""
    if path.stat().st_size > MAX_SCHEMA_BYTES:
        raise InvalidData(f"the feature schema is larger than {MAX_SCHEMA_BYTES} bytes")
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise InvalidData(f"the feature schema is not valid JSON: {error}") from None
    return parse_schema(document)


def parse_schema(document: Any) -> FeatureSchema:
    if not isinstance(document, dict) or not isinstance(document.get("features"), list):
        raise InvalidData('a feature schema is a JSON object with a "features" list')
    entries = document["features"]
    if not entries or len(entries) > MAX_FEATURES:
        raise InvalidData(f"a feature schema lists between 1 and {MAX_FEATURES} features")
    features = tuple(_feature(entry, i) for i, entry in enumerate(entries))
    seen: set[str] = set()
    for feature in features:
        names = (
            feature.columns
            if feature.kind is not Kind.CATEGORICAL
            else (
                feature.name,
                *feature.columns,
            )
        )
        for name in names:
            if name in seen:
                raise InvalidData(f"the feature schema names {name!r} twice")
            seen.add(name)
    return FeatureSchema(features)


_KEYS = {"name", "kind", "columns", "mutable", "lower", "upper", "budget"}


def _feature(entry: Any, index: int) -> Feature:
    if not isinstance(entry, dict):
        raise InvalidData(f"feature {index + 1} of the schema is not a JSON object")
    name = entry.get("name")
    if not isinstance(name, str) or not name or len(name) > 256:
        raise InvalidData(f"feature {index + 1} of the schema needs a name (1 to 256 characters)")
    unknown = sorted(set(entry) - _KEYS)
    if unknown:
        raise InvalidData(f"feature {name!r}: unknown keys {unknown}; known: {sorted(_KEYS)}")
    try:
        kind = Kind(entry.get("kind", "continuous"))
    except ValueError:
        raise InvalidData(
            f"feature {name!r}: kind must be one of {[k.value for k in Kind]},"
            f" got {entry.get('kind')!r}"
        ) from None
    mutable = entry.get("mutable", True)
    if not isinstance(mutable, bool):
        raise InvalidData(f"feature {name!r}: mutable must be true or false")
    columns = _columns(entry, name, kind)
    lower, upper = _range(entry, name, kind)
    budget = _budget(entry.get("budget"), name, kind, lower, upper)
    return Feature(name, kind, columns, mutable, lower, upper, budget)


def _columns(entry: dict[str, Any], name: str, kind: Kind) -> tuple[str, ...]:
    columns = entry.get("columns")
    if kind is not Kind.CATEGORICAL:
        if columns is not None:
            raise InvalidData(f"feature {name!r}: only a categorical feature lists columns")
        return (name,)
    if (
        not isinstance(columns, list)
        or len(columns) < 2
        or not all(isinstance(c, str) and c for c in columns)
    ):
        raise InvalidData(
            f"categorical feature {name!r} lists its one-hot columns: at least two names"
        )
    if len(set(columns)) != len(columns):
        raise InvalidData(f"categorical feature {name!r} lists a column twice")
    return tuple(columns)


def _range(entry: dict[str, Any], name: str, kind: Kind) -> tuple[float, float]:
    if kind in (Kind.BINARY, Kind.CATEGORICAL):
        if "lower" in entry or "upper" in entry:
            raise InvalidData(f"feature {name!r}: a {kind.value} feature is 0 or 1, no range")
        return 0.0, 1.0
    lower = _number(entry.get("lower", -math.inf), f"feature {name!r}: lower")
    upper = _number(entry.get("upper", math.inf), f"feature {name!r}: upper")
    if not lower < upper:
        raise InvalidData(f"feature {name!r}: lower ({lower}) must be below upper ({upper})")
    return lower, upper


def _budget(value: Any, name: str, kind: Kind, lower: float, upper: float) -> Budget | None:
    if value is None:
        return None
    if kind in (Kind.BINARY, Kind.CATEGORICAL):
        raise InvalidData(f"feature {name!r}: a {kind.value} feature is flipped, not budgeted")
    if not isinstance(value, dict) or len(value) != 1:
        raise InvalidData(
            f"feature {name!r}: budget is one of {{'absolute': v}}, {{'range_share': f}},"
            " {'std_share': f}"
        )
    ((key, amount),) = value.items()
    amount = _number(amount, f"feature {name!r}: budget")
    if not math.isfinite(amount) or amount < 0:
        raise InvalidData(f"feature {name!r}: a budget must be finite and non-negative")
    if key == "absolute":
        return Budget(absolute=amount)
    if key == "range_share":
        if not math.isfinite(upper - lower):
            raise InvalidData(f"feature {name!r}: range_share needs both lower and upper")
        return Budget(range_share=amount)
    if key == "std_share":
        return Budget(std_share=amount)
    raise InvalidData(f"feature {name!r}: unknown budget {key!r}")


def _number(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidData(f"{what} must be a number, got {value!r}")
    number = float(value)
    if math.isnan(number):
        raise InvalidData(f"{what} must be a number, got NaN")
    return number


def _check_feature(feature: Feature, block: np.ndarray) -> None:
    name = feature.name
    if feature.kind is Kind.CATEGORICAL:
        one_hot = np.isin(block, (0.0, 1.0)).all(axis=1) & (block.sum(axis=1) == 1)
        if not one_hot.all():
            raise InvalidData(
                f"categorical feature {name!r} is not one-hot in row"
                f" {int(np.flatnonzero(~one_hot)[0])}: each row must hold exactly one 1 among"
                f" {list(feature.columns)}"
            )
        return
    column = block[:, 0]
    outside = (column < feature.lower) | (column > feature.upper)
    if outside.any():
        row = int(np.flatnonzero(outside)[0])
        raise InvalidData(
            f"feature {name!r} is {column[row]:g} in row {row}, outside its range"
            f" [{feature.lower:g}, {feature.upper:g}]"
        )
    if feature.kind is Kind.INTEGER and not (column == np.round(column)).all():
        row = int(np.flatnonzero(column != np.round(column))[0])
        raise InvalidData(f"integer feature {name!r} is {column[row]:g} in row {row}")
    if feature.kind is Kind.BINARY and not np.isin(column, (0.0, 1.0)).all():
        row = int(np.flatnonzero(~np.isin(column, (0.0, 1.0)))[0])
        raise InvalidData(f"binary feature {name!r} is {column[row]:g} in row {row}, not 0 or 1")
