"""scikit-learn classifiers exported by skl2onnx: read with parity to onnxruntime, trained, and
written back with their label and probabilities outputs intact."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

pytest.importorskip("skl2onnx")
from skl2onnx import to_onnx
from sklearn.datasets import load_breast_cancer, load_digits
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression, SGDClassifier
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC, LinearSVC

from workers.engine.errors import UnsupportedModel
from workers.engine.models.onnx import load_onnx_classifier, write_trained_onnx


def _binary_data() -> tuple[np.ndarray, np.ndarray]:
    x, y = load_breast_cancer(return_X_y=True)
    return StandardScaler().fit_transform(x).astype(np.float32), y


def _digits_data() -> tuple[np.ndarray, np.ndarray]:
    x, y = load_digits(return_X_y=True)
    return (x[:500] / 16.0).astype(np.float32), y[:500]


def _estimator(kind: str):
    return {
        "mlp": MLPClassifier((16,), max_iter=30, random_state=0),
        "logistic": LogisticRegression(max_iter=20),
        "scaled_logistic": make_pipeline(StandardScaler(), LogisticRegression(max_iter=20)),
        "linear_svc": LinearSVC(max_iter=200),
        "hinge_sgd": SGDClassifier(loss="hinge", max_iter=10, random_state=0),
    }[kind]


def _export(tmp_path: Path, kind: str, data: str, options: dict | None) -> tuple[Path, np.ndarray]:
    x, y = _binary_data() if data == "binary" else _digits_data()
    estimator = _estimator(kind)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        estimator.fit(x, y)
    path = tmp_path / f"{kind}_{data}.onnx"
    onnx.save(to_onnx(estimator, x[:1], options=options), str(path))
    return path, x[:40]


def _run(path: Path, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """onnxruntime's label and probabilities (ZipMap's maps turned back into a matrix)."""
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    label, scores = session.run(None, {session.get_inputs()[0].name: x})
    if isinstance(scores, list):
        scores = np.array([[row[key] for key in sorted(row)] for row in scores])
    return label, np.asarray(scores)


def _served(module, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return module.served_from_logits(module(torch.from_numpy(x))).numpy()


def _logits(module, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return module(torch.from_numpy(x)).numpy()


PROBABILITY_MODELS = [
    ("mlp", "binary"),
    ("mlp", "digits"),
    ("logistic", "binary"),
    ("logistic", "digits"),
    ("scaled_logistic", "digits"),
]
SCORE_MODELS = [("linear_svc", "digits"), ("hinge_sgd", "binary"), ("hinge_sgd", "digits")]
ZIPMAP = [None, {"zipmap": False}]


@pytest.mark.parametrize("options", ZIPMAP, ids=["zipmap", "no_zipmap"])
@pytest.mark.parametrize(("kind", "data"), PROBABILITY_MODELS)
def test_probabilities_are_the_softmax_of_the_logits(tmp_path, kind, data, options):
    path, x = _export(tmp_path, kind, data, options)
    module = load_onnx_classifier(path).eval()
    _, probabilities = _run(path, x)
    assert module.final_activation == "Softmax"
    softmax = torch.softmax(torch.from_numpy(_logits(module, x)), dim=1).numpy()
    np.testing.assert_allclose(softmax, probabilities, atol=1e-5)
    np.testing.assert_allclose(_served(module, x), probabilities, atol=1e-5)


@pytest.mark.parametrize(("kind", "data"), SCORE_MODELS)
def test_decision_scores_are_the_logits(tmp_path, kind, data):
    options = None if kind == "linear_svc" else {"zipmap": False}
    path, x = _export(tmp_path, kind, data, options)
    module = load_onnx_classifier(path).eval()
    _, scores = _run(path, x)
    assert module.final_activation is None
    np.testing.assert_allclose(_logits(module, x), scores, rtol=1e-4, atol=1e-4)


def test_binary_linear_svc_logits_are_minus_and_plus_its_score(tmp_path):
    path, x = _export(tmp_path, "linear_svc", "binary", None)
    module = load_onnx_classifier(path).eval()
    _, score = _run(path, x)
    logits = _logits(module, x)
    np.testing.assert_allclose(logits[:, 1:], score, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(logits[:, 0], -logits[:, 1])
    np.testing.assert_allclose(_served(module, x), score, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(
    ("options", "served"), [(None, "output_probability"), ({"zipmap": False}, "probabilities")]
)
def test_the_served_output_is_the_zipmap_or_the_probabilities_tensor(tmp_path, options, served):
    path, _ = _export(tmp_path, "mlp", "binary", options)
    assert load_onnx_classifier(path).served_output == served


@pytest.mark.parametrize(("kind", "data"), [("mlp", "binary"), ("logistic", "digits")])
def test_a_trained_export_keeps_its_outputs_and_matches_onnxruntime(tmp_path, kind, data):
    path, x = _export(tmp_path, kind, data, None)
    module = load_onnx_classifier(path)
    optimizer = torch.optim.SGD(module.parameters(), lr=0.5)
    inputs = torch.from_numpy(x)
    targets = torch.from_numpy(_run(path, x)[0]).long().flip(0)
    torch.nn.functional.cross_entropy(module(inputs), targets).backward()
    optimizer.step()
    module.eval()
    written = tmp_path / "hardened.onnx"
    write_trained_onnx(module, written)

    label, probabilities = _run(written, x)
    served = _served(module, x)
    assert not np.allclose(served, _run(path, x)[1], atol=1e-4)
    np.testing.assert_allclose(served, probabilities, atol=1e-5)
    np.testing.assert_array_equal(label, probabilities.argmax(axis=1))
    original, hardened = onnx.load(str(path)).graph, onnx.load(str(written)).graph
    assert [(v.name, v.type) for v in hardened.output] == [
        (v.name, v.type) for v in original.output
    ]
    assert [v.name for v in hardened.input] == [v.name for v in original.input]


def test_a_tree_ensemble_is_refused_with_what_to_do_instead(tmp_path):
    x, y = _binary_data()
    forest = RandomForestClassifier(n_estimators=2, max_depth=2, random_state=0).fit(x, y)
    path = tmp_path / "forest.onnx"
    onnx.save(to_onnx(forest, x[:1]), str(path))
    with pytest.raises(UnsupportedModel, match="TreeEnsembleClassifier") as refused:
        load_onnx_classifier(path)
    assert "gradients" in str(refused.value)
    assert "MLPClassifier" in str(refused.value)
    assert "black-box" in str(refused.value)


def test_a_kernel_svm_is_refused(tmp_path):
    x, y = _binary_data()
    svm = SVC(kernel="rbf").fit(x[:100], y[:100])
    path = tmp_path / "svc.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        onnx.save(to_onnx(svm, x[:1]), str(path))
    with pytest.raises(UnsupportedModel, match="SVMClassifier"):
        load_onnx_classifier(path)


def test_a_pipelines_scaler_stays_frozen_and_the_linear_weights_train(tmp_path):
    path, _ = _export(tmp_path, "scaled_logistic", "digits", None)
    names = load_onnx_classifier(path).trainable_parameter_names
    assert names == ["LinearClassifier_coefficients", "LinearClassifier_intercepts"]
