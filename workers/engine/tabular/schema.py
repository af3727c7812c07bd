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

**Linear constraints between features** (optional): ``"constraints"``, a list of
``{"terms": {column: coefficient, ...}, "op": "==" | "<=" | ">=", "value": v}`` meaning
``sum(coefficient * column) op value``; a term names a column (a categorical group by its
columns). An equality names its ``dependent`` (default: its first mutable continuous term
without a budget, else an integer one that can be solved for exactly): the column recomputed
from the others after every attack step, as a total is from its parts. A dependent takes no
budget of its own (it moves as far as the others make it, at most the sum of their budgets
times their coefficients over its own) and appears in no earlier equality; an integer
dependent needs a coefficient of +-1 and every other term integral (integer, binary or
categorical, integer coefficients, an integer value), so that it is exact. Example::

    "constraints": [
      {"name": "total is the sum of its parts", "op": "==", "value": 0, "dependent": "total",
       "terms": {"total": 1, "amount_card": -1, "amount_cash": -1}},
      {"terms": {"tx_24h": 1, "tx_7d": -1}, "op": "<=", "value": 0}
    ]

The data must satisfy every constraint (to a relative tolerance of 1e-5 of the terms'
magnitude), and a candidate that does not is never counted.

Integer means integer in the model's own units: a model that standardises its input inside the
graph reads raw counts, and its schema says so; one that was given standardised columns cannot
have integer constraints stated this way.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

import numpy as np

from workers.engine.errors import InvalidData

MAX_SCHEMA_BYTES = 1_000_000
MAX_FEATURES = 10_000
MAX_CONSTRAINTS = 1_000
MAX_NAME_CHARS = 256
MAX_QUOTED_CHARS = 80
"""Longest piece of the file a message quotes back (a value may be most of a megabyte)."""
LINEAR_TOLERANCE = 1e-5
"""A linear constraint holds when its residual is within this share of the magnitude of its
terms (``sum |coefficient * value| + |value|``): float32 data round totals."""


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


class Op(StrEnum):
    EQ = "=="
    LE = "<="
    GE = ">="


@dataclass(frozen=True)
class LinearConstraint:
    """``sum(terms[c] * x[c]) op value`` over columns ``c``; an equality may name the column
    recomputed from the others (``dependent``); one over immutable columns only needs none."""

    name: str
    terms: tuple[tuple[str, float], ...]
    op: Op
    value: float
    dependent: str | None = None

    def describe(self) -> str:
        """The constraint as a formula, e.g. ``total - part_a - part_b == 0``."""
        text = ""
        for i, (column, coefficient) in enumerate(self.terms):
            sign = "-" if coefficient < 0 else ("+" if i else "")
            size = abs(coefficient)
            factor = "" if size == 1 else f"{size:g} * "
            text += f"{' ' if i else ''}{sign}{' ' if i and sign else ''}{factor}{column}"
        return f"{text} {self.op.value} {self.value:g}"

    def residuals(self, x: np.ndarray, index: dict[str, int]) -> tuple[np.ndarray, np.ndarray]:
        """Per row, ``lhs - value`` and the tolerance it is held to (float64)."""
        lhs = np.zeros(len(x))
        scale = np.full(len(x), abs(self.value))
        for column, coefficient in self.terms:
            term = coefficient * x[:, index[column]].astype(np.float64)
            lhs += term
            scale += np.abs(term)
        return lhs - self.value, LINEAR_TOLERANCE * scale + 1e-9

    def holds(self, x: np.ndarray, index: dict[str, int]) -> np.ndarray:
        residual, tolerance = self.residuals(x, index)
        if self.op is Op.EQ:
            return np.abs(residual) <= tolerance
        if self.op is Op.LE:
            return residual <= tolerance
        return residual >= -tolerance


