"""A scikit-learn model exported by skl2onnx hardens end to end through ``pipeline.harden``:
its export check compares the output users read (probabilities, as maps or a tensor), and the
hardened file still serves the label beside them."""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

pytest.importorskip("skl2onnx")
from skl2onnx import to_onnx
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.neural_network import MLPClassifier

from workers.engine.pipeline import harden
from workers.engine.spec import (
    EvaluationConfig,
    EvaluationSuite,
    HardeningRequest,
    Method,
    ModelFormat,
    ModelSource,
    ThreatModel,
    TrainingConfig,
)

pytestmark = pytest.mark.slow


def digits(tmp_path: Path) -> tuple[np.ndarray, np.ndarray, Path]:
    x, y = load_digits(return_X_y=True)
    x = (x / 16.0).astype(np.float32)
    buffer = io.BytesIO()
    np.savez(buffer, x=x, y=y)
    path = tmp_path / "digits.npz"
    path.write_bytes(buffer.getvalue())
    return x, y, path


@pytest.mark.parametrize(
    ("estimator", "options"),
    [
        (MLPClassifier((32,), max_iter=40, random_state=0), None),
        (LogisticRegression(max_iter=50), {"zipmap": False}),
    ],
    ids=["mlp-zipmap", "logistic-tensor"],
)
def test_a_scikit_learn_export_hardens_and_keeps_its_label_and_probabilities(
    tmp_path: Path, estimator: object, options: dict[str, object] | None
) -> None:
    x, y, data = digits(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        estimator.fit(x, y)  # type: ignore[attr-defined]
    model = tmp_path / "sklearn.onnx"
    onnx.save(to_onnx(estimator, x[:1], options=options), str(model))
    request = HardeningRequest(
        model=ModelSource(model, ModelFormat.ONNX),
        train_data=data,
        threat=ThreatModel(eps=0.1),
        training=TrainingConfig(method=Method.FGSM, epochs=1, batch_size=64),
        evaluation=EvaluationConfig(suite=EvaluationSuite.FAST, samples=40),
    )

    result = harden(request, tmp_path / "out")

    assert result.report["export"]["passed"]
    session = ort.InferenceSession(str(result.model_path))
    assert [o.name for o in session.get_outputs()] == [
        o.name for o in ort.InferenceSession(str(model)).get_outputs()
    ]
    label, probabilities = session.run(None, {session.get_inputs()[0].name: x[:20]})
    table = (
        np.array([[row[k] for k in sorted(row)] for row in probabilities])
        if isinstance(probabilities, list)
        else probabilities
    )
    assert np.array_equal(label, table.argmax(axis=1))
    assert np.allclose(table.sum(axis=1), 1.0, atol=1e-5)
