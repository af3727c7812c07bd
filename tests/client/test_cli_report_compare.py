"""``temper report A B``: two reports side by side, from files or from a server's jobs."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from client_helpers import CliRunner
from fake_service import FakeHardening, make_report, running
from report_sample import sample_report

from client import HardeningClient, HardeningParams, Method
from client.scores_table import percent


def write(path: Path, report: dict[str, Any]) -> Path:
    path.write_text(json.dumps(report))
    return path


@pytest.fixture
def two_reports(tmp_path: Path) -> tuple[Path, Path]:
    first = sample_report()
    first["training"]["method"] = "pgd"
    second = copy.deepcopy(first)
    second["hardened"]["robust_accuracy"] = {"value": 0.9, "low": 0.85, "high": 0.93, "total": 500}
    second["training"]["method"] = "trades"
    return write(tmp_path / "a.report.json", first), write(tmp_path / "b.report.json", second)


def row(table: str, label: str) -> str:
    return next(line for line in table.splitlines() if line.startswith(label))


def test_two_reports_show_side_by_side_with_their_intervals(
    temper: CliRunner, two_reports: tuple[Path, Path]
) -> None:
    first, second = two_reports

    result = temper("report", first, second)

    assert result.code == 0, result.err
    robust = row(result.out, "hardened: robust (worst)")
    expected_first = percent(sample_report()["hardened"]["robust_accuracy"])
    assert robust.split(expected_first)[1].strip() == "90.0% [85.0,  93.0]"
    assert row(result.out, "method").split() == ["method", "pgd", "trades"]


def test_comparison_gives_each_reports_verdict(
    temper: CliRunner, two_reports: tuple[Path, Path]
) -> None:
    first, second = two_reports
    summary = sample_report()["verdict"]["summary"]

    result = temper("report", first, second)

    assert f"verdict of {first}: {summary}" in result.out
    assert f"verdict of {second}: {summary}" in result.out


def test_comparison_warns_when_the_threat_models_differ(
    temper: CliRunner, tmp_path: Path, two_reports: tuple[Path, Path]
) -> None:
    other = sample_report()
    other["threat_model"]["eps"] = 0.3
    result = temper("report", two_reports[0], write(tmp_path / "c.json", other))

    assert "scored under different threat models" in result.out


def test_comparison_as_json_gives_the_headline_figures_of_each(
    temper: CliRunner, two_reports: tuple[Path, Path]
) -> None:
    result = temper("report", *two_reports, "--json")

    document = json.loads(result.out)
    assert [entry["method"] for entry in document] == ["pgd", "trades"]
    assert document[1]["hardened"]["robust_accuracy"]["value"] == 0.9


def test_three_reports_are_refused(temper: CliRunner, two_reports: tuple[Path, Path]) -> None:
    result = temper("report", *two_reports, two_reports[0])

    assert result.code == 2
    assert "two to compare" in result.err


def test_comparing_jobs_on_a_server_names_them_by_id(
    temper: CliRunner, digits_model: Path, digits_train: Path
) -> None:
    fake = FakeHardening(make_report())
    with running(fake) as address:
        with HardeningClient(address, timeout=10) as api:
            model, data = api.upload_model(digits_model), api.upload_dataset(digits_train)
            ids = [
                api.submit(model, data, HardeningParams(method=Method.PGD, eps=e)).id
                for e in (0.1, 0.2)
            ]
        result = temper("report", *ids, "--server", address)

    assert result.code == 0, result.err
    assert result.out.splitlines()[0].split() == ids
