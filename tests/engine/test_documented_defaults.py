"""The defaults docs/recipe.md lists are the engine's: the client's help points there instead of
restating numbers, so the table must say what the code does."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

RECIPE_DOC = Path(__file__).resolve().parents[2] / "docs" / "recipe.md"
ROW = re.compile(
    r"^\| (?P<what>.+?) \| (?P<value>[0-9.]+) \| `(?P<module>[\w.]+):(?P<name>[\w.]+)` \|$"
)


def documented_numbers() -> list[tuple[str, float, str, str]]:
    rows = [ROW.match(line) for line in RECIPE_DOC.read_text().splitlines()]
    return [(m["what"], float(m["value"]), m["module"], m["name"]) for m in rows if m is not None]


def test_the_table_lists_the_recipes_and_the_specs_defaults() -> None:
    modules = {module for _, _, module, _ in documented_numbers()}

    assert modules == {
        "workers.engine.training.recipe",
        "workers.engine.text.recipe",
        "workers.engine.spec",
    }


@pytest.mark.parametrize(
    ("what", "value", "module", "name"), documented_numbers(), ids=lambda v: str(v)
)
def test_each_documented_default_is_the_engines(
    what: str, value: float, module: str, name: str
) -> None:
    found: object = importlib.import_module(module)
    for part in name.split("."):
        found = getattr(found, part)

    assert found == value, f"docs/recipe.md says {what} defaults to {value:g}, the code {found}"
