"""A tabular model end to end on the single-machine stack (`python -m service`: the gRPC server on
port 0 and a real Celery worker): ``temper harden --schema ... --eps 0.5 --server`` uploads the
model, its .npz rows and its feature schema, a worker hardens it under the schema, and the model,
a report with its tabular section and the schema come back; ``temper download`` fetches the
schema beside the model."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from e2e_support import QUICK_EVAL_SAMPLES, Hardened, Stack, harden_quickly, single_machine_stack
from svc_helpers import download
from tempering.v1 import hardening_pb2 as pb

from client.cli import main

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with single_machine_stack(tmp_path_factory.mktemp("tabular-stack")) as running:
        yield running


@pytest.fixture(scope="module")
def address(stack: Stack) -> str:
    return stack.address


@pytest.fixture(scope="module")
def case(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    pytest.importorskip("torch")
    from tests.engine.tabular_support import write_case

    return write_case(tmp_path_factory.mktemp("tabular-inputs"), n=300)


@pytest.fixture(scope="module")
def hardened(
    address: str, case: tuple[Path, Path, Path], tmp_path_factory: pytest.TempPathFactory
) -> Hardened:
    """One tabular job through the CLI, shared by the tests that read what it left."""
    model, data, schema = case
    output = tmp_path_factory.mktemp("out") / "hardened.onnx"
    return harden_quickly(model, data, address, output, "--schema", schema, "--json", eps="0.5")


def temper(capsys: pytest.CaptureFixture[str], *args: object) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_temper_hardens_a_tabular_model_under_its_schema_on_a_server(
    hardened: Hardened, stack: Stack
) -> None:
    assert hardened.code == 0, hardened.err + stack.logs()
    report = json.loads(hardened.output.with_name("hardened.report.json").read_text())
    assert report["modality"] == "tabular"
    assert report["hardened"]["clean_accuracy"]["total"] == QUICK_EVAL_SAMPLES
    assert report["threat_model"]["upper"][:3] == [1000.0, 5000.0, 50.0]
    assert hardened.output.is_file()


def test_the_report_shows_the_uploaded_schemas_features(hardened: Hardened) -> None:
    from tests.engine.tabular_support import SCHEMA

    report = json.loads(hardened.output.with_name("hardened.report.json").read_text())
    features = {f["name"]: f for f in report["tabular"]["schema"]["features"]}

    assert list(features) == [f["name"] for f in SCHEMA["features"]]
    assert features["account_age"]["budget"] == "immutable"
    assert features["tx_24h"]["radius"] == 2.0
    assert features["foreign"]["budget"] == "flip"


def test_the_constrained_attacks_scored_both_models(hardened: Hardened) -> None:
    report = json.loads(hardened.output.with_name("hardened.report.json").read_text())

    for label in ("original", "hardened"):
        audits = {a["name"] for a in report["tabular"][label]["attacks"]}
        assert audits == {"capgd-ce", "capgd-t", "evolution", "exhaustive"}
        assert report["tabular"][label]["unconstrained"]["at_most_constrained"] is True


def test_the_schema_comes_back_beside_the_model(
    hardened: Hardened, case: tuple[Path, Path, Path]
) -> None:
    schema = hardened.output.with_name("hardened.feature_schema.json")

    assert schema.read_bytes() == case[2].read_bytes()
    assert json.loads(hardened.out)["outputs"]["schema"] == str(schema)


def test_the_job_lists_the_schema_among_its_outputs(hardened: Hardened, stack: Stack) -> None:
    job = stack.stub.GetJob(pb.GetJobRequest(job_id=hardened.job_id), timeout=10)

    kinds = {output.kind: output.filename for output in job.outputs}
    assert kinds[pb.ARTIFACT_KIND_FEATURE_SCHEMA] == "feature_schema.json"
    header, body = download(stack.stub, hardened.job_id, pb.ARTIFACT_KIND_FEATURE_SCHEMA)
    assert header.media_type == "application/json"
    report = json.loads(hardened.output.with_name("hardened.report.json").read_text())
    assert hashlib.sha256(body).hexdigest() == report["tabular"]["schema_sha256"]


def test_temper_download_writes_the_schema_beside_the_model(
    hardened: Hardened,
    address: str,
    case: tuple[Path, Path, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    target = tmp_path / "model.onnx"

    code, out, err = temper(capsys, "download", hardened.job_id, "--server", address, "-o", target)

    assert code == 0, err
    assert target.read_bytes() == hardened.output.read_bytes()
    assert (tmp_path / "model.feature_schema.json").read_bytes() == case[2].read_bytes()
    assert str(tmp_path / "model.feature_schema.json") in out


def test_temper_download_kind_schema_names_it_after_the_job(
    hardened: Hardened,
    address: str,
    case: tuple[Path, Path, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)

    code, _, err = temper(
        capsys, "download", hardened.job_id, "--kind", "schema", "--server", address
    )

    assert code == 0, err
    written = tmp_path / f"{hardened.job_id}.feature_schema.json"
    assert written.read_bytes() == case[2].read_bytes()
