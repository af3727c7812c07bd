"""A text classifier goes through the engine's one entry point, ``pipeline.harden``, like an
image model: it is recognised by its token-ids input, hardened, scored under the discrete
attacks, and returned as ONNX with its original inputs, beside its tokenizer."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import jsonschema
import numpy as np
import onnxruntime
import pytest

from tests.engine.text.support import export_text_model
from workers.engine import pipeline
from workers.engine.errors import InvalidParameter
from workers.engine.report import json_schema
from workers.engine.spec import (
    EvaluationConfig,
    HardeningRequest,
    Method,
    ModelFormat,
    ModelSource,
    TrainingConfig,
)
from workers.engine.text.tokenizer import load_tokenizer

pytestmark = pytest.mark.slow


@pytest.fixture
def text_job(
    tmp_path: Path, word_level_json: Path, labelled_jsonl: tuple[Path, Path]
) -> HardeningRequest:
    vocab = load_tokenizer(word_level_json).vocab_size
    train, test = labelled_jsonl
    return HardeningRequest(
        model=ModelSource(export_text_model(tmp_path / "text.onnx", vocab), ModelFormat.ONNX),
        train_data=train,
        eval_data=test,
        tokenizer=word_level_json,
        training=TrainingConfig(method=Method.PGD, epochs=2, batch_size=16),
        evaluation=EvaluationConfig(samples=20),
        seed=3,
    )


def test_a_text_model_is_hardened_scored_and_returned_with_its_tokenizer(
    text_job: HardeningRequest, tmp_path: Path
) -> None:
    result = pipeline.harden(text_job, tmp_path / "out")

    report = json.loads(result.report_path.read_text())
    jsonschema.validate(report, json_schema())
    assert report["modality"] == "text"
    assert [a["name"] for a in report["hardened"]["attacks"]] == ["char", "word", "embedding-pgd"]
    assert report["evaluation"]["cascade"] == ["char", "word"]
    worst = report["text"]["hardened"]["worst_case"]["robust_accuracy"]
    assert report["hardened"]["robust_accuracy"] == worst
    assert report["hardened"]["clean_accuracy"]["total"] == 20
    assert report["export"]["passed"]
    assert result.tokenizer_path is not None
    assert result.tokenizer_path.read_bytes() == text_job.tokenizer.read_bytes()  # type: ignore[union-attr]


def test_the_returned_onnx_keeps_the_token_inputs_and_runs_in_onnxruntime(
    text_job: HardeningRequest, tmp_path: Path
) -> None:
    result = pipeline.harden(text_job, tmp_path / "out")

    session = onnxruntime.InferenceSession(str(result.model_path))
    inputs = {i.name: i.type for i in session.get_inputs()}
    assert inputs == {"input_ids": "tensor(int64)", "attention_mask": "tensor(int64)"}
    ids = np.array([[2, 5, 6, 3]], dtype=np.int64)
    (logits,) = session.run(None, {"input_ids": ids, "attention_mask": np.ones_like(ids)})
    assert logits.shape == (1, 2)


def test_a_text_model_without_its_tokenizer_is_refused_naming_the_token_input(
    text_job: HardeningRequest, tmp_path: Path
) -> None:
    without = HardeningRequest(**{**text_job.__dict__, "tokenizer": None})

    with pytest.raises(InvalidParameter, match="reads token ids \\(input 'input_ids'\\)"):
        pipeline.harden(without, tmp_path / "out")


def test_the_word_budget_curve_falls_from_clean_accuracy_to_the_word_attack_figure(
    text_job: HardeningRequest, tmp_path: Path
) -> None:
    report = pipeline.harden(text_job, tmp_path / "out").report

    curve = report["original"]["curve"]
    word = next(a for a in report["original"]["attacks"] if a["name"] == "word")
    assert curve[0]["robust_accuracy"]["correct"] == report["original"]["clean_accuracy"]["correct"]
    assert curve[-1]["robust_accuracy"] == word["robust_accuracy"]
    assert all(
        a["robust_accuracy"]["correct"] >= b["robust_accuracy"]["correct"]
        for a, b in itertools.pairwise(curve)
    )
