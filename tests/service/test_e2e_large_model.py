"""A model over the inline weight limit end to end on the single-machine stack (`python -m
service`: the gRPC server on port 0 and a real Celery worker), with TEMPERING_INLINE_WEIGHT_LIMIT
lowered to 2M so that a 4 MB dynamo export stands for one over 2 GB: ``temper harden mlp.onnx
--server`` sends it as a bundle, the worker reads its weights straight from the bundle's files,
and the hardened model comes back as the bundle ``hardened.onnx.tar``, unpacked by the client
into a folder of its own and loaded there by onnxruntime, its report in its metadata."""

from __future__ import annotations

import contextlib
import io
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
from tempering.v1 import hardening_pb2 as pb

from client.cli import main
from tests.shared_support import digits_arrays

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

LIMIT = "2M"
HIDDEN = 16384
"""64 x 16384 float weights: 4 MiB in the first layer, over the lowered limit."""


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    folder = tmp_path_factory.mktemp("large-model-stack")
    with single_machine_stack(folder, TEMPERING_INLINE_WEIGHT_LIMIT=LIMIT) as running:
        yield running


@pytest.fixture(scope="module")
def export(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    pytest.importorskip("torch")
    return write_digits_inputs(tmp_path_factory.mktemp("wide-export"), hidden=HIDDEN, train_steps=0)


@pytest.fixture(scope="module")
def hardened(
    stack: Stack, export: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory
) -> Hardened:
    model, data = export
    output = tmp_path_factory.mktemp("out") / "hardened.onnx"
    return harden_quickly(model, data, stack.address, output)


def test_the_export_is_over_the_lowered_limit(export: tuple[Path, Path]) -> None:
    model, _ = export

    assert model.with_name("mlp.onnx.data").stat().st_size > 2 * 1024 * 1024


def test_temper_hardens_a_model_over_the_limit_on_a_server(
    hardened: Hardened, stack: Stack
) -> None:
    assert hardened.code == 0, hardened.err + stack.logs()
    report = json.loads(hardened.output.with_name("hardened.report.json").read_text())
    assert report["hardened"]["clean_accuracy"]["total"] == QUICK_EVAL_SAMPLES


def test_the_hardened_model_is_unpacked_into_a_folder_of_its_own(hardened: Hardened) -> None:
    folder = hardened.output.with_suffix("")

    assert sorted(p.name for p in folder.iterdir()) == ["hardened.onnx", "hardened.onnx.data"]
    assert f"hardened model: {folder / 'hardened.onnx'}" in hardened.out


def test_onnxruntime_runs_the_unpacked_model_with_its_report_inside(hardened: Hardened) -> None:
    path = hardened.output.with_suffix("") / "hardened.onnx"
    external = [
        t.name
        for t in onnx.load(path, load_external_data=False).graph.initializer
        if t.data_location == onnx.TensorProto.EXTERNAL
    ]
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x, _ = digits_arrays()

    (scores,) = session.run(None, {session.get_inputs()[0].name: x[:8]})

    assert external
    assert scores.shape == (8, 10)
    assert np.isfinite(scores).all()
    report = json.loads(session.get_modelmeta().custom_metadata_map["tempering.report"])
    assert report["hardened"]["clean_accuracy"]["total"] == QUICK_EVAL_SAMPLES


def test_the_download_header_names_the_bundle(hardened: Hardened, stack: Stack) -> None:
    (job,) = stack.stub.ListJobs(pb.ListJobsRequest()).jobs
    stream = stack.stub.DownloadArtifact(
        pb.DownloadArtifactRequest(job_id=job.id, kind=pb.ARTIFACT_KIND_HARDENED_MODEL)
    )

    header = next(stream).header
    stream.cancel()

    assert (header.filename, header.media_type, header.bundle) == (
        "hardened.onnx.tar",
        "application/x-tar",
        True,
    )
    (model,) = [o for o in job.outputs if o.kind == pb.ARTIFACT_KIND_HARDENED_MODEL]
    assert model.bundle


def test_temper_download_unpacks_the_bundle_and_prints_where_its_onnx_is(
    hardened: Hardened, stack: Stack, tmp_path: Path
) -> None:
    (job,) = stack.stub.ListJobs(pb.ListJobsRequest()).jobs
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(["download", job.id, "--server", stack.address, "-o", str(tmp_path / "m.onnx")])

    assert code == 0
    assert out.getvalue().strip() == str(tmp_path / "m" / "hardened.onnx")
    assert (tmp_path / "m" / "hardened.onnx.data").is_file()