@dataclass(frozen=True)
class FeatureSchema:
    features: tuple[Feature, ...]
    constraints: tuple[LinearConstraint, ...] = ()
    columns: tuple[str, ...] = field(init=False)

    def __post_init__(self) -> None:
        columns = tuple(c for f in self.features for c in f.columns)
        object.__setattr__(self, "columns", columns)

    def column_index(self) -> dict[str, int]:
        return {name: i for i, name in enumerate(self.columns)}

    def dependents(self) -> tuple[str, ...]:
        """The columns recomputed from linear equalities, in the order they are solved."""
        return tuple(c.dependent for c in self.constraints if c.dependent is not None)

    def check_against(self, x: np.ndarray, *, scaled_from_uint8: bool = False) -> None:
        """Refuse data the schema does not describe: a column count that differs, values out of
        range, fractional integers, binary values other than 0/1, a group that is not one-hot.
        ``scaled_from_uint8``: ``x`` was uint8, read as 8-bit images (divided by 255), which
        the features' own units are not."""
        if scaled_from_uint8:
            raise InvalidData(
                "x is uint8, which is read as 8-bit image data and scaled to [0, 1]; under a"
                " feature schema, save x as float32 in the features' own units"
                " (x.astype(numpy.float32))"
            )
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
        index = self.column_index()
        for number, constraint in enumerate(self.constraints, 1):
            holds = constraint.holds(x, index)
            if not holds.all():
                row = int(np.flatnonzero(~holds)[0])
                residual, _ = constraint.residuals(x[row : row + 1], index)
                raise InvalidData(
                    f"linear constraint {number} ({constraint.name!r}: {constraint.describe()})"
                    f" does not hold in row {row}: the left side minus the value is"
                    f" {float(residual[0]):g}"
                )


def load_schema(path: Path) -> FeatureSchema:
    """Read and check a schema file; every problem is an :class:`InvalidData` naming the feature."""
    if path.stat().st_size > MAX_SCHEMA_BYTES:
        raise InvalidData(f"the feature schema is larger than {MAX_SCHEMA_BYTES} bytes")
    try:
        document = json.loads(
            path.read_text(encoding="utf-8"), parse_float=_float, parse_int=_integer
        )
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise InvalidData(f"the feature schema is not valid JSON: {error}") from None
    except RecursionError:
        raise InvalidData(
            "the feature schema is nested too deeply to read: a schema is a list of flat"
            " feature entries"
        ) from None
    return parse_schema(document)


_FLOAT64_DIGITS = 309
"""An integer of more digits is beyond float64's range (about 1.8e308)."""


def _float(literal: str) -> float:
    """A JSON number with a fraction or exponent; one beyond float64 is refused rather than
    read as infinity (an ``upper`` of 1e400 would silently become "no bound")."""
    value = float(literal)
    if math.isinf(value):
        raise _beyond_float64(literal)
    return value


def _integer(literal: str) -> int:
    """A JSON integer; one beyond float64 (every number is used as a float) is refused before
    Python converts its digits (past 4,300 digits that conversion raises)."""
    if len(literal.lstrip("-")) > _FLOAT64_DIGITS:
        raise _beyond_float64(literal)
    value = int(literal)
    try:
        float(value)
    except OverflowError:
        raise _beyond_float64(literal) from None
    return value


def _beyond_float64(literal: str) -> InvalidData:
    return InvalidData(
        f"the feature schema holds the number {_cut(literal)}, beyond the range of a 64-bit"
        " float (about 1.8e308); leave a bound out for no bound"
    )


def _cut(text: str) -> str:
    """``text`` as a message shows it: at most :data:`MAX_QUOTED_CHARS` characters of it."""
    if len(text) <= MAX_QUOTED_CHARS:
        return text
    return f"{text[:MAX_QUOTED_CHARS]}... ({len(text):,} characters)"


def _shown(value: Any) -> str:
    """``value`` quoted for a message, cut to :data:`MAX_QUOTED_CHARS` characters."""
    return _cut(repr(value))


_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
"""Control characters and unpaired surrogates (a JSON escape such as \\ud800 without its
pair): a name is written into the report, the model card and the HTML page, as UTF-8."""


def _name(value: Any, what: str) -> str:
    """A feature, column or constraint name: 1 to :data:`MAX_NAME_CHARS` printable characters."""
    if not isinstance(value, str) or not value or len(value) > MAX_NAME_CHARS:
        raise InvalidData(f"{what} needs a name (1 to {MAX_NAME_CHARS} characters)")
    if found := _UNPRINTABLE.search(value):
        raise InvalidData(
            f"{what}: the name {_shown(value)} holds U+{ord(found.group()):04X} at position"
            f" {found.start()}; names must be printable text (no control characters, no"
            " unpaired surrogate escapes)"
        )
    return value


