"""What the server checks before it queues a job, so that mistakes fail at submit time.

Only onnx, onnxruntime and the engine's numpy-only data functions are used here: the server never
imports torch and never loads TorchScript or torch.export files (those are programs; only a
worker of an operator who turned trusted formats on loads them).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import onnx
import onnxruntime as ort

from service.core.tenancy import DEFAULT_TENANT
from service.jobs.graph_cost import (
    DEFAULT_LIMITS,
    CostLimits,
    Skeleton,
    check_cost,
    cost_skeleton,
    estimate_cost,
)
from workers.engine.data import Dataset, check_bounds, check_fits, load_npz
from workers.engine.errors import (
    InvalidData,
    InvalidModel,
    UnsupportedModel,
    float_input_required,
)
from workers.engine.models.formats import check_declared_format
from workers.engine.spec import ModelFormat, ThreatModel

_FLOAT = "tensor(float)"
_FLOAT_TENSORS = frozenset({_FLOAT, "tensor(float16)", "tensor(bfloat16)", "tensor(double)"})
_ML_DOMAIN = "ai.onnx.ml"
_MAPS = "seq(map("
_PIECEWISE_CONSTANT = frozenset(
    {"TreeEnsembleClassifier", "TreeEnsembleRegressor", "TreeEnsemble", "SVMClassifier"}
)


class InputCheck(Protocol):
    """:func:`check_job_inputs`, or something that runs it elsewhere
    (:meth:`service.jobs.validation_pool.ValidationPool.check`)."""

    def __call__(
        self,
        model_format: ModelFormat,
        model_path: Path,
        dataset_paths: Sequence[Path],
        threat: ThreatModel,
        *,
        tenant: str,
    ) -> None: ...


@dataclass(frozen=True)
class OrtModel:
    """An uploaded ONNX model in an onnxruntime session, for the submit-time checks: one float
    batch in, one batch of class scores out. (The engine's ``OnnxClassifier`` is the torch module
    a worker trains; this one only runs, in the memory-capped checker, never with torch.)"""

    session: ort.InferenceSession
    input_name: str
    sample_shape: tuple[int | None, ...]
    """Input shape without the batch dimension; None marks a free dimension."""
    skeleton: Skeleton
    """The graph without its weights, to estimate a pass's cost before running one."""
    sklearn_scores: str | None = None
    """For a scikit-learn export, its probabilities or scores output (the other is the label)."""

    def num_outputs_on(self, sample: np.ndarray) -> int:
        names = None if self.sklearn_scores is None else [self.sklearn_scores]
        try:
            (scores,) = self.session.run(names, {self.input_name: sample})
        except Exception as exc:
            raise InvalidData(f"the model cannot run on the dataset's samples: {exc}") from exc
        if isinstance(scores, list):  # ZipMap: one {class: probability} map per sample
            scores = np.array([list(row.values()) for row in scores], dtype=np.float32)
        if scores.ndim != 2 or scores.shape[0] != sample.shape[0]:
            raise UnsupportedModel(
                f"the model must return class scores shaped (N, classes); it returned"
                f" {scores.shape} for {sample.shape[0]} sample(s)"
            )
        if self.sklearn_scores is not None and scores.shape[1] == 1:
            return 2  # a binary LinearSVC outputs the positive class's score only
        return int(scores.shape[1])


def load_ort_model(path: Path) -> OrtModel:
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:
        raise InvalidModel(f"the file is not an ONNX model: {_first_line(exc)}") from exc
    external = [t for t in _model_tensors(model) if t.data_location == onnx.TensorProto.EXTERNAL]
    if external:
        location = next((e.value for e in external[0].external_data if e.key == "location"), "")
        raise InvalidModel(
            f"the model keeps {len(external)} tensor(s) in separate external-data files (first:"
            f" {external[0].name[:100]!r} in {location[:200]!r}), which an upload cannot carry"
            " and the server never reads; save it as one self-contained .onnx file (e.g."
            " torch.onnx.export with external_data=False, or onnx.save without"
            " save_as_external_data)"
        )
    _check_no_control_flow(model)
    _check_differentiable(model)
    try:
        onnx.checker.check_model(model)
    except Exception as exc:
        raise InvalidModel(f"the model is not a valid ONNX file: {_first_line(exc)}") from exc
    skeleton = cost_skeleton(model)
    sklearn = any(entry.domain == _ML_DOMAIN for entry in model.opset_import)
    del model
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    # One sample needs no thread pool, and each pool thread's stack counts against the check's
    # capped address space (service/jobs/validation_pool.py).
    options.intra_op_num_threads = 1
    try:
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise UnsupportedModel(f"onnxruntime cannot load the model: {_first_line(exc)}") from exc
    inputs, outputs = session.get_inputs(), session.get_outputs()
    if len(inputs) != 1:
        raise UnsupportedModel(
            f"the model must take exactly one input (a batch of samples); it takes {len(inputs)}:"
            f" {', '.join(i.name for i in inputs)}"
        )
    if sklearn:
        outputs = _sklearn_scores(outputs)
    if len(outputs) != 1:
        raise UnsupportedModel(
            f"the model must return exactly one output (class scores); it returns {len(outputs)}:"
            f" {', '.join(o.name for o in outputs)}"
        )
    (model_input,), (model_output,) = inputs, outputs
    maps = model_output.type.startswith(_MAPS)
    if model_input.type not in _FLOAT_TENSORS:
        raise UnsupportedModel(float_input_required(model_input.name, _onnx_type_name(model_input)))
    for role, arg in (("input", model_input), ("output", model_output)):
        if arg.type != _FLOAT and not (role == "output" and maps):
            raise UnsupportedModel(f"the model's {role} must be float32, not {arg.type}")
    if len(model_input.shape) < 2:
        raise UnsupportedModel(
            f"the model's input must be a batch shaped (N, ...), not {model_input.shape}"
        )
    if not maps and len(model_output.shape) != 2:
        raise UnsupportedModel(
            f"the model's output must be class scores shaped (N, classes), not {model_output.shape}"
        )
    return OrtModel(
        session=session,
        input_name=model_input.name,
        sample_shape=tuple(_static(d) for d in model_input.shape[1:]),
        skeleton=skeleton,
        sklearn_scores=model_output.name if sklearn else None,
    )


