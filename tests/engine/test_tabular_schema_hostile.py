"""A hostile feature schema file is refused as InvalidData with a sentence, never with a Python
error (which the server would answer as INTERNAL): nesting past the recursion limit, numbers no
float holds, names that cannot be written as UTF-8 text, values quoted back a megabyte long."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from workers.engine.errors import InvalidData
from workers.engine.tabular.schema import MAX_QUOTED_CHARS, load_schema

AMOUNT = '{"name": "amount", "lower": 0, "upper": UPPER}'


def written(tmp_path: Path, text: str | bytes) -> Path:
    path = tmp_path / "schema.json"
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    return path


def with_upper(tmp_path: Path, upper: str) -> Path:
    return written(tmp_path, '{"features": [' + AMOUNT.replace("UPPER", upper) + "]}")


def refusal(path: Path) -> str:
    with pytest.raises(InvalidData) as caught:
        load_schema(path)
    return str(caught.value)


def test_json_nested_past_the_recursion_limit_is_refused_as_too_deep(tmp_path: Path) -> None:
    path = written(tmp_path, '{"features": ' + "[" * 100_000 + "]" * 100_000 + "}")

    assert "nested too deeply" in refusal(path)


def test_an_integer_of_thousands_of_digits_is_refused_without_quoting_it_all(
    tmp_path: Path,
) -> None:
    message = refusal(with_upper(tmp_path, "9" * 5000))

    assert "beyond the range of a 64-bit float" in message
    assert "(5,000 characters)" in message
    assert len(message) < 300


def test_an_integer_just_beyond_float64_is_refused(tmp_path: Path) -> None:
    assert "beyond the range of a 64-bit float" in refusal(with_upper(tmp_path, "9" * 309))


def test_an_exponent_beyond_float64_is_refused_not_read_as_no_bound(tmp_path: Path) -> None:
    assert "the number 1e400, beyond the range" in refusal(with_upper(tmp_path, "1e400"))


def test_an_explicit_infinity_still_means_no_bound(tmp_path: Path) -> None:
    schema = load_schema(with_upper(tmp_path, "Infinity"))

    assert schema.features[0].upper == math.inf


def test_the_largest_float64_is_a_bound(tmp_path: Path) -> None:
    assert load_schema(with_upper(tmp_path, "1.7976931348623157e308")).features[0].upper > 1e308


@pytest.mark.parametrize(
    ("escaped", "shown", "code"),
    [("\\u0000", "\\x00", "U+0000"), ("\\n", "\\n", "U+000A"), ("\\ud800", "\\ud800", "U+D800")],
)
def test_a_feature_name_that_is_not_printable_text_is_refused(
    tmp_path: Path, escaped: str, shown: str, code: str
) -> None:
    path = written(tmp_path, '{"features": [{"name": "am' + escaped + 'ount"}]}')

    message = refusal(path)

    assert f"feature 1 of the schema: the name 'am{shown}ount' holds {code}" in message


def test_a_paired_surrogate_escape_is_a_printable_name(tmp_path: Path) -> None:
    path = written(tmp_path, '{"features": [{"name": "amount \\ud83d\\udcb0"}]}')

    assert load_schema(path).features[0].name == "amount \U0001f4b0"


def test_a_categorical_column_with_a_control_character_is_refused(tmp_path: Path) -> None:
    document = {"features": [{"name": "m", "kind": "categorical", "columns": ["a", "b\x07"]}]}

    message = refusal(written(tmp_path, json.dumps(document)))

    assert "categorical feature 'm': a column: the name 'b\\x07' holds U+0007" in message


def test_a_constraint_name_with_a_nul_is_refused(tmp_path: Path) -> None:
    document: dict[str, Any] = {
        "features": [{"name": "a"}, {"name": "b"}],
        "constraints": [{"name": "x\x00", "terms": {"a": 1, "b": -1}, "op": "<=", "value": 0}],
    }

    assert "linear constraint 1: the name 'x\\x00' holds U+0000" in refusal(
        written(tmp_path, json.dumps(document))
    )


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        ({"name": "f", "kind": "k" * 900_000}, "kind must be one of"),
        ({"name": "f", "k" * 900_000: 1}, "unknown keys"),
        ({"name": "f", "budget": {"k" * 900_000: 1}}, "unknown budget"),
        ({"name": "f", "lower": "k" * 900_000}, "lower must be a number"),
    ],
    ids=["kind", "key", "budget", "bound"],
)
def test_a_megabyte_value_is_quoted_cut(
    tmp_path: Path, entry: dict[str, Any], expected: str
) -> None:
    message = refusal(written(tmp_path, json.dumps({"features": [entry]})))

    assert expected in message
    assert "(900,00" in message
    assert len(message) < 200 + MAX_QUOTED_CHARS
