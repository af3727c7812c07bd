"""The submit-time check accepts the scikit-learn exports the engine reads (skl2onnx: a label
output beside the probabilities or scores, ai.onnx.ml operators), and still refuses a model
with two outputs that is not one."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

pytest.importorskip("skl2onnx")
from skl2onnx import to_onnx
from sklearn.datasets import load_breast_cancer, load_digits
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import MinMaxScaler
from sklearn.svm import LinearSVC

from service.jobs.validation import check_job_inputs
from workers.engine.errors import UnsupportedModel
from workers.engine.spec import ModelFormat, ThreatModel


def _data(binary: bool) -> tuple[np.ndarray, np.ndarray]:
    x, y = load_breast_cancer(return_X_y=True) if binary else load_digits(return_X_y=True)
    x = MinMaxScaler().fit_transform(x).astype(np.float32)
    return x[:300], y[:300]


def _submit(tmp_path: Path, estimator, binary: bool, options: dict | None) -> None:
    x, y = _data(binary)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        estimator.fit(x, y)
    model, data = tmp_path / "model.onnx", tmp_path / "data.npz"
    onnx.save(to_onnx(estimator, x[:1], options=options), str(model))
    np.savez(data, x=x[:20], y=y[:20].astype(np.int64))
    check_job_inputs(ModelFormat.ONNX, model, [data], ThreatModel())


@pytest.mark.parametrize("options", [None, {"zipmap": False}], ids=["zipmap", "no_zipmap"])
def test_an_mlp_export_passes_the_check(tmp_path, options):
    _submit(tmp_path, MLPClassifier((8,), max_iter=10, random_state=0), False, options)


@pytest.mark.parametrize("options", [None, {"zipmap": False}], ids=["zipmap", "no_zipmap"])
def test_a_scaled_logistic_regression_export_passes_the_check(tmp_path, options):
    pipeline = make_pipeline(MinMaxScaler(), LogisticRegression(max_iter=20))
    _submit(tmp_path, pipeline, False, options)


def test_a_binary_linear_svc_counts_two_classes(tmp_path):
    _submit(tmp_path, LinearSVC(max_iter=50), True, None)


def test_two_float_outputs_are_still_refused(tmp_path):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3])
    a = helper.make_tensor_value_info("a", TensorProto.FLOAT, ["n", 3])
    b = helper.make_tensor_value_info("b", TensorProto.FLOAT, ["n", 3])
    nodes = [helper.make_node("Relu", ["x"], ["a"]), helper.make_node("Sigmoid", ["x"], ["b"])]
    graph = helper.make_graph(nodes, "two", [x], [a, b])
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("ai.onnx.ml", 1)]
    )
    path, data = tmp_path / "model.onnx", tmp_path / "data.npz"
    onnx.save(model, str(path))
    np.savez(data, x=np.zeros((4, 3), np.float32), y=np.zeros(4, np.int64))
    with pytest.raises(UnsupportedModel, match="exactly one output"):
        check_job_inputs(ModelFormat.ONNX, path, [data], ThreatModel())


def test_a_tree_ensemble_is_refused_with_the_reason_and_what_to_do(tmp_path):
    x, y = _data(True)
    forest = RandomForestClassifier(n_estimators=2, max_depth=2, random_state=0).fit(x, y)
    model, data = tmp_path / "forest.onnx", tmp_path / "data.npz"
    onnx.save(to_onnx(forest, x[:1]), str(model))
    np.savez(data, x=x[:5], y=y[:5].astype(np.int64))
    with pytest.raises(UnsupportedModel, match="TreeEnsembleClassifier") as refused:
        check_job_inputs(ModelFormat.ONNX, model, [data], ThreatModel())
    assert "gradients" in str(refused.value)
    assert "MLPClassifier" in str(refused.value)
