"""``temper delete`` and ``HardeningClient.delete`` against the real server."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from client_helpers import CliRunner

from client import HardeningClient, HardeningParams, Method
from client.errors import InvalidInput, NotFound
from client.exit_codes import ExitCode


@pytest.fixture
def queued_job(api: HardeningClient, digits_model: Path, digits_train: Path) -> str:
    model, data = api.upload_model(digits_model), api.upload_dataset(digits_train)
    return api.submit(model, data, HardeningParams(method=Method.PGD, eps=0.1)).id


def test_a_queued_job_is_refused_without_cancel_and_deleted_with_it_by_prefix(
    temper: CliRunner, server_address: str, api: HardeningClient, queued_job: str
) -> None:
    refused = temper("delete", queued_job[:8], "--server", server_address)

    assert refused.code != ExitCode.OK
    assert "--cancel" in refused.err
    assert api.get(queued_job).id == queued_job

    deleted = temper("delete", queued_job[:8], "--cancel", "--server", server_address)

    assert deleted.code == ExitCode.OK
    assert deleted.out.startswith(f"{queued_job}: deleted (0 artifact(s)")
    assert [job.id for job in api.iter_jobs()] == []


def test_deleting_twice_by_whole_id_says_already_deleted(
    temper: CliRunner, server_address: str, queued_job: str
) -> None:
    temper("delete", queued_job, "--cancel", "--server", server_address)

    again = temper("delete", queued_job, "--json", "--server", server_address)

    assert again.code == ExitCode.OK
    assert json.loads(again.out) == {
        "job_id": queued_job,
        "already_deleted": True,
        "artifacts_removed": 0,
        "bytes_removed": 0,
    }


def test_the_sdk_deletes_and_refuses_like_the_cli(api: HardeningClient, queued_job: str) -> None:
    with pytest.raises(InvalidInput, match="cancel"):
        api.delete(queued_job)

    assert not api.delete(queued_job, cancel=True).already_deleted
    assert api.delete(queued_job).already_deleted
    with pytest.raises(NotFound):
        api.get(queued_job)
