"""The ai.onnx.ml operators of linear scikit-learn exports, on hand-written graphs (no skl2onnx
needed): one-vs-rest sigmoids with each Normalizer, at an old and a new opset, and string class
labels, against onnxruntime."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper

from workers.engine.models.onnx import load_onnx_classifier, write_trained_onnx


def _run(path: Path, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    label, scores = session.run(None, {"X": x})
    return label, scores


def _logits(module, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return module(torch.from_numpy(x)).numpy()


def _inputs() -> np.ndarray:
    return np.random.default_rng(1).normal(size=(16, 4)).astype(np.float32)


def _linear_graph(
    tmp_path: Path, post_transform: str, norm: str, opset: int, labels: dict | None = None
) -> Path:
    """A hand-written one-vs-rest export: LinearClassifier on 4 features, 3 classes, then a
    Normalizer, as skl2onnx writes for one-vs-rest logistic models."""
    rng = np.random.default_rng(0)
    x = helper.make_tensor_value_info("X", TensorProto.FLOAT, [None, 4])
    label_type = TensorProto.STRING if labels else TensorProto.INT64
    label = helper.make_tensor_value_info("label", label_type, [None])
    proba = helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [None, 3])
    nodes = [
        helper.make_node(
            "LinearClassifier",
            ["X"],
            ["label", "scores"],
            domain="ai.onnx.ml",
            **(labels or {"classlabels_ints": [3, 5, 7]}),
            coefficients=rng.normal(size=12).tolist(),
            intercepts=rng.normal(size=3).tolist(),
            post_transform=post_transform,
        ),
        helper.make_node(
            "Normalizer", ["scores"], ["probabilities"], domain="ai.onnx.ml", norm=norm
        ),
    ]
    model = helper.make_model(
        helper.make_graph(nodes, "ovr", [x], [label, proba]),
        opset_imports=[helper.make_opsetid("", opset), helper.make_opsetid("ai.onnx.ml", 1)],
    )
    path = tmp_path / "ovr.onnx"
    onnx.save(model, str(path))
    return path


@pytest.mark.parametrize("opset", [9, 17])
def test_normalised_one_vs_rest_sigmoids_train_through_their_log_sigmoids(tmp_path, opset):
    path = _linear_graph(tmp_path, "LOGISTIC", "L1", opset)
    module = load_onnx_classifier(path).eval()
    x = _inputs()
    label, probabilities = _run(path, x)
    softmax = torch.softmax(torch.from_numpy(_logits(module, x)), dim=1).numpy()
    np.testing.assert_allclose(softmax, probabilities, atol=1e-6)
    np.testing.assert_array_equal(label, np.array([3, 5, 7])[probabilities.argmax(axis=1)])


@pytest.mark.parametrize("norm", ["L2", "MAX"])
def test_other_normalisations_of_raw_scores_are_read_as_scores(tmp_path, norm):
    path = _linear_graph(tmp_path, "NONE", norm, 17)
    module = load_onnx_classifier(path).eval()
    x = _inputs()
    _, scores = _run(path, x)
    assert module.final_activation is None
    np.testing.assert_allclose(_logits(module, x), scores, rtol=1e-5, atol=1e-5)


def test_string_labels_survive_training_and_write_back(tmp_path):
    labels = {"classlabels_strings": ["fraud", "ok", "review"]}
    path = _linear_graph(tmp_path, "LOGISTIC", "L1", 17, labels)
    module = load_onnx_classifier(path)
    x = _inputs()
    targets = torch.from_numpy(_logits(module, x).argmin(axis=1))
    torch.nn.functional.cross_entropy(module(torch.from_numpy(x)), targets).backward()
    torch.optim.SGD(module.parameters(), lr=1.0).step()
    written = tmp_path / "trained.onnx"
    write_trained_onnx(module.eval(), written)
    label, probabilities = _run(written, x)
    softmax = torch.softmax(torch.from_numpy(_logits(module, x)), dim=1).numpy()
    np.testing.assert_allclose(softmax, probabilities, atol=1e-6)
    expected = np.array(["fraud", "ok", "review"], dtype=object)[probabilities.argmax(axis=1)]
    assert list(label) == list(expected)


def test_a_final_log_softmax_beside_a_label_is_stripped_as_in_any_model(tmp_path):
    rng = np.random.default_rng(2)
    weight = helper.make_tensor("W", TensorProto.FLOAT, [4, 3], rng.normal(size=12).tolist())
    nodes = [
        helper.make_node("MatMul", ["X", "W"], ["scores"]),
        helper.make_node("LogSoftmax", ["scores"], ["log_probabilities"], axis=1),
        helper.make_node("ArgMax", ["scores"], ["label"], axis=1, keepdims=0),
    ]
    outputs = [
        helper.make_tensor_value_info("label", TensorProto.INT64, [None]),
        helper.make_tensor_value_info("log_probabilities", TensorProto.FLOAT, [None, 3]),
    ]
    x = helper.make_tensor_value_info("X", TensorProto.FLOAT, [None, 4])
    model = helper.make_model(
        helper.make_graph(nodes, "log", [x], outputs, [weight]),
        opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("ai.onnx.ml", 1)],
    )
    path = tmp_path / "log.onnx"
    onnx.save(model, str(path))
    module = load_onnx_classifier(path).eval()
    _, log_probabilities = _run(path, _inputs())
    assert module.final_activation == "LogSoftmax"
    with torch.no_grad():
        served = module.served_from_logits(module(torch.from_numpy(_inputs()))).numpy()
    np.testing.assert_allclose(served, log_probabilities, atol=1e-5)