def parse_schema(document: Any) -> FeatureSchema:
    if not isinstance(document, dict) or not isinstance(document.get("features"), list):
        raise InvalidData('a feature schema is a JSON object with a "features" list')
    unknown = sorted(set(document) - {"features", "constraints"})
    if unknown:
        raise InvalidData(
            f"the feature schema has unknown keys {_shown(unknown)}; known: ['constraints',"
            " 'features']"
        )
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
    constraints = _linear_constraints(document.get("constraints", []), features)
    return FeatureSchema(features, constraints)


_KEYS = {"name", "kind", "columns", "mutable", "lower", "upper", "budget"}


def _feature(entry: Any, index: int) -> Feature:
    if not isinstance(entry, dict):
        raise InvalidData(f"feature {index + 1} of the schema is not a JSON object")
    name = _name(entry.get("name"), f"feature {index + 1} of the schema")
    unknown = sorted(set(entry) - _KEYS)
    if unknown:
        raise InvalidData(
            f"feature {name!r}: unknown keys {_shown(unknown)}; known: {sorted(_KEYS)}"
        )
    try:
        kind = Kind(entry.get("kind", "continuous"))
    except ValueError:
        raise InvalidData(
            f"feature {name!r}: kind must be one of {[k.value for k in Kind]},"
            f" got {_shown(entry.get('kind'))}"
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
    for column in columns:
        _name(column, f"categorical feature {name!r}: a column")
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
    if key not in ("absolute", "range_share", "std_share"):
        raise InvalidData(f"feature {name!r}: unknown budget {_shown(key)}")
    amount = _number(amount, f"feature {name!r}: budget")
    if not math.isfinite(amount) or amount < 0:
        raise InvalidData(f"feature {name!r}: a budget must be finite and non-negative")
    if key == "absolute":
        return Budget(absolute=amount)
    if key == "range_share":
        if not math.isfinite(upper - lower):
            raise InvalidData(f"feature {name!r}: range_share needs both lower and upper")
        return Budget(range_share=amount)
    return Budget(std_share=amount)


def _number(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidData(f"{what} must be a number, got {_shown(value)}")
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


_CONSTRAINT_KEYS = {"name", "terms", "op", "value", "dependent"}


def _linear_constraints(value: Any, features: tuple[Feature, ...]) -> tuple[LinearConstraint, ...]:
    if not isinstance(value, list) or len(value) > MAX_CONSTRAINTS:
        raise InvalidData(
            f'"constraints" is a list of at most {MAX_CONSTRAINTS} linear constraints'
        )
    by_column = {c: f for f in features for c in f.columns}
    group_names = {f.name for f in features if f.kind is Kind.CATEGORICAL}
    constraints: list[LinearConstraint] = []
    for i, entry in enumerate(value):
        taken = {c.dependent for c in constraints if c.dependent is not None}
        constraints.append(_linear_constraint(entry, i + 1, by_column, group_names, taken))
    _check_dependents(constraints)
    return tuple(constraints)


def _linear_constraint(
    entry: Any, number: int, by_column: dict[str, Feature], group_names: set[str], taken: set[str]
) -> LinearConstraint:
    where = f"linear constraint {number}"
    if not isinstance(entry, dict):
        raise InvalidData(f"{where} is not a JSON object")
    unknown = sorted(set(entry) - _CONSTRAINT_KEYS)
    if unknown:
        raise InvalidData(
            f"{where}: unknown keys {_shown(unknown)}; known: {sorted(_CONSTRAINT_KEYS)}"
        )
    name = _name(entry.get("name", where), where)
    where = f"linear constraint {number} ({name!r})"
    terms = entry.get("terms")
    if not isinstance(terms, dict) or not terms:
        raise InvalidData(f'{where}: "terms" maps at least one column to its coefficient')
    parsed: list[tuple[str, float]] = []
    for column, coefficient in terms.items():
        if column not in by_column:
            hint = (
                f" (a categorical feature: name its columns {list(_group(column, by_column))})"
                if column in group_names
                else ""
            )
            raise InvalidData(f"{where} names unknown feature {_shown(column)}{hint}")
        number_ = _number(coefficient, f"{where}: the coefficient of {column!r}")
        if not math.isfinite(number_) or number_ == 0:
            raise InvalidData(f"{where}: the coefficient of {column!r} must be finite and not 0")
        parsed.append((column, number_))
    try:
        op = Op(str(entry.get("op")))
    except ValueError:
        raise InvalidData(
            f"{where}: op must be one of {[o.value for o in Op]}, got {_shown(entry.get('op'))}"
        ) from None
    value = _number(entry.get("value", 0), f"{where}: value")
    if not math.isfinite(value):
        raise InvalidData(f"{where}: value must be finite")
    constraint = LinearConstraint(name, tuple(parsed), op, value)
    dependent = entry.get("dependent")
    if op is not Op.EQ:
        if dependent is not None:
            raise InvalidData(f"{where}: only an equality has a dependent")
        return constraint
    return LinearConstraint(
        name, tuple(parsed), op, value, _dependent(constraint, dependent, by_column, where, taken)
    )


def _group(name: str, by_column: dict[str, Feature]) -> tuple[str, ...]:
    for feature in by_column.values():
        if feature.name == name:
            return feature.columns
    return ()


def _dependent(
    constraint: LinearConstraint,
    named: Any,
    by_column: dict[str, Feature],
    where: str,
    taken: set[str],
) -> str | None:
    """The column an equality is solved for: the one named, else the first mutable term it can
    be solved for exactly that no earlier equality recomputes; None when every term is
    immutable (the equality then holds as the data does)."""
    mutable = [c for c, _ in constraint.terms if by_column[c].mutable]
    if named is not None:
        if not isinstance(named, str) or named not in dict(constraint.terms):
            raise InvalidData(
                f"{where}: the dependent must be one of its terms, got {_shown(named)}"
            )
        reason = _cannot_depend(constraint, named, by_column)
        if reason:
            raise InvalidData(f"{where}: {named!r} cannot be its dependent: {reason}")
        return str(named)
    if not mutable:
        return None
    for column in mutable:
        if column not in taken and not _cannot_depend(constraint, column, by_column):
            return column
    raise InvalidData(
        f"{where}: an equality that moves {mutable} cannot be repaired exactly: none of them is a"
        " mutable continuous feature to recompute from the others (nor an integer one with"
        " coefficient +-1 among integral terms with integer coefficients). Add a continuous"
        " term, make these features immutable, or drop the constraint"
    )


def _cannot_depend(constraint: LinearConstraint, column: str, by_column: dict[str, Feature]) -> str:
    feature = by_column[column]
    if not feature.mutable:
        return "it is immutable"
    if feature.budget is not None:
        return "a dependent is recomputed from the others and takes no budget of its own"
    if feature.kind is Kind.CONTINUOUS:
        return ""
    if feature.kind is not Kind.INTEGER:
        return f"a {feature.kind.value} feature cannot be recomputed exactly"
    terms = dict(constraint.terms)
    others_integral = all(
        by_column[c].kind is not Kind.CONTINUOUS and float(a).is_integer()
        for c, a in constraint.terms
        if c != column
    )
    if abs(terms[column]) != 1 or not others_integral or not float(constraint.value).is_integer():
        return (
            "an integer dependent needs coefficient +-1, every other term integral with an"
            " integer coefficient and an integer value"
        )
    return ""


def _check_dependents(constraints: list[LinearConstraint]) -> None:
    """Each dependent is solved for once, after every equality it appears in as a term: so the
    equalities, solved in order, never undo one another."""
    solved: dict[str, int] = {}
    for number, constraint in enumerate(constraints, 1):
        if constraint.dependent is None:
            continue
        if constraint.dependent in solved:
            raise InvalidData(
                f"linear constraints {solved[constraint.dependent]} and {number} both recompute"
                f" {constraint.dependent!r}: name another dependent for one of them"
            )
        solved[constraint.dependent] = number
    for number, constraint in enumerate(constraints, 1):
        if constraint.dependent is None:
            continue
        for column, _ in constraint.terms:
            first = solved.get(column)
            if first is not None and column != constraint.dependent and first > number:
                raise InvalidData(
                    f"linear constraint {number} ({constraint.name!r}) uses {column!r}, which"
                    f" linear constraint {first} recomputes later: list constraint {first}"
                    " first, or name another dependent"
                )
