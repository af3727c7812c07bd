"""A tabular model hardened end to end under a schema with linear constraints: the report, the
model card and the HTML page list the constraints and what each attack respected."""

from __future__ import annotations

import copy
import dataclasses
import json
from pathlib import Path

import jsonschema
import numpy as np
import pytest

from tests.engine.linear_support import EPS, SCHEMA, payment_rows
from tests.engine.tabular_support import write_case
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
        threat=ThreatModel(eps=EPS),
        training=TrainingConfig(epochs=2, attack_steps=3, validation_size=100),
        evaluation=EvaluationConfig(suite=EvaluationSuite.FAST, samples=60, curve_points=3),
        feature_schema=schema,
    )


@pytest.fixture(scope="module")
def hardened(tmp_path_factory: pytest.TempPathFactory) -> HardeningResult:
    folder = tmp_path_factory.mktemp("linear")
    model, data, schema = write_case(folder, rows=payment_rows, schema=SCHEMA)
    return harden(_request(model, data, schema), folder / "out")


def test_the_report_follows_the_report_schema_and_lists_the_constraints(
    hardened: HardeningResult,
) -> None:
    jsonschema.validate(hardened.report, json_schema())
    constraints = hardened.report["tabular"]["schema"]["constraints"]

    assert [c["name"] for c in constraints] == [c["name"] for c in SCHEMA["constraints"]]
    assert constraints[1]["dependent"] == "tx_week"
    assert constraints[3]["formula"] == "card - 50 * online >= 0"


def test_the_report_says_which_attacks_respected_the_linear_constraints(
    hardened: HardeningResult,
) -> None:
    for label in ("original", "hardened"):
        for audit in hardened.report["tabular"][label]["attacks"]:
            assert "linear" in audit["broken_before_repair"]
        audits = {a["name"]: a for a in hardened.report["tabular"][label]["attacks"]}
        assert "linear" in audits["evolution"]["respected"]


def test_the_model_card_and_html_list_the_constraints(hardened: HardeningResult) -> None:
    from client.html_report import render

    card = hardened.card_path.read_text()
    page = render(hardened.report)

    assert "1. total is card plus cash: `total - card - cash == 0`; `total` recomputed" in card
    assert "<code>cash - 0.5 * card &lt;= 300</code>" in page


def test_data_that_breaks_a_constraint_is_refused_before_training(tmp_path: Path) -> None:
    document = copy.deepcopy(SCHEMA)
    model, data, schema = write_case(tmp_path, n=300, rows=payment_rows, schema=document)
    rows = dict(np.load(data))
    rows["x"][11, 6] += 1
    np.savez(data, **rows)

    with pytest.raises(
        InvalidData, match=r"^training data: linear constraint 2 .* does not hold in row 11"
    ):
        harden(_request(model, data, schema), tmp_path / "out")


def test_evaluation_data_that_breaks_a_constraint_is_refused_naming_the_dataset(
    tmp_path: Path,
) -> None:
    model, data, schema = write_case(tmp_path, n=300, rows=payment_rows, schema=SCHEMA)
    x, y = payment_rows(100, seed=5)
    x[4, 2] += 1  # the total no longer adds up
    evaluation = tmp_path / "eval.npz"
    np.savez(evaluation, x=x, y=y)
    request = dataclasses.replace(_request(model, data, schema), eval_data=evaluation)

    with pytest.raises(
        InvalidData, match=r"^evaluation data: linear constraint 1 .* does not hold in row 4"
    ):
        harden(request, tmp_path / "out")


def test_the_schema_is_returned_beside_the_model_with_its_digest(
    hardened: HardeningResult,
) -> None:
    import hashlib

    import onnx

    assert hardened.schema_path is not None
    assert hardened.schema_path.name == "feature_schema.json"
    assert json.loads(hardened.schema_path.read_text()) == SCHEMA
    digest = hashlib.sha256(hardened.schema_path.read_bytes()).hexdigest()
    assert hardened.report["tabular"]["schema_sha256"] == digest
    metadata = {p.key: p.value for p in onnx.load(str(hardened.model_path)).metadata_props}
    assert metadata["tempering.feature_schema_sha256"] == digest
