"""A text model end to end on the single-machine stack (`python -m service`: the gRPC server on
port 0 and a real Celery worker): ``temper harden --tokenizer ... --server`` uploads the model,
its tokenizer and JSON Lines of texts, a worker hardens it, and the ONNX model, the report and
the tokenizer come back; ``temper download`` fetches the tokenizer beside the model."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from e2e_support import Hardened, Stack, run_harden, single_machine_stack
from svc_helpers import download
from tempering.v1 import hardening_pb2 as pb
from text_support import TextInputs, make_text_inputs

from client.cli import main
from tests.engine.text import support

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

MAX_LENGTH = 7
"""Shorter than most generated texts with their [CLS] and [SEP], so that some are cut."""


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with single_machine_stack(tmp_path_factory.mktemp("text-stack")) as running:
        yield running


@pytest.fixture(scope="module")
def address(stack: Stack) -> str:
    return stack.address


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> TextInputs:
    pytest.importorskip("torch")
    return make_text_inputs(tmp_path_factory.mktemp("text-inputs"))


def temper(capsys: pytest.CaptureFixture[str], *args: object) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture(scope="module")
def hardened(
    address: str, inputs: TextInputs, tmp_path_factory: pytest.TempPathFactory
) -> Hardened:
    """One text job through the CLI, shared by the tests that read what it left (a module
    fixture has no capsys: the output is captured here)."""
    output = tmp_path_factory.mktemp("out") / "hardened.onnx"
    return run_harden(
        output, inputs.model, "--tokenizer", inputs.tokenizer,
        "--data", inputs.train, "--eval-data", inputs.test,
        "--method", "pgd", "--epochs", "1", "--eval-samples", "12",
        "--max-length", MAX_LENGTH, "--server", address, "--timeout", "240", "--json",
    )  # fmt: skip


def test_temper_hardens_a_text_model_on_a_server(hardened: Hardened, stack: Stack) -> None:
    assert hardened.code == 0, hardened.err + stack.logs()
    report = json.loads(hardened.output.with_name("hardened.report.json").read_text())
    assert report["modality"] == "text"
    assert report["hardened"]["clean_accuracy"]["total"] == 12
    assert report["threat_model"]["max_length"] == MAX_LENGTH


def test_the_tokenizer_comes_back_beside_the_model(hardened: Hardened, inputs: TextInputs) -> None:
    tokenizer = hardened.output.with_name("hardened.tokenizer.json")
    assert tokenizer.read_bytes() == inputs.tokenizer.read_bytes()


def test_the_hardened_model_reads_the_tokenizers_ids(
    hardened: Hardened, inputs: TextInputs
) -> None:
    from workers.engine.text.tokenizer import encode, load_tokenizer

    tokenizer = load_tokenizer(hardened.output.with_name("hardened.tokenizer.json"))
    batch = encode(tokenizer, support.sentences(5, seed=9), MAX_LENGTH)
    session = ort.InferenceSession(str(hardened.output), providers=["CPUExecutionProvider"])

    (scores,) = session.run(None, {"input_ids": batch.ids, "attention_mask": batch.attention_mask})

    assert scores.shape == (5, 2)
    assert np.isfinite(scores).all()


def test_texts_over_the_maximum_length_are_cut_and_reported(hardened: Hardened) -> None:
    report = json.loads(hardened.output.with_name("hardened.report.json").read_text())
    truncated = report["text"]["truncated"]

    assert truncated["max_length"] == MAX_LENGTH
    assert truncated["train_texts"] > 0
    assert truncated["eval_texts"] > 0
    assert any(
        f"longer than the model's {MAX_LENGTH} tokens" in n for n in report["inputs"]["notes"]
    )


def test_the_job_lists_the_tokenizer_among_its_outputs(hardened: Hardened, stack: Stack) -> None:
    job = stack.stub.GetJob(pb.GetJobRequest(job_id=hardened.job_id), timeout=10)

    kinds = {output.kind: output.filename for output in job.outputs}
    assert kinds[pb.ARTIFACT_KIND_TOKENIZER] == "tokenizer.json"
    header, _ = download(stack.stub, hardened.job_id, pb.ARTIFACT_KIND_TOKENIZER)
    assert header.media_type == "application/json"


def test_temper_download_writes_the_tokenizer_beside_the_model(
    hardened: Hardened,
    address: str,
    inputs: TextInputs,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    target = tmp_path / "model.onnx"

    code, out, err = temper(capsys, "download", hardened.job_id, "--server", address, "-o", target)

    assert code == 0, err
    assert target.read_bytes() == hardened.output.read_bytes()
    assert (tmp_path / "model.tokenizer.json").read_bytes() == inputs.tokenizer.read_bytes()
    assert str(tmp_path / "model.tokenizer.json") in out
