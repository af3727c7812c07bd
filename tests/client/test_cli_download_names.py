"""``temper download`` without ``-o`` writes into the current folder under a name made of the job
id, and never replaces a file there unless told to."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from client_helpers import CliRunner
from fake_service import FakeHardening, running

from client import HardeningClient, HardeningParams, Method


@pytest.fixture
def finished_job(
    digits_model: Path, digits_train: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[str, str]]:
    """A server whose one job has SUCCEEDED, and that job's id; the current folder is empty."""
    with running(FakeHardening()) as address:
        with HardeningClient(address, timeout=10) as api:
            model, data = api.upload_model(digits_model), api.upload_dataset(digits_train)
            job = api.submit(model, data, HardeningParams(method=Method.PGD, eps=0.1))
        work = tmp_path / "work"
        work.mkdir()
        monkeypatch.chdir(work)
        yield address, job.id


def test_report_without_output_goes_to_the_current_folder_named_by_the_job(
    temper: CliRunner, finished_job: tuple[str, str]
) -> None:
    address, job_id = finished_job

    result = temper("download", job_id, "--kind", "report", "--server", address)

    assert result.code == 0, result.err
    assert result.out.strip() == f"{job_id}.report.json"
    assert json.loads(Path(f"{job_id}.report.json").read_text())["kind"]


def test_model_without_output_is_named_like_a_harden_runs_model(
    temper: CliRunner, finished_job: tuple[str, str]
) -> None:
    address, job_id = finished_job

    result = temper("download", job_id, "--server", address)

    assert result.code == 0, result.err
    assert Path(f"{job_id}.onnx").is_file()


def test_a_file_already_at_the_default_name_is_not_replaced(
    temper: CliRunner, finished_job: tuple[str, str]
) -> None:
    address, job_id = finished_job
    Path(f"{job_id}.report.json").write_text("mine")

    result = temper("download", job_id, "--kind", "report", "--server", address)

    assert result.code == 2
    assert "already exists: pass --force" in result.err
    assert Path(f"{job_id}.report.json").read_text() == "mine"


def test_force_replaces_the_file_at_the_default_name(
    temper: CliRunner, finished_job: tuple[str, str]
) -> None:
    address, job_id = finished_job
    Path(f"{job_id}.report.json").write_text("mine")

    result = temper("download", job_id, "--kind", "report", "--force", "--server", address)

    assert result.code == 0, result.err
    assert Path(f"{job_id}.report.json").read_text() != "mine"
