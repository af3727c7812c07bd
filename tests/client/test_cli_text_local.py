"""``temper harden --local`` on a text model: the model, its tokenizer and JSON Lines of texts
go in; the hardened ONNX, the tokenizer beside it and a text report come out."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from client_helpers import CliRunner

from tests.engine.text import support

pytestmark = pytest.mark.slow


@pytest.fixture
def text_inputs(tmp_path: Path) -> dict[str, Path]:
    pytest.importorskip("torch")
    tokenizer = tmp_path / "tokenizer.json"
    trained = support.word_level_tokenizer(support.sentences(50))
    trained.save(str(tokenizer))
    return {
        "model": support.export_text_model(tmp_path / "text.onnx", trained.get_vocab_size()),
        "tokenizer": tokenizer,
        "train": support.write_jsonl(tmp_path / "train.jsonl", support.labelled(80, seed=1)),
        "test": support.write_jsonl(tmp_path / "test.jsonl", support.labelled(30, seed=2)),
    }


def text_args(inputs: dict[str, Path], output: Path, *extra: object) -> list[object]:
    return [
        "harden", inputs["model"], "--tokenizer", inputs["tokenizer"],
        "--data", inputs["train"], "--eval-data", inputs["test"],
        "--method", "pgd", "--epochs", "1", "--eval-samples", "12",
        "-o", output, *extra,
    ]  # fmt: skip


def test_a_text_model_hardens_locally_and_comes_back_beside_its_tokenizer(
    temper: CliRunner, text_inputs: dict[str, Path], tmp_path: Path
) -> None:
    output = tmp_path / "out" / "hardened.onnx"

    result = temper(*text_args(text_inputs, output, "--local", "--word-share", "0.25"))

    assert result.code == 0, result.err
    report = json.loads((tmp_path / "out" / "hardened.report.json").read_text())
    assert report["modality"] == "text"
    assert report["threat_model"]["word_share"] == 0.25
    assert report["hardened"]["clean_accuracy"]["total"] == 12
    tokenizer = tmp_path / "out" / "hardened.tokenizer.json"
    assert tokenizer.read_bytes() == text_inputs["tokenizer"].read_bytes()
    assert "word" in result.out


def test_a_text_model_is_not_given_an_eps(
    temper: CliRunner, text_inputs: dict[str, Path], tmp_path: Path
) -> None:
    result = temper(*text_args(text_inputs, tmp_path / "h.onnx", "--local", "--eps", "0.1"))

    assert result.code == 2
    assert "--word-share and --char-share" in result.err


def test_an_image_model_still_needs_an_eps(
    temper: CliRunner, text_inputs: dict[str, Path], tmp_path: Path
) -> None:
    result = temper(
        "harden", text_inputs["model"], "--data", text_inputs["train"], "--local",
        "-o", tmp_path / "h.onnx",
    )  # fmt: skip

    assert result.code == 2
    assert "--eps is required" in result.err


def test_the_ci_gates_hold_a_text_model_to_its_worst_case(
    temper: CliRunner, text_inputs: dict[str, Path], tmp_path: Path
) -> None:
    output = tmp_path / "gated" / "hardened.onnx"

    result = temper(*text_args(text_inputs, output, "--local", "--min-robust-accuracy", "1.0"))

    report = json.loads((tmp_path / "gated" / "hardened.report.json").read_text())
    worst = report["hardened"]["robust_accuracy"]["value"]
    assert worst < 1.0
    assert result.code == 5, result.err
    assert "GATE FAILED: robust accuracy" in result.err
    assert (tmp_path / "gated" / "hardened.junit.xml").is_file()
