"""``temper harden --local`` end to end on the bundled digits model."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnxruntime
import pytest
from client_helpers import CliRunner

pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def one_torch_thread() -> Iterator[None]:
    """The model is tiny: on a shared two-core machine a second thread only slows it down."""
    torch = pytest.importorskip("torch")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def local_args(model: Path, train: Path, test: Path, output: Path) -> list[object]:
    return [
        "harden",
        model,
        "--data",
        train,
        "--eval-data",
        test,
        "--method",
        "pgd",
        "--eps",
        "0.1",
        "--epochs",
        "1",
        "--suite",
        "fast",
        "--eval-samples",
        "64",
        "--local",
        "-o",
        output,
    ]


def test_local_harden_writes_a_working_onnx_model_with_report_and_card_beside_it(
    temper: CliRunner,
    digits_model: Path,
    digits_train: Path,
    digits_test: Path,
    tmp_path: Path,
) -> None:
    output = tmp_path / "out" / "hardened.onnx"

    result = temper(*local_args(digits_model, digits_train, digits_test, output))

    assert result.code == 0, result.err
    session = onnxruntime.InferenceSession(str(output))
    with np.load(digits_test) as data:
        x = data["x"][:16]
    (logits,) = session.run(None, {session.get_inputs()[0].name: x})
    assert logits.shape == (16, 10)
    report = json.loads((tmp_path / "out" / "hardened.report.json").read_text())
    assert report["hardened"]["clean_accuracy"]["total"] == 64
    card = (tmp_path / "out" / "hardened.model_card.md").read_text()
    assert "](hardened.robustness_curve.png)" in card
    assert (tmp_path / "out" / "hardened.robustness_curve.png").stat().st_size > 0
    assert "clean accuracy" in result.out
    assert "robust accuracy (worst)" in result.out
    assert "apgd-ce" in result.out


def test_local_harden_with_json_prints_paths_and_headline_scores(
    temper: CliRunner,
    digits_model: Path,
    digits_train: Path,
    digits_test: Path,
    tmp_path: Path,
) -> None:
    output = tmp_path / "hardened.onnx"

    result = temper(*local_args(digits_model, digits_train, digits_test, output), "--json")

    assert result.code == 0, result.err
    summary = json.loads(result.out)
    assert summary["state"] == "SUCCEEDED"
    assert summary["outputs"]["model"] == str(output)
    assert Path(summary["outputs"]["report"]).is_file()
    assert 0.0 <= summary["hardened"]["robust_accuracy"]["value"] <= 1.0
    assert isinstance(summary["original"]["gradient_masking_suspected"], bool)


def test_local_harden_refuses_a_text_file_named_onnx_with_exit_4(
    temper: CliRunner, digits_train: Path, tmp_path: Path
) -> None:
    fake = tmp_path / "model.onnx"
    fake.write_text("this is not a model\n")

    result = temper(
        "harden", fake, "--data", digits_train, "--eps", "0.1", "--local", "-o", tmp_path / "h.onnx"
    )

    assert result.code == 4
    assert "temper harden: error:" in result.err
    assert "onnx" in result.err
    assert not (tmp_path / "h.onnx").exists()
