"""A dynamo export end to end on the single-machine stack (`python -m service`: the gRPC server
on port 0 and a real Celery worker): ``torch.onnx.export(..., dynamo=True)`` writes the weights
to ``mlp.onnx.data`` beside ``mlp.onnx``; ``temper harden mlp.onnx --server`` sends both as one
bundle, a worker hardens the model, and a self-contained ONNX model comes back."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from e2e_support import (
    QUICK_EVAL_SAMPLES,
    Hardened,
    Stack,
    harden_quickly,
    single_machine_stack,
    write_digits_inputs,
)

from client import HardeningClient
from tests.shared_support import digits_arrays

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with single_machine_stack(tmp_path_factory.mktemp("bundle-stack")) as running:
        yield running


@pytest.fixture(scope="module")
def export(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    pytest.importorskip("torch")
    return write_digits_inputs(tmp_path_factory.mktemp("dynamo-export"))


@pytest.fixture(scope="module")
def hardened(
    stack: Stack, export: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory
) -> Hardened:
    model, data = export
    output = tmp_path_factory.mktemp("out") / "hardened.onnx"
    return harden_quickly(model, data, stack.address, output, "--json")


def test_the_dynamo_exporter_writes_external_data(export: tuple[Path, Path]) -> None:
    model, _ = export

    assert model.with_name("mlp.onnx.data").is_file()


def test_temper_hardens_a_dynamo_export_with_external_data_on_a_server(
    hardened: Hardened, stack: Stack
) -> None:
    assert hardened.code == 0, hardened.err + stack.logs()
    report = json.loads(hardened.output.with_name("hardened.report.json").read_text())
    assert report["hardened"]["clean_accuracy"]["total"] == QUICK_EVAL_SAMPLES


def test_the_hardened_model_comes_back_as_one_self_contained_file(hardened: Hardened) -> None:
    model = onnx.load(hardened.output, load_external_data=False)
    external = [
        t.name for t in model.graph.initializer if t.data_location == onnx.TensorProto.EXTERNAL
    ]
    session = ort.InferenceSession(hardened.output.read_bytes(), providers=["CPUExecutionProvider"])
    x, _ = digits_arrays()

    (scores,) = session.run(None, {session.get_inputs()[0].name: x[:8]})

    assert external == []
    assert scores.shape == (8, 10)
    assert np.isfinite(scores).all()


def test_the_sdk_sends_the_same_bundle_under_the_same_id(
    stack: Stack, export: tuple[Path, Path]
) -> None:
    model, _ = export
    with HardeningClient(stack.address) as client:
        first, second = client.upload_model(model), client.upload_model(model)

    assert first == second
