"""Job RPCs through a real gRPC server: checks at submit time and status codes. No worker runs
here; submitted jobs stay queued on a broker file nobody consumes."""

from __future__ import annotations

from pathlib import Path

import grpc
import numpy as np
import onnx
import pytest
from svc_helpers import digits_like, fgsm_spec, linear_onnx
from tempering.v1 import hardening_pb2 as pb
from tempering.v1 import hardening_pb2_grpc as pb_grpc

from tests.shared_support import npz_bytes, upload_dataset, upload_model
from workers.engine.errors import float_input_required

Stub = pb_grpc.HardeningServiceStub


@pytest.fixture
def inputs(stub: Stub) -> tuple[str, str]:
    return upload_model(stub, linear_onnx()), upload_dataset(stub, digits_like())


def submit_error(stub: Stub, spec: pb.JobSpec) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as error:
        stub.SubmitJob(pb.SubmitJobRequest(spec=spec))
    return error.value


def test_submit_returns_the_job_queued(stub: Stub, inputs: tuple[str, str]) -> None:
    job = stub.SubmitJob(pb.SubmitJobRequest(spec=fgsm_spec(*inputs), labels={"team": "a"}))

    assert job.state == pb.JOB_STATE_QUEUED
    assert job.spec.training.WhichOneof("method") == "fgsm"
    assert job.spec.evaluation.suite == pb.EVALUATION_SUITE_FAST
    assert stub.GetJob(pb.GetJobRequest(job_id=job.id)).id == job.id


def test_same_idempotency_key_returns_the_same_job(stub: Stub, inputs: tuple[str, str]) -> None:
    request = pb.SubmitJobRequest(spec=fgsm_spec(*inputs), idempotency_key="retry-1")

    first = stub.SubmitJob(request)
    second = stub.SubmitJob(request)

    assert second.id == first.id
    assert len(stub.ListJobs(pb.ListJobsRequest()).jobs) == 1


def test_idempotency_key_reused_for_another_job_is_already_exists(
    stub: Stub, inputs: tuple[str, str]
) -> None:
    stub.SubmitJob(pb.SubmitJobRequest(spec=fgsm_spec(*inputs), idempotency_key="k"))
    other = fgsm_spec(*inputs, seed=99)

    with pytest.raises(grpc.RpcError) as error:
        stub.SubmitJob(pb.SubmitJobRequest(spec=other, idempotency_key="k"))

    assert error.value.code() is grpc.StatusCode.ALREADY_EXISTS


def test_missing_method_is_invalid_argument(stub: Stub, inputs: tuple[str, str]) -> None:
    spec = fgsm_spec(*inputs)
    spec.training.ClearField("method")

    error = submit_error(stub, spec)

    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "distillation, pgd, fgsm or trades" in error.details()


def test_out_of_range_parameter_is_invalid_argument(stub: Stub, inputs: tuple[str, str]) -> None:
    spec = fgsm_spec(*inputs)
    spec.training.epochs = 5000

    error = submit_error(stub, spec)

    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "epochs" in error.details()


def test_unknown_model_is_not_found(stub: Stub, inputs: tuple[str, str]) -> None:
    error = submit_error(stub, fgsm_spec("model-" + "0" * 64, inputs[1]))

    assert error.code() is grpc.StatusCode.NOT_FOUND
    assert "UploadModel" in error.details()


def test_a_uint8_input_model_is_refused_with_the_engines_message(
    stub: Stub, inputs: tuple[str, str]
) -> None:
    graph = onnx.helper.make_graph(
        [
            onnx.helper.make_node("Cast", ["x"], ["xf"], to=onnx.TensorProto.FLOAT),
            onnx.helper.make_node("Gemm", ["xf", "W"], ["logits"]),
        ],
        "uint8_input",
        [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.UINT8, ["N", 64])],
        [onnx.helper.make_tensor_value_info("logits", onnx.TensorProto.FLOAT, ["N", 10])],
        [onnx.numpy_helper.from_array(np.zeros((64, 10), np.float32), "W")],
    )
    model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 17)])
    model.ir_version = 8
    uint8_model = upload_model(stub, model.SerializeToString())

    error = submit_error(stub, fgsm_spec(uint8_model, inputs[1]))

    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert error.details() == float_input_required("x", "UINT8")


def test_model_that_is_not_onnx_is_invalid_argument(stub: Stub, inputs: tuple[str, str]) -> None:
    garbage = upload_model(stub, b"definitely not a protobuf" * 10)

    error = submit_error(stub, fgsm_spec(garbage, inputs[1]))

    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "ONNX" in error.details()


def test_data_shaped_unlike_the_model_input_is_invalid_argument(
    stub: Stub, inputs: tuple[str, str]
) -> None:
    wrong = upload_dataset(stub, digits_like(features=30))

    error = submit_error(stub, fgsm_spec(inputs[0], wrong))

    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "(N, 64)" in error.details()


