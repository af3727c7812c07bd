"""A text model's bad inputs, through a real gRPC server on port 0: each is refused at upload or
at SubmitJob, before a worker spends time, with a status and a message that say what to fix,
and the server goes on serving."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from service_support import make_settings
from tempering.v1 import hardening_pb2 as pb
from tempering.v1 import hardening_pb2_grpc as pb_grpc
from text_support import (
    TextInputs,
    make_text_inputs,
    text_spec,
    tokenizer_requests,
    upload_texts,
    upload_tokenizer,
)

from service.api.server import start_server
from tests.engine.text import support
from tests.shared_support import digits_arrays, export_digits_mlp, npz_bytes, upload_dataset
from tests.shared_support import upload_model as upload_model_bytes
from workers.engine.text.tokenizer import MAX_TOKENIZER_BYTES

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> TextInputs:
    pytest.importorskip("torch")
    return make_text_inputs(tmp_path_factory.mktemp("text"))


@pytest.fixture(scope="module")
def stub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[pb_grpc.HardeningServiceStub]:
    """One server for the module: every refusal leaves it serving the next test."""
    settings = make_settings(tmp_path_factory.mktemp("server"), max_upload_bytes=2**30)
    running = start_server(settings)
    try:
        with grpc.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            yield pb_grpc.HardeningServiceStub(channel)
    finally:
        running.stop(grace=0)


@pytest.fixture(scope="module")
def ids(stub: pb_grpc.HardeningServiceStub, inputs: TextInputs) -> dict[str, str]:
    return {
        "model": upload_model_bytes(stub, inputs.model.read_bytes()),
        "tokenizer": upload_tokenizer(stub, inputs.tokenizer.read_bytes()),
        "train": upload_texts(stub, inputs.train.read_bytes()),
        "test": upload_texts(stub, inputs.test.read_bytes()),
    }


def refusal(call: object) -> tuple[grpc.StatusCode, str]:
    error = call
    assert isinstance(error, grpc.RpcError)
    return error.code(), error.details()


def submit_refused(
    stub: pb_grpc.HardeningServiceStub, spec: pb.JobSpec
) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as caught:
        stub.SubmitJob(pb.SubmitJobRequest(spec=spec), timeout=60)
    still_serving(stub)
    return refusal(caught.value)


def still_serving(stub: pb_grpc.HardeningServiceStub) -> None:
    assert stub.GetServerInfo(pb.GetServerInfoRequest(), timeout=10).api == "tempering.v1"


def jsonl(*rows: object) -> bytes:
    return "".join(json.dumps(row) + "\n" for row in rows).encode()


GOOD = {"text": "the cat likes the prize today", "label": 1}


# --- uploads ----------------------------------------------------------------------------------


def test_a_tokenizer_that_is_not_json_is_refused_at_upload(
    stub: pb_grpc.HardeningServiceStub,
) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        upload_tokenizer(stub, b"[PAD] 0\n[UNK] 1\n")

    code, message = refusal(caught.value)
    assert code is grpc.StatusCode.INVALID_ARGUMENT
    assert "the tokenizer file tokenizer.json is not JSON" in message
    still_serving(stub)


def test_json_that_is_not_a_tokenizer_is_refused_at_upload(
    stub: pb_grpc.HardeningServiceStub,
) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        upload_tokenizer(stub, json.dumps({"model_max_length": 512}).encode())

    code, message = refusal(caught.value)
    assert code is grpc.StatusCode.INVALID_ARGUMENT
    assert "no 'model' section" in message
    still_serving(stub)


def test_a_huge_tokenizer_is_refused_before_its_bytes_are_read(
    stub: pb_grpc.HardeningServiceStub,
) -> None:
    declared = MAX_TOKENIZER_BYTES + 1
    with pytest.raises(grpc.RpcError) as caught:
        stub.UploadTokenizer(tokenizer_requests(b"{}", size=declared), timeout=60)

    code, message = refusal(caught.value)
    assert code is grpc.StatusCode.INVALID_ARGUMENT
    assert f"too large: {declared:,} bytes, the limit is {MAX_TOKENIZER_BYTES:,}" in message
    still_serving(stub)


def test_a_tokenizer_is_kept_and_named_by_its_content(
    stub: pb_grpc.HardeningServiceStub, inputs: TextInputs
) -> None:
    data = inputs.tokenizer.read_bytes()

    first = stub.UploadTokenizer(tokenizer_requests(data), timeout=60)
    again = stub.UploadTokenizer(tokenizer_requests(data), timeout=60)

    assert first.artifact_id.startswith("tokenizer-")
    assert again.artifact_id == first.artifact_id
    assert again.already_present


# --- submit -----------------------------------------------------------------------------------


def test_a_valid_text_job_is_queued(
    stub: pb_grpc.HardeningServiceStub, ids: dict[str, str]
) -> None:
    spec = text_spec(ids["model"], ids["train"], ids["tokenizer"], ids["test"])

    job = stub.SubmitJob(pb.SubmitJobRequest(spec=spec), timeout=60)

    assert job.state == pb.JOB_STATE_QUEUED
    assert job.spec.tokenizer_id == ids["tokenizer"]


def test_texts_longer_than_the_models_length_are_not_refused(
    stub: pb_grpc.HardeningServiceStub, ids: dict[str, str]
) -> None:
    long_text = {"text": " ".join(["the cat likes the prize today"] * 40), "label": 1}
    train = upload_texts(stub, jsonl(long_text, GOOD, {"text": "a dog sees a gift", "label": 0}))
    spec = text_spec(ids["model"], train, ids["tokenizer"], max_length=8)

    job = stub.SubmitJob(pb.SubmitJobRequest(spec=spec), timeout=60)

    assert job.state == pb.JOB_STATE_QUEUED


def test_a_text_model_without_a_tokenizer_is_refused(
    stub: pb_grpc.HardeningServiceStub, ids: dict[str, str]
) -> None:
    code, message = submit_refused(stub, text_spec(ids["model"], ids["train"]))

    assert code is grpc.StatusCode.INVALID_ARGUMENT
    assert "the model reads token ids (input 'input_ids')" in message
    assert "UploadTokenizer" in message
    assert "spec.tokenizer_id" in message


def test_a_tokenizer_larger_than_the_embedding_table_is_refused(
    stub: pb_grpc.HardeningServiceStub, ids: dict[str, str], tmp_path: Path
) -> None:
    bigger = support.word_level_tokenizer([*support.sentences(50), "zebra yak quokka wombat"])
    bigger.save(str(tmp_path / "bigger.json"))
    tokenizer = upload_tokenizer(stub, (tmp_path / "bigger.json").read_bytes())
    vocab = bigger.get_vocab_size()

    code, message = submit_refused(stub, text_spec(ids["model"], ids["train"], tokenizer))

    assert code is grpc.StatusCode.INVALID_ARGUMENT
    assert f"it produces ids up to {vocab - 1} ({vocab} tokens)" in message
    assert f"embedding table has {vocab - 4} rows" in message


def test_a_line_that_is_not_json_is_refused_by_its_number(
    stub: pb_grpc.HardeningServiceStub, ids: dict[str, str]
) -> None:
    train = upload_texts(stub, jsonl(GOOD, GOOD) + b'{"text": "oops", "label": 1,}\n')

    code, message = submit_refused(stub, text_spec(ids["model"], train, ids["tokenizer"]))

    assert code is grpc.StatusCode.INVALID_ARGUMENT
    assert message.startswith("training data: line 3: not JSON")


def test_a_csv_row_with_a_stray_comma_is_refused_by_its_line(
    stub: pb_grpc.HardeningServiceStub, ids: dict[str, str]
) -> None:
    rows = b"text,label\nthe cat likes the prize today,1\na dog, sees a gift,0\n"
    test = upload_texts(stub, rows, pb.DATASET_FORMAT_CSV)
    spec = text_spec(ids["model"], ids["train"], ids["tokenizer"], eval_id=test)

    code, message = submit_refused(stub, spec)

    assert code is grpc.StatusCode.INVALID_ARGUMENT
    assert message.startswith("evaluation data: line 3: 3 fields where the header has 2")


def test_a_label_beyond_the_models_classes_is_refused(
    stub: pb_grpc.HardeningServiceStub, ids: dict[str, str]
) -> None:
    train = upload_texts(stub, jsonl(GOOD, {"text": "a dog sees a gift", "label": 2}))

    code, message = submit_refused(stub, text_spec(ids["model"], train, ids["tokenizer"]))

    assert code is grpc.StatusCode.INVALID_ARGUMENT
    assert "line 2: label 2 is out of range for a model with 2 classes" in message


def test_an_empty_text_is_refused(stub: pb_grpc.HardeningServiceStub, ids: dict[str, str]) -> None:
    train = upload_texts(stub, jsonl(GOOD, {"text": "   ", "label": 0}))

    code, message = submit_refused(stub, text_spec(ids["model"], train, ids["tokenizer"]))

    assert code is grpc.StatusCode.INVALID_ARGUMENT
    assert message == "training data: line 2: 'text' is empty"


def test_array_data_for_a_text_model_is_refused(
    stub: pb_grpc.HardeningServiceStub, ids: dict[str, str]
) -> None:
    x, y = digits_arrays()
    train = upload_dataset(stub, npz_bytes(x[:20], y[:20]))

    code, message = submit_refused(stub, text_spec(ids["model"], train, ids["tokenizer"]))

    assert code is grpc.StatusCode.INVALID_ARGUMENT
    assert "the training data is an .npz of arrays, but the model reads token ids" in message


def test_text_data_for_an_image_model_is_refused(
    stub: pb_grpc.HardeningServiceStub, ids: dict[str, str], tmp_path: Path
) -> None:
    image_model = upload_model_bytes(stub, export_digits_mlp(tmp_path / "mlp.onnx"))

    code, message = submit_refused(stub, text_spec(image_model, ids["train"], ids["tokenizer"]))

    assert code is grpc.StatusCode.INVALID_ARGUMENT
    assert "the model reads a float tensor" in message
    assert "not token ids" in message
