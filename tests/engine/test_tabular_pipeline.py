"""A tabular model hardened end to end under its feature schema: what the report says."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import numpy as np
import pytest

from tests.engine.tabular_support import SCHEMA, write_case
from workers.engine.errors import InvalidData
from workers.engine.pipeline import HardeningResult, harden
from workers.engine.report import json_schema
from workers.engine.spec import (
    EvaluationConfig,
    EvaluationSuite,
    HardeningRequest,
    ModelFormat,
    ModelSource,
    ThreatModel,
    TrainingConfig,
)

pytestmark = pytest.mark.slow


def _request(model: Path, data: Path, schema: Path) -> HardeningRequest:
    return HardeningRequest(
        model=ModelSource(model, ModelFormat.ONNX),
        train_data=data,
        threat=ThreatModel(eps=0.5),
        training=TrainingConfig(epochs=2, attack_steps=3, validation_size=100),
        evaluation=EvaluationConfig(suite=EvaluationSuite.FAST, samples=60, curve_points=3),
        feature_schema=schema,
    )


@pytest.fixture(scope="module")
def hardened(tmp_path_factory: pytest.TempPathFactory) -> HardeningResult:
    folder = tmp_path_factory.mktemp("tabular")
    model, data, schema = write_case(folder)
    return harden(_request(model, data, schema), folder / "out")


def test_a_tabular_report_follows_the_report_schema(hardened: HardeningResult) -> None:
    jsonschema.validate(hardened.report, json_schema())
    assert hardened.report["modality"] == "tabular"


def test_the_report_shows_each_feature_with_its_kind_mutability_and_budget(
    hardened: HardeningResult,
) -> None:
    features = hardened.report["tabular"]["schema"]["features"]

    assert [f["name"] for f in features] == [f["name"] for f in SCHEMA["features"]]
    by_name = {f["name"]: f for f in features}
    assert by_name["account_age"]["mutable"] is False
    assert by_name["account_age"]["budget"] == "immutable"
    assert by_name["tx_24h"] == {**by_name["tx_24h"], "kind": "integer", "radius": 2.0}
    assert by_name["amount"]["radius"] == pytest.approx(50.0)
    assert by_name["merchant"]["budget"] == "flip"
    assert by_name["merchant"]["columns"] == ["food", "travel", "online"]


def test_the_report_says_per_attack_what_it_respected_and_what_repair_dropped(
    hardened: HardeningResult,
) -> None:
    for label in ("original", "hardened"):
        audits = {a["name"]: a for a in hardened.report["tabular"][label]["attacks"]}
        assert set(audits) == {"capgd-ce", "capgd-t", "evolution", "exhaustive"}
        assert audits["evolution"]["respected"] == [
            "immutable", "range", "budget", "integer", "binary", "one_hot"
        ]  # fmt: skip
        assert {"immutable", "range", "budget"} <= set(audits["capgd-ce"]["respected"])
        for audit in audits.values():
            assert audit["counted"] + audit["dropped_after_repair"] >= audit["fooled_before_repair"]
        names = [a["name"] for a in hardened.report[label]["attacks"]]
        assert names == ["capgd-ce", "capgd-t", "evolution", "exhaustive"]


def test_the_report_says_the_exhaustive_step_does_not_apply_where_a_continuous_feature_moves(
    hardened: HardeningResult,
) -> None:
    for label in ("original", "hardened"):
        block = hardened.report["tabular"][label]["exhaustive"]
        robust = hardened.report[label]["robust_accuracy"]["correct"]
        assert block["applies"] is False
        assert "feature 'amount' is continuous and mutable" in block["not_finite"]
        assert block["samples"] == block["skipped"]["continuous_feature"] == robust
        assert (block["exact"], block["points"], block["missed_by_attacks"]) == (0, 0, 0)
        assert block["headline_exact"] is (robust == 0)


def test_the_unconstrained_line_is_labelled_apart_from_the_headline(
    hardened: HardeningResult,
) -> None:
    for label in ("original", "hardened"):
        sanity = hardened.report["tabular"][label]["unconstrained"]
        headline = hardened.report[label]["robust_accuracy"]
        assert sanity["label"].startswith("UNCONSTRAINED SANITY LINE (not the headline)")
        assert sanity["robust_accuracy"]["correct"] <= headline["correct"]
        assert sanity["at_most_constrained"] is True
    assert "constrained attacks" in hardened.report["evaluation"]["headline"]


def test_the_model_card_shows_the_schema_the_attacks_and_the_sanity_line(
    hardened: HardeningResult,
) -> None:
    card = hardened.card_path.read_text()

    assert "## Feature schema" in card
    assert "| account_age | integer | no |" in card
    assert "## Constrained attacks" in card
    assert "Unconstrained sanity line (not the headline)" in card
    assert "**Exhaustive enumeration** of every valid point" in card
    assert "- original: does not apply (feature 'amount' is continuous" in card


def test_data_outside_the_schema_is_refused_naming_the_feature_and_row(tmp_path: Path) -> None:
    model, data, schema = write_case(tmp_path, n=300)
    rows = dict(np.load(data))
    rows["x"][7, 2] = 2.5
    np.savez(data, **rows)

    with pytest.raises(InvalidData, match=r"integer feature 'tx_24h' is 2.5 in row 7"):
        harden(_request(model, data, schema), tmp_path / "out")


def test_a_schema_is_recorded_in_the_request(hardened: HardeningResult) -> None:
    assert json.loads(json.dumps(hardened.report["request"]))["feature_schema"].endswith(
        "schema.json"
    )


def test_the_html_page_shows_the_schema_the_attacks_and_the_sanity_line(
    hardened: HardeningResult,
) -> None:
    from client.html_report import render

    page = render(hardened.report)

    assert "<h2>Feature schema</h2>" in page
    assert "<strong>account_age</strong></td><td>integer</td><td>no</td>" in page
    assert "<h2>Constrained attacks</h2>" in page
    assert "UNCONSTRAINED SANITY LINE (not the headline)" in page
    assert "<strong>Exhaustive enumeration</strong>" in page
    assert "<li>hardened: does not apply (feature &#x27;amount&#x27; is continuous" in page
