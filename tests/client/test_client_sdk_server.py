"""The SDK against the service's real gRPC server, in this process and without a worker, so jobs
stay QUEUED until cancelled."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest

from client import (
    ConnectionFailed,
    EvaluationSuite,
    HardeningClient,
    HardeningParams,
    InvalidInput,
    JobState,
    Method,
    NotFound,
    WaitTimeout,
)

PARAMS = HardeningParams(method=Method.TRADES, eps=0.2, epochs=3, trades_beta=4.0, seed=7)


def submit_digits(api: HardeningClient, model: Path, train: Path, **kwargs: object) -> str:
    model_id = api.upload_model(model)
    train_id = api.upload_dataset(train)
    return api.submit(model_id, train_id, PARAMS, **kwargs).id  # type: ignore[arg-type]


def test_uploading_the_same_model_twice_returns_the_same_id(
    api: HardeningClient, digits_model: Path
) -> None:
    assert api.upload_model(digits_model) == api.upload_model(digits_model)


def test_submitted_job_is_queued_with_the_parameters_and_labels_sent(
    api: HardeningClient, digits_model: Path, digits_train: Path, digits_test: Path
) -> None:
    model_id = api.upload_model(digits_model)
    train_id = api.upload_dataset(digits_train)
    test_id = api.upload_dataset(digits_test)

    job = api.submit(
        model_id,
        train_id,
        PARAMS,
        eval_dataset_id=test_id,
        labels={"team": "vision"},
        suite=EvaluationSuite.FAST,
    )

    assert job.state is JobState.QUEUED
    assert job.labels == {"team": "vision"}
    assert job.spec is not None
    assert job.spec.model_id == model_id
    assert job.spec.eval_dataset_id == test_id
    assert job.spec.params.method is Method.TRADES
    assert job.spec.params.eps == pytest.approx(0.2)
    assert job.spec.params.trades_beta == pytest.approx(4.0)
    assert job.spec.params.suite is EvaluationSuite.FAST
    assert api.get(job.id).id == job.id


def test_submitting_again_with_the_same_idempotency_key_returns_the_first_job(
    api: HardeningClient, digits_model: Path, digits_train: Path
) -> None:
    first = submit_digits(api, digits_model, digits_train, idempotency_key="nightly-42")
    again = submit_digits(api, digits_model, digits_train, idempotency_key="nightly-42")

    assert again == first


def test_listing_filters_by_label_and_pages_through_every_job(
    api: HardeningClient, digits_model: Path, digits_train: Path
) -> None:
    tagged = {submit_digits(api, digits_model, digits_train, labels={"run": "a"}) for _ in range(3)}
    submit_digits(api, digits_model, digits_train, labels={"run": "b"})

    found = {job.id for job in api.iter_jobs(label={"run": "a"}, page_size=2)}

    assert found == tagged
    assert len(api.list(label={"run": "a"}, page_size=2).jobs) == 2


def test_cancelling_a_queued_job_cancels_it_and_wait_returns_it(
    api: HardeningClient, digits_model: Path, digits_train: Path
) -> None:
    job_id = submit_digits(api, digits_model, digits_train)

    cancelled = api.cancel(job_id)
    finished = api.wait(job_id, timeout=30)

    assert cancelled.state is JobState.CANCELLED
    assert finished.state is JobState.CANCELLED
    assert [job.id for job in api.list(state=JobState.CANCELLED).jobs] == [job_id]


def test_watching_a_cancelled_job_yields_its_snapshot_and_ends(
    api: HardeningClient, digits_model: Path, digits_train: Path
) -> None:
    job_id = submit_digits(api, digits_model, digits_train)
    api.cancel(job_id)

    events = list(api.watch(job_id, timeout=30))

    assert events[-1].state is JobState.CANCELLED
    assert events[0].job is not None
    assert events[0].job.id == job_id


def test_downloading_from_an_unfinished_job_raises_invalid_input_with_the_servers_reason(
    api: HardeningClient, digits_model: Path, digits_train: Path, tmp_path: Path
) -> None:
    job_id = submit_digits(api, digits_model, digits_train)

    with pytest.raises(InvalidInput) as caught:
        api.download(job_id, "model", tmp_path / "h.onnx")

    assert caught.value.code is grpc.StatusCode.FAILED_PRECONDITION
    assert "SUCCEEDED" in caught.value.message
    assert not (tmp_path / "h.onnx").exists()


def test_unknown_job_raises_not_found(api: HardeningClient) -> None:
    with pytest.raises(NotFound) as caught:
        api.get("0" * 32)

    assert caught.value.code is grpc.StatusCode.NOT_FOUND


def test_a_job_on_a_text_file_uploaded_as_onnx_is_refused_as_invalid_input(
    api: HardeningClient, digits_train: Path, tmp_path: Path
) -> None:
    fake = tmp_path / "model.onnx"
    fake.write_text("not a model\n")
    model_id = api.upload_model(fake)
    train_id = api.upload_dataset(digits_train)

    with pytest.raises(InvalidInput) as caught:
        api.submit(model_id, train_id, PARAMS)

    assert caught.value.code is grpc.StatusCode.INVALID_ARGUMENT
    assert "ONNX" in caught.value.message


def test_an_out_of_range_parameter_is_refused_as_invalid_input(
    api: HardeningClient, digits_model: Path, digits_train: Path
) -> None:
    model_id = api.upload_model(digits_model)
    train_id = api.upload_dataset(digits_train)

    with pytest.raises(InvalidInput) as caught:
        api.submit(model_id, train_id, method="pgd", eps=0.1, epochs=100_000)

    assert "epochs" in caught.value.message


def test_a_temperature_of_zero_reaches_the_server_and_is_refused_with_its_range(
    api: HardeningClient, digits_model: Path, digits_train: Path
) -> None:
    model_id = api.upload_model(digits_model)
    train_id = api.upload_dataset(digits_train)

    with pytest.raises(InvalidInput) as caught:
        api.submit(model_id, train_id, method="distillation", eps=0.1, temperature=0.0)

    assert caught.value.code is grpc.StatusCode.INVALID_ARGUMENT
    assert "temperature must be at least 1" in caught.value.message


def test_parameters_left_out_come_back_as_the_servers_defaults(
    api: HardeningClient, digits_model: Path, digits_train: Path
) -> None:
    model_id = api.upload_model(digits_model)
    train_id = api.upload_dataset(digits_train)

    job = api.submit(model_id, train_id, method="pgd", eps=0.1)

    assert job.spec is not None
    params = job.spec.params
    assert params.eval_samples is None, "left to the engine: 500 for images, 1,000 for texts"
    assert (params.learning_rate, params.step_size) == (None, None)


def test_parameters_the_recipe_chooses_come_back_unset(
    api: HardeningClient, digits_model: Path, digits_train: Path
) -> None:
    model_id = api.upload_model(digits_model)
    train_id = api.upload_dataset(digits_train)

    job = api.submit(model_id, train_id, method="pgd", eps=0.1)

    assert job.spec is not None
    params = job.spec.params
    chosen = (
        params.epochs,
        params.batch_size,
        params.attack_steps,
        params.validation_size,
        params.eps_warmup_epochs,
    )
    assert chosen == (None, None, None, None, None)


def test_an_explicit_zero_warmup_comes_back_as_zero(
    api: HardeningClient, digits_model: Path, digits_train: Path
) -> None:
    model_id = api.upload_model(digits_model)
    train_id = api.upload_dataset(digits_train)

    job = api.submit(model_id, train_id, method="fgsm", eps=0.1, eps_warmup_epochs=0.0)

    assert job.spec is not None
    assert job.spec.params.eps_warmup_epochs == 0.0


def test_an_unreachable_server_raises_connection_failed() -> None:
    with HardeningClient("127.0.0.1:1", timeout=5) as api, pytest.raises(ConnectionFailed):
        api.list()


def test_waiting_past_the_timeout_raises_wait_timeout_and_leaves_the_job_queued(
    api: HardeningClient, digits_model: Path, digits_train: Path
) -> None:
    job_id = submit_digits(api, digits_model, digits_train)

    with pytest.raises(WaitTimeout):
        api.wait(job_id, timeout=1.0)

    assert api.get(job_id).state is JobState.QUEUED
