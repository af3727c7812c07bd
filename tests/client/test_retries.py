"""Retries on transient errors and deadlines, against a real in-process gRPC server whose
servicer fails on purpose (see fake_service.py)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from client_helpers import CliRunner
from fake_service import MODEL_BYTES, FakeHardening, make_report, running
from tempering.v1 import hardening_pb2 as pb

from client import ConnectionFailed, HardeningClient, NotFound
from client.errors import DeadlineExceeded, WaitTimeout
from client.exit_codes import ExitCode
from client.idempotency import next_idempotency_key
from client.retry import RetryPolicy

FAST = RetryPolicy(max_attempts=4, initial_backoff=0.01, max_backoff=0.05)


def submit_one(api: HardeningClient, key: str | None = None) -> str:
    return api.submit("m", "d", method="pgd", eps=0.1, idempotency_key=key).id


# ---------------------------------------------------------------------------------------------
# The policy


def test_backoff_grows_exponentially_up_to_the_cap_with_jitter_below_it() -> None:
    policy = RetryPolicy(initial_backoff=0.5, max_backoff=4.0, multiplier=2.0, jitter=0.5)
    pauses = [[policy.backoff(n) for _ in range(200)] for n in range(1, 6)]

    for n, ceiling in enumerate([0.5, 1.0, 2.0, 4.0, 4.0]):
        assert all(ceiling / 2 <= p <= ceiling for p in pauses[n])
        assert max(pauses[n]) - min(pauses[n]) > ceiling / 10  # jittered, not constant


def test_no_jitter_gives_the_ceiling() -> None:
    policy = RetryPolicy(initial_backoff=0.25, jitter=0.0)

    assert [policy.backoff(n) for n in (1, 2, 3)] == [0.25, 0.5, 1.0]


# ---------------------------------------------------------------------------------------------
# Idempotent calls


def test_get_job_succeeds_after_transient_unavailable_errors() -> None:
    fake = FakeHardening()
    with running(fake) as address, HardeningClient(address, timeout=5, retry=FAST) as api:
        job_id = submit_one(api)
        fake.blips["GetJob"] = 3

        job = api.get(job_id)

    assert job.id == job_id
    assert fake.calls["GetJob"] == 4


def test_get_job_gives_up_after_the_bounded_number_of_attempts() -> None:
    fake = FakeHardening()
    with running(fake) as address, HardeningClient(address, timeout=5, retry=FAST) as api:
        job_id = submit_one(api)
        fake.blips["GetJob"] = 100

        with pytest.raises(ConnectionFailed, match="a passing blip"):
            api.get(job_id)

    assert fake.calls["GetJob"] == FAST.max_attempts


def test_a_refusal_is_not_retried() -> None:
    fake = FakeHardening()
    with (
        running(fake) as address,
        HardeningClient(address, timeout=5, retry=FAST) as api,
        pytest.raises(NotFound),
    ):
        api.get("no-such-job")

    assert fake.calls["GetJob"] == 1


def test_list_and_cancel_are_retried() -> None:
    fake = FakeHardening(blips={"ListJobs": 2, "CancelJob": 2})
    with running(fake) as address, HardeningClient(address, timeout=5, retry=FAST) as api:
        job_id = submit_one(api)
        assert [job.id for job in api.list().jobs] == [job_id]
        assert api.cancel(job_id).state.value == "CANCELLED"

    assert fake.calls["ListJobs"] == 3
    assert fake.calls["CancelJob"] == 3


def test_submit_without_an_idempotency_key_is_not_retried() -> None:
    fake = FakeHardening(blips={"SubmitJob": 1})
    with (
        running(fake) as address,
        HardeningClient(address, timeout=5, retry=FAST) as api,
        pytest.raises(ConnectionFailed),
    ):
        submit_one(api)

    assert fake.calls["SubmitJob"] == 1


def test_submit_with_an_idempotency_key_is_retried_and_queues_one_job() -> None:
    fake = FakeHardening(blips={"SubmitJob": 2})
    with running(fake) as address, HardeningClient(address, timeout=5, retry=FAST) as api:
        first = submit_one(api, key="nightly")
        again = submit_one(api, key="nightly")

    assert fake.calls["SubmitJob"] == 4
    assert first == again
    assert len(fake.jobs) == 1


def test_an_upload_that_fails_is_sent_again(tmp_path: Path) -> None:
    model = tmp_path / "model.onnx"
    model.write_bytes(b"x" * 3_000_000)
    fake = FakeHardening(blips={"UploadModel": 1, "UploadDataset": 2})
    data = tmp_path / "train.npz"
    data.write_bytes(b"y" * 1000)
    with running(fake) as address, HardeningClient(address, timeout=5, retry=FAST) as api:
        model_id = api.upload_model(model)
        data_id = api.upload_dataset(data)

    assert model_id.startswith("a-")
    assert data_id.startswith("a-")
    assert fake.calls["UploadModel"] == 2
    assert fake.calls["UploadDataset"] == 3


def test_a_download_the_connection_breaks_starts_again_and_keeps_a_whole_file(
    tmp_path: Path,
) -> None:
    fake = FakeHardening(blips={"DownloadArtifact": 2})
    with running(fake) as address, HardeningClient(address, timeout=5, retry=FAST) as api:
        path = api.download("job-1", "model", tmp_path / "hardened.onnx")

    assert path.read_bytes() == MODEL_BYTES
    assert fake.calls["DownloadArtifact"] == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hardened.onnx"]


# ---------------------------------------------------------------------------------------------
# Deadlines


def test_a_watch_that_never_ends_is_stopped_by_the_overall_deadline() -> None:
    fake = FakeHardening(watch_hangs=True)
    with running(fake) as address, HardeningClient(address, timeout=5, retry=FAST) as api:
        job_id = submit_one(api)
        started = time.monotonic()
        with api.deadline(1.0), pytest.raises(DeadlineExceeded, match="waiting for job"):
            api.wait(job_id)
        elapsed = time.monotonic() - started

    assert 0.9 <= elapsed < 3.0
    assert fake.calls["WatchJob"] == 1


def test_deadline_exceeded_is_a_wait_timeout() -> None:
    assert issubclass(DeadlineExceeded, WaitTimeout)
    assert issubclass(DeadlineExceeded, TimeoutError)


def test_retries_stop_at_the_overall_deadline() -> None:
    patient = RetryPolicy(max_attempts=1000, initial_backoff=0.05, max_backoff=0.1)
    fake = FakeHardening()
    with running(fake) as address, HardeningClient(address, timeout=5, retry=patient) as api:
        job_id = submit_one(api)
        fake.blips["GetJob"] = 10_000
        started = time.monotonic()
        with api.deadline(1.0), pytest.raises(DeadlineExceeded):
            api.get(job_id)
        elapsed = time.monotonic() - started

    assert elapsed < 2.0
    assert 3 <= fake.calls["GetJob"] < 1000


# ---------------------------------------------------------------------------------------------
# The CLI: an idempotency key always, --timeout, --cancel-on-timeout


def server_args(address: str, model: Path, train: Path, output: Path, *extra: str) -> list[object]:
    return [
        "harden", model, "--data", train, "--method", "pgd", "--eps", "0.1",
        "--server", address, "-o", output, *extra,
    ]  # fmt: skip


def test_the_cli_sends_an_idempotency_key_derived_from_the_inputs(
    temper: CliRunner, digits_model: Path, digits_train: Path, digits_test: Path, tmp_path: Path
) -> None:
    fake = FakeHardening()
    with running(fake) as address:
        args = server_args(address, digits_model, digits_train, tmp_path / "h.onnx")
        first = temper(*args)
        again = temper(*args)
        other_eps = temper(*[*args[:-2], "--eps", "0.2", *args[-2:]])
        other_data = temper(*args, "--eval-data", digits_test)
        given = temper(*args, "--idempotency-key", "release-1.2")

    assert [r.code for r in (first, again, other_eps, other_data, given)] == [0] * 5, first.err
    keys = [request.idempotency_key for request in fake.submitted]
    assert keys[0].startswith("temper-v1-")
    assert keys[0] == keys[1]
    assert len(set(keys[:4])) == 3
    assert keys[4] == "release-1.2"
    assert len(fake.jobs) == 4  # the second run reused the first job


def test_the_cli_submits_anew_when_its_derived_key_names_a_failed_job(
    temper: CliRunner, digits_model: Path, digits_train: Path, tmp_path: Path
) -> None:
    fake = FakeHardening(final_state=pb.JOB_STATE_FAILED)
    with running(fake) as address:
        args = server_args(address, digits_model, digits_train, tmp_path / "h.onnx")
        failed = temper(*args)
        fake.final_state = pb.JOB_STATE_SUCCEEDED
        retried = temper(*args)

    assert failed.code == ExitCode.JOB_FAILED
    assert retried.code == 0, retried.err
    keys = [request.idempotency_key for request in fake.submitted]
    assert keys == [keys[0], keys[0], next_idempotency_key(keys[0], "job-1")]
    assert [job.state for job in fake.jobs.values()] == [
        pb.JOB_STATE_FAILED,
        pb.JOB_STATE_SUCCEEDED,
    ]


def test_the_cli_retries_transient_errors_of_a_whole_run(
    temper: CliRunner, digits_model: Path, digits_train: Path, tmp_path: Path
) -> None:
    blips = {"UploadModel": 1, "SubmitJob": 1, "DownloadArtifact": 1}
    fake = FakeHardening(blips=blips)
    with running(fake) as address:
        result = temper(*server_args(address, digits_model, digits_train, tmp_path / "h.onnx"))

    assert result.code == 0, result.err
    assert (tmp_path / "h.onnx").read_bytes() == MODEL_BYTES
    assert len(fake.jobs) == 1
    assert fake.calls["SubmitJob"] == 2


def test_timeout_exits_3_and_cancels_the_job_when_asked(
    temper: CliRunner, digits_model: Path, digits_train: Path, tmp_path: Path
) -> None:
    fake = FakeHardening(watch_hangs=True)
    with running(fake) as address:
        started = time.monotonic()
        result = temper(
            *server_args(address, digits_model, digits_train, tmp_path / "h.onnx"),
            "--timeout", "1.5", "--cancel-on-timeout",
        )  # fmt: skip
        elapsed = time.monotonic() - started

    assert result.code == ExitCode.SERVER
    assert elapsed < 5.0
    assert "--timeout 1.5 s" in result.err
    assert "job job-1 cancelled (--cancel-on-timeout)" in result.err
    assert fake.cancelled == ["job-1"]


def test_timeout_without_cancel_leaves_the_job_running_and_says_how_to_follow_it(
    temper: CliRunner, digits_model: Path, digits_train: Path, tmp_path: Path
) -> None:
    fake = FakeHardening(watch_hangs=True)
    with running(fake) as address:
        result = temper(
            *server_args(address, digits_model, digits_train, tmp_path / "h.onnx"),
            "--timeout", "1", "--json",
        )  # fmt: skip

    assert result.code == ExitCode.SERVER
    assert "temper watch job-1" in result.err
    assert '"type": "DeadlineExceeded"' in result.out
    assert fake.cancelled == []


@pytest.mark.slow
def test_timeout_with_local_stops_the_run_and_exits_3(
    temper: CliRunner, digits_model: Path, digits_train: Path, tmp_path: Path
) -> None:
    pytest.importorskip("torch")
    started = time.monotonic()
    result = temper(
        "harden", digits_model, "--data", digits_train, "--eps", "0.1", "--epochs", "50",
        "--local", "--timeout", "0.5", "-o", tmp_path / "h.onnx",
    )  # fmt: skip

    assert result.code == ExitCode.SERVER, result.err
    assert "deadline of 0.5 s passed" in result.err
    assert time.monotonic() - started < 60
    assert not (tmp_path / "h.onnx").exists()


def test_the_report_of_the_fake_is_what_the_cli_downloads(
    temper: CliRunner, digits_model: Path, digits_train: Path, tmp_path: Path
) -> None:
    fake = FakeHardening(make_report(hardened=(150, 120)))
    with running(fake) as address:
        result = temper(*server_args(address, digits_model, digits_train, tmp_path / "h.onnx"))

    assert result.code == 0, result.err
    assert "60.0% [53.1,  66.5]" in result.out


def test_timeout_after_the_job_succeeded_does_not_cancel_it(
    temper: CliRunner, digits_model: Path, digits_train: Path, tmp_path: Path
) -> None:
    fake = FakeHardening(blips={"DownloadArtifact": 100})
    with running(fake) as address:
        result = temper(
            *server_args(address, digits_model, digits_train, tmp_path / "h.onnx"),
            "--timeout", "1", "--cancel-on-timeout",
        )  # fmt: skip

    assert result.code == ExitCode.SERVER
    assert "while downloading the model of job job-1" in result.err
    assert "job job-1 had already ended SUCCEEDED" in result.err
    assert fake.cancelled == []
    assert not (tmp_path / "h.onnx").exists()
