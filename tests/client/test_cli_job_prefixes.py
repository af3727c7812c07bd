"""Job ids by unique prefix, as git and docker take them, against the real server."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from client_helpers import CliRunner

from client import HardeningClient, HardeningParams, Method
from client.commands.common import UsageError, resolve_job_id
from client.errors import NotFound


@pytest.fixture
def two_jobs(api: HardeningClient, digits_model: Path, digits_train: Path) -> list[str]:
    model, data = api.upload_model(digits_model), api.upload_dataset(digits_train)
    params = HardeningParams(method=Method.PGD, eps=0.1)
    return [api.submit(model, data, params, labels={"n": str(n)}).id for n in range(2)]


def shortest_unique_prefix(job_id: str, others: list[str]) -> str:
    return next(
        job_id[:n]
        for n in range(4, len(job_id))
        if not any(other.startswith(job_id[:n]) for other in others if other != job_id)
    )


@pytest.fixture
def jobs_sharing_a_prefix(
    api: HardeningClient, digits_model: Path, digits_train: Path
) -> tuple[str, list[str]]:
    """17 jobs, so that at least two share their first hex digit: that digit and those jobs."""
    model, data = api.upload_model(digits_model), api.upload_dataset(digits_train)
    params = HardeningParams(method=Method.PGD, eps=0.1)
    ids = [api.submit(model, data, params, labels={"n": str(n)}).id for n in range(17)]
    digit = Counter(job_id[0] for job_id in ids).most_common(1)[0][0]
    return digit, [job_id for job_id in ids if job_id.startswith(digit)]


def test_a_unique_prefix_names_the_job(api: HardeningClient, two_jobs: list[str]) -> None:
    wanted = two_jobs[0]

    assert resolve_job_id(api, shortest_unique_prefix(wanted, two_jobs)) == wanted


def test_a_prefix_is_matched_whatever_its_case(api: HardeningClient, two_jobs: list[str]) -> None:
    wanted = two_jobs[1]

    assert resolve_job_id(api, wanted[:12].upper()) == wanted


def test_a_whole_id_is_taken_as_it_is(api: HardeningClient, two_jobs: list[str]) -> None:
    assert resolve_job_id(api, two_jobs[0]) == two_jobs[0]


def test_an_ambiguous_prefix_lists_the_candidates(
    api: HardeningClient, jobs_sharing_a_prefix: tuple[str, list[str]]
) -> None:
    prefix, sharing = jobs_sharing_a_prefix

    with pytest.raises(UsageError) as refused:
        resolve_job_id(api, prefix)

    assert f"is ambiguous: {len(sharing)} jobs start with it" in str(refused.value)
    assert all(job_id in str(refused.value) for job_id in sharing)


def test_cancel_takes_a_prefix(temper: CliRunner, server_address: str, two_jobs: list[str]) -> None:
    wanted = two_jobs[0]

    result = temper("cancel", shortest_unique_prefix(wanted, two_jobs), "--server", server_address)

    assert result.code == 0, result.err
    assert result.out.strip() == f"{wanted}: CANCELLED"


def test_watch_takes_a_prefix(
    temper: CliRunner, api: HardeningClient, server_address: str, two_jobs: list[str]
) -> None:
    wanted = two_jobs[1]
    api.cancel(wanted)

    result = temper("watch", wanted[:10], "--server", server_address)

    assert result.code == 1
    assert result.out.startswith(f"{wanted}: CANCELLED")


def test_an_ambiguous_prefix_exits_2_naming_the_command(
    temper: CliRunner, server_address: str, jobs_sharing_a_prefix: tuple[str, list[str]]
) -> None:
    prefix, _ = jobs_sharing_a_prefix

    result = temper("watch", prefix, "--server", server_address)

    assert result.code == 2
    assert result.err.startswith(f"temper watch: error: job id prefix '{prefix}' is ambiguous")


def test_an_unknown_id_names_temper_jobs_not_the_rpc(
    temper: CliRunner, server_address: str, two_jobs: list[str]
) -> None:
    result = temper("watch", "0415bf70", "--server", server_address)

    assert result.code == 4
    assert "`temper jobs` lists your jobs" in result.err
    assert "ListJobs" not in result.err


def test_an_unknown_whole_id_names_temper_jobs_not_the_rpc(
    api: HardeningClient, two_jobs: list[str]
) -> None:
    with pytest.raises(NotFound, match="`temper jobs` lists your jobs"):
        resolve_job_id(api, "f" * 32)
