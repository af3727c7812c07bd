"""``temper harden --schema --local``: a tabular model hardened under its feature schema from
the command line, on a tiny generated set."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from client_helpers import CliRunner

pytestmark = pytest.mark.slow


@pytest.fixture
def tabular_inputs(tmp_path: Path) -> tuple[Path, Path, Path]:
    pytest.importorskip("torch")
    from tests.engine.tabular_support import write_case

    return write_case(tmp_path, n=300)


def tabular_args(inputs: tuple[Path, Path, Path], output: Path, *extra: object) -> list[object]:
    model, data, schema = inputs
    return [
        "harden", model, "--data", data, "--schema", schema, "--eps", "0.5",
        "--epochs", "1", "--suite", "fast", "--eval-samples", "40", "-o", output, *extra,
    ]  # fmt: skip


def test_a_tabular_model_hardens_locally_under_its_schema(
    temper: CliRunner, tabular_inputs: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    output = tmp_path / "out" / "hardened.onnx"

    result = temper(*tabular_args(tabular_inputs, output, "--local"))

    assert result.code == 0, result.err
    report = json.loads((tmp_path / "out" / "hardened.report.json").read_text())
    assert report["modality"] == "tabular"
    assert report["request"]["feature_schema"] == str(tabular_inputs[2])
    assert report["threat_model"]["upper"][:3] == [1000.0, 5000.0, 50.0]
    assert report["hardened"]["clean_accuracy"]["total"] == 40
    assert output.is_file()
    returned = tmp_path / "out" / "hardened.feature_schema.json"
    assert returned.read_bytes() == tabular_inputs[2].read_bytes()
    assert f"feature schema: {returned}" in result.out


def test_bounds_beside_a_schema_are_refused(
    temper: CliRunner, tabular_inputs: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    result = temper(*tabular_args(tabular_inputs, tmp_path / "h.onnx", "--local", "--upper", "9"))

    assert result.code == 2
    assert "schema's ranges" in result.err


def test_a_schema_that_does_not_parse_is_refused_with_exit_4(
    temper: CliRunner, tabular_inputs: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    tabular_inputs[2].write_text('{"features": [{"name": "x", "kind": "ordinal"}]}')

    result = temper(*tabular_args(tabular_inputs, tmp_path / "h.onnx", "--local"))

    assert result.code == 4, result.err
    assert "kind must be one of" in result.err


def test_eps_above_one_is_a_budget_in_the_schemas_units_locally(
    tabular_inputs: tuple[Path, Path, Path],
) -> None:
    from client.domain import HardeningParams, Method, ModelFormat
    from client.local_run import engine_request

    model, data, schema = tabular_inputs

    request = engine_request(
        model,
        ModelFormat.ONNX,
        data,
        None,
        HardeningParams(Method.FGSM, eps=5.0),
        schema_path=schema,
    )

    assert request.threat.eps == 5.0
    assert request.feature_schema == schema