def test_labels_beyond_the_model_outputs_are_invalid_argument(
    stub: Stub, inputs: tuple[str, str]
) -> None:
    x = np.random.default_rng(0).uniform(0, 1, (20, 64)).astype(np.float32)
    too_many = upload_dataset(stub, npz_bytes(x, np.arange(20)))

    error = submit_error(stub, fgsm_spec(inputs[0], too_many))

    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "10 outputs" in error.details()


def test_data_outside_the_input_bounds_is_invalid_argument(
    stub: Stub, inputs: tuple[str, str]
) -> None:
    spec = fgsm_spec(*inputs)
    spec.threat_model.upper[:] = [0.5]

    error = submit_error(stub, spec)

    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "bounds" in error.details()


def test_missing_epsilon_is_invalid_argument(stub: Stub, inputs: tuple[str, str]) -> None:
    spec = fgsm_spec(*inputs)
    spec.threat_model.epsilon = 0

    assert submit_error(stub, spec).code() is grpc.StatusCode.INVALID_ARGUMENT


def test_list_pages_and_filters(stub: Stub, inputs: tuple[str, str]) -> None:
    for team in ("a", "a", "b"):
        stub.SubmitJob(pb.SubmitJobRequest(spec=fgsm_spec(*inputs), labels={"team": team}))

    first = stub.ListJobs(pb.ListJobsRequest(page_size=2))
    second = stub.ListJobs(pb.ListJobsRequest(page_size=2, page_token=first.next_page_token))
    team_a = stub.ListJobs(pb.ListJobsRequest(labels={"team": "a"}))
    running = stub.ListJobs(pb.ListJobsRequest(states=[pb.JOB_STATE_RUNNING]))

    assert (len(first.jobs), len(second.jobs), second.next_page_token) == (2, 1, "")
    assert len(team_a.jobs) == 2
    assert len(running.jobs) == 0


def test_bad_page_token_is_invalid_argument(stub: Stub) -> None:
    with pytest.raises(grpc.RpcError) as error:
        stub.ListJobs(pb.ListJobsRequest(page_token="garbage!"))

    assert error.value.code() is grpc.StatusCode.INVALID_ARGUMENT


def test_unknown_job_is_not_found_everywhere(stub: Stub) -> None:
    calls = [
        lambda: stub.GetJob(pb.GetJobRequest(job_id="nope")),
        lambda: stub.CancelJob(pb.CancelJobRequest(job_id="nope")),
        lambda: list(stub.WatchJob(pb.WatchJobRequest(job_id="nope"))),
        lambda: list(
            stub.DownloadArtifact(
                pb.DownloadArtifactRequest(job_id="nope", kind=pb.ARTIFACT_KIND_REPORT)
            )
        ),
    ]
    for call in calls:
        with pytest.raises(grpc.RpcError) as error:
            call()
        assert error.value.code() is grpc.StatusCode.NOT_FOUND


def test_cancelled_queued_job_is_watched_to_its_end(stub: Stub, inputs: tuple[str, str]) -> None:
    job = stub.SubmitJob(pb.SubmitJobRequest(spec=fgsm_spec(*inputs)))

    cancelled = stub.CancelJob(pb.CancelJobRequest(job_id=job.id))
    events = list(stub.WatchJob(pb.WatchJobRequest(job_id=job.id), timeout=10))

    assert cancelled.state == pb.JOB_STATE_CANCELLED
    assert [e.state for e in events] == [pb.JOB_STATE_CANCELLED]
    assert events[0].state_changed.reason


def test_download_before_success_is_failed_precondition(
    stub: Stub, inputs: tuple[str, str]
) -> None:
    job = stub.SubmitJob(pb.SubmitJobRequest(spec=fgsm_spec(*inputs)))

    with pytest.raises(grpc.RpcError) as error:
        list(
            stub.DownloadArtifact(
                pb.DownloadArtifactRequest(job_id=job.id, kind=pb.ARTIFACT_KIND_HARDENED_MODEL)
            )
        )

    assert error.value.code() is grpc.StatusCode.FAILED_PRECONDITION
    assert "QUEUED" in error.value.details()


def test_model_with_external_weights_is_invalid_argument(
    stub: Stub, inputs: tuple[str, str], tmp_path: Path
) -> None:
    model = onnx.load_from_string(linear_onnx())
    onnx.save(model, tmp_path / "m.onnx", save_as_external_data=True, size_threshold=0)
    split = upload_model(stub, (tmp_path / "m.onnx").read_bytes())

    error = submit_error(stub, fgsm_spec(split, inputs[1]))

    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "self-contained" in error.details()
