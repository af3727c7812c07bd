"""``temper report PATH``: the report a local run wrote, as a table, JSON, or an HTML page."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import pytest
from client_helpers import CliRunner
from report_sample import PNG_BYTES, sample_report

from client.layout import ENGINE_PLOT_NAME


@pytest.fixture
def local_run(tmp_path: Path) -> Path:
    """Where ``temper harden --local -o hardened.onnx`` puts the report and the plot."""
    report = tmp_path / "hardened.report.json"
    report.write_text(json.dumps(sample_report()))
    (tmp_path / "hardened.robustness_curve.png").write_bytes(PNG_BYTES)
    return report


def test_html_goes_beside_the_report_with_the_plot_beside_it_embedded(
    temper: CliRunner, local_run: Path
) -> None:
    result = temper("report", local_run, "--html")

    assert result.code == 0, result.err
    page_path = local_run.with_name("hardened.report.html")
    assert result.out.strip() == str(page_path)
    (image,) = re.findall(r'src="data:image/png;base64,([^"]+)"', page_path.read_text())
    assert base64.b64decode(image) == PNG_BYTES


def test_html_embeds_the_engines_own_plot_name_too(temper: CliRunner, tmp_path: Path) -> None:
    (tmp_path / "report.json").write_text(json.dumps(sample_report()))
    (tmp_path / "robustness_curve.png").write_bytes(PNG_BYTES)

    result = temper("report", tmp_path / "report.json", "--html", "-o", tmp_path / "p" / "r.html")

    assert result.code == 0, result.err
    assert "data:image/png;base64," in (tmp_path / "p" / "r.html").read_text()


def test_html_without_a_plot_beside_the_report_still_writes_the_page(
    temper: CliRunner, tmp_path: Path
) -> None:
    (tmp_path / "report.json").write_text(json.dumps(sample_report()))

    result = temper("report", tmp_path / "report.json", "--html", "--json")

    assert result.code == 0, result.err
    written = json.loads(result.out)
    assert written["job_id"] is None
    page = Path(written["html"]).read_text()
    assert "<img" not in page
    assert "trades" in page


def test_without_html_prints_the_before_and_after_table(temper: CliRunner, local_run: Path) -> None:
    result = temper("report", local_run)

    assert result.code == 0, result.err
    assert "Before and after trades hardening" in result.out
    assert "robust accuracy (worst)    10.5% [30.0,  45.0]     61.5% [30.0,  45.0]" in result.out


def test_the_table_states_the_reports_verdict(temper: CliRunner, local_run: Path) -> None:
    result = temper("report", local_run)

    assert result.code == 0, result.err
    assert f"verdict: {sample_report()['verdict']['summary']}" in result.out


def test_json_prints_the_report_itself(temper: CliRunner, local_run: Path) -> None:
    result = temper("report", local_run, "--json")

    assert result.code == 0, result.err
    assert json.loads(result.out) == sample_report()


def test_a_missing_report_file_exits_2(temper: CliRunner, tmp_path: Path) -> None:
    result = temper("report", tmp_path / "absent.json", "--html")

    assert result.code == 2
    assert "no such file" in result.err


def test_a_json_file_that_is_not_a_report_exits_2(temper: CliRunner, tmp_path: Path) -> None:
    (tmp_path / "other.json").write_text('{"kind": "something else"}')

    result = temper("report", tmp_path / "other.json", "--html")

    assert result.code == 2
    assert "not a Tempering robustness report" in result.err


def test_output_without_html_exits_2(temper: CliRunner, local_run: Path, tmp_path: Path) -> None:
    result = temper("report", local_run, "-o", tmp_path / "r.html")

    assert result.code == 2
    assert "--html" in result.err
    assert not (tmp_path / "r.html").exists()


def test_a_job_id_without_a_server_exits_2(temper: CliRunner) -> None:
    result = temper("report", "0f3c9a", "--html")

    assert result.code == 2
    assert "no server given" in result.err


def test_the_client_links_the_plot_by_the_name_the_engine_writes() -> None:
    output_files = pytest.importorskip("workers.engine.output_files")

    assert ENGINE_PLOT_NAME == output_files.PLOT_FILE