def _sklearn_scores(outputs: list[ort.NodeArg]) -> list[ort.NodeArg]:
    """A scikit-learn export (skl2onnx) returns its label and its probabilities or scores (a
    float tensor, or ZipMap's maps); the engine trains the latter."""
    scores = [o for o in outputs if o.type == _FLOAT or o.type.startswith(_MAPS)]
    return scores if len(scores) == 1 else outputs


def check_job_inputs(
    model_format: ModelFormat,
    model_path: Path,
    dataset_paths: Sequence[Path],
    threat: ThreatModel,
    *,
    tenant: str = DEFAULT_TENANT,
    limits: CostLimits = DEFAULT_LIMITS,
) -> None:
    """Raise InvalidModel/InvalidData if the job could not run, ResourceExhausted if one pass of
    the model on one sample is estimated over ``limits``. ONNX models are loaded, estimated and
    run on one sample of each dataset; every format must be what its bytes are (a pickle never
    is), the rest of the checks of the other formats is left to the worker. ``tenant`` is whose
    submission it is: this check runs the same for everyone, a pool that shares checkers between
    tenants schedules by it."""
    check_declared_format(model_format, model_path)
    classifier = load_ort_model(model_path) if model_format is ModelFormat.ONNX else None
    for path in dataset_paths:
        dataset = load_npz(path)
        if classifier is not None:
            _check_fits_model(dataset, classifier, limits)
        check_bounds(dataset, threat.lower, threat.upper)


def _check_fits_model(dataset: Dataset, classifier: OrtModel, limits: CostLimits) -> None:
    """Shapes first (so a mismatch gets the clear message), then the cost of a pass estimated
    from the graph, then one real inference, whose number of outputs is what the labels must
    fit."""
    check_fits(dataset, classifier.sample_shape, num_classes=int(dataset.y.max()) + 1)
    sample = dataset.x[:1]
    check_cost(estimate_cost(classifier.skeleton, sample.shape), limits)
    num_classes = classifier.num_outputs_on(sample)
    check_fits(dataset, classifier.sample_shape, num_classes)


def _model_tensors(model: onnx.ModelProto) -> Iterator[onnx.TensorProto]:
    """Every tensor the model holds: initializers, sparse ones, node attributes, subgraphs and
    model-local functions (any of them could point at external data)."""
    graphs = [model.graph]
    attributes = [a for f in model.functions for n in f.node for a in n.attribute]
    while graphs or attributes:
        if graphs:
            graph = graphs.pop()
            yield from graph.initializer
            for sparse in graph.sparse_initializer:
                yield sparse.values
                yield sparse.indices
            attributes.extend(a for n in graph.node for a in n.attribute)
            continue
        attribute = attributes.pop()
        if attribute.HasField("t"):
            yield attribute.t
        yield from attribute.tensors
        if attribute.HasField("g"):
            graphs.append(attribute.g)
        graphs.extend(attribute.graphs)


def _check_no_control_flow(model: onnx.ModelProto) -> None:
    """Loop, Scan and If run subgraphs; a Loop can spin for 2**63 iterations, so the server
    refuses them before it runs the model once (the engine cannot train them either)."""
    nodes = [*model.graph.node, *(n for f in model.functions for n in f.node)]
    found = sorted(
        {n.op_type for n in nodes if any(a.HasField("g") or a.graphs for a in n.attribute)}
    )
    if found:
        raise UnsupportedModel(
            f"the model uses control flow ({', '.join(found)}), which the engine cannot train;"
            " export the model without data-dependent loops or branches"
        )


def _check_differentiable(model: onnx.ModelProto) -> None:
    """scikit-learn's tree ensembles and kernel SVMs, refused with the engine's reason before
    the cost estimate calls them unbounded."""
    found = sorted(
        {n.op_type for n in model.graph.node if n.domain == _ML_DOMAIN} & _PIECEWISE_CONSTANT
    )
    if found:
        raise UnsupportedModel(
            f"the model uses {', '.join(found)}: a tree ensemble or a kernel SVM is piecewise"
            " constant in its inputs, so gradients can neither train nor attack it. Distil it"
            " into a differentiable model first (an MLPClassifier fitted on its predicted"
            " probabilities, exported with skl2onnx), or score it with a black-box attack (the"
            " service does not offer that yet)"
        )


def _static(dim: object) -> int | None:
    return dim if isinstance(dim, int) and dim > 0 else None


def _onnx_type_name(arg: ort.NodeArg) -> str:
    """``tensor(uint8)`` as the engine's loader names it: ``UINT8``."""
    return str(arg.type).removeprefix("tensor(").removesuffix(")").upper()


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
