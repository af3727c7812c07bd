"""What the server checks before it queues a job, so that mistakes fail at submit time.

Only onnx, onnxruntime and the engine's numpy-only data functions are used here: the server never
imports torch and never loads TorchScript or torch.export files (those are programs; only a
worker of an operator who turned trusted formats on loads them).

A text model (an integer input feeding an embedding lookup, docs/text.md) is checked with the
engine's own text checks (:mod:`workers.engine.text.tokenizer`, :mod:`workers.engine.text.data`):
its tokenizer is read and must fit the embedding table, its texts parse, its labels fit the
model's classes, and the model runs on the first texts as the tokenizer encodes them.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, cast

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
from workers.engine.data import (
    EVALUATION_DATA,
    TRAINING_DATA,
    Dataset,
    check_bounds,
    check_fits,
    load_npz,
    naming,
)
from workers.engine.errors import (
    InvalidData,
    InvalidModel,
    InvalidParameter,
    UnsupportedModel,
    float_input_required,
)
from workers.engine.models.bundle import unpacked_bundle
from workers.engine.models.external_data import external_range
from workers.engine.models.formats import check_declared_format
from workers.engine.spec import TEXT_MAX_LENGTH, ModelFormat, ThreatModel
from workers.engine.tabular.schema import load_schema
from workers.engine.text.data import TextDataset, TextFormat, check_labels, load_text_dataset
from workers.engine.text.tokenizer import check_vocabulary, encode, load_tokenizer

_FLOAT = "tensor(float)"
_FLOAT_TENSORS = frozenset({_FLOAT, "tensor(float16)", "tensor(bfloat16)", "tensor(double)"})
_ML_DOMAIN = "ai.onnx.ml"
_MAPS = "seq(map("
_PIECEWISE_CONSTANT = frozenset(
    {"TreeEnsembleClassifier", "TreeEnsembleRegressor", "TreeEnsemble", "SVMClassifier"}
)
_ID_TYPES = frozenset({onnx.TensorProto.INT64, onnx.TensorProto.INT32})
_EMBEDDING_TYPES = frozenset(
    {
        onnx.TensorProto.FLOAT,
        onnx.TensorProto.DOUBLE,
        onnx.TensorProto.FLOAT16,
        onnx.TensorProto.BFLOAT16,
    }
)
TEXT_SAMPLE_TEXTS = 4
"""Texts of the training data the model is run on: enough to see padding at work."""
TOKENIZER_NAME = "tokenizer.json"
"""The name the tokenizer is read under, so that the engine's messages name it so."""


@dataclass(frozen=True)
class TextInputs:
    """What a text job adds to the check: its tokenizer (None when the job names none) and the
    format of each dataset, in the order of the dataset paths."""

    tokenizer: Path | None
    formats: tuple[str, ...]
    """``jsonl`` or ``csv`` (``npz`` for an array dataset, which a text model refuses)."""
    max_length: int | None = None
    """The job's ``max_length``; None: the model's, the tokenizer's, else the engine's."""


@dataclass(frozen=True)
class TokenIds:
    """How a text model takes its tokens, as far as the server needs it."""

    ids_name: str
    mask_name: str | None
    embedding_rows: int
    max_length: int | None
    """The fixed sequence length of the input, None when it is free."""


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
        text: TextInputs | None = None,
        schema: Path | None = None,
        contents: Sequence[str] = (),
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
    token: TokenIds | None = None
    """For a text model, its token ids (``input_name``) and attention mask."""

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


def load_ort_model(path: Path, *, external_data: bool = False) -> OrtModel:
    """``external_data``: the model is a bundle's, unpacked into a private folder; every
    external location is checked to lie inside that folder before onnxruntime reads it."""
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:
        raise InvalidModel(f"the file is not an ONNX model: {_first_line(exc)}") from exc
    external = [t for t in _model_tensors(model) if t.data_location == onnx.TensorProto.EXTERNAL]
    if external and not external_data:
        location = next((e.value for e in external[0].external_data if e.key == "location"), "")
        raise InvalidModel(
            f"the model keeps {len(external)} tensor(s) in separate external-data files (first:"
            f" {external[0].name[:100]!r} in {location[:200]!r}), which a single .onnx upload"
            " cannot carry; upload the model as an ONNX bundle with its data files (temper"
            " harden and the SDK make one from the .onnx beside its data files;"
            " docs/model-bundles.md), or save it as one self-contained .onnx file"
        )
    base = path.parent.resolve()
    for tensor in external:
        external_range(tensor, base)
    _check_no_control_flow(model)
    _check_differentiable(model)
    try:
        # a bundle's model is checked by its path, so that the checker finds its data files
        onnx.checker.check_model(str(path) if external else model)
    except Exception as exc:
        raise InvalidModel(f"the model is not a valid ONNX file: {_first_line(exc)}") from exc
    skeleton = cost_skeleton(model)
    sklearn = any(entry.domain == _ML_DOMAIN for entry in model.opset_import)
    token = token_ids(model.graph)
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
    if token is not None:
        return _text_classifier(session, skeleton, token)
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


def _text_classifier(
    session: ort.InferenceSession, skeleton: Skeleton, token: TokenIds
) -> OrtModel:
    outputs = session.get_outputs()
    if len(outputs) != 1:
        raise UnsupportedModel(
            f"the model must return exactly one output (class scores); it returns {len(outputs)}:"
            f" {', '.join(o.name for o in outputs)}"
        )
    if outputs[0].type != _FLOAT or len(outputs[0].shape) != 2:
        raise UnsupportedModel(
            f"the model's output must be float32 class scores shaped (N, classes), not"
            f" {outputs[0].type} {outputs[0].shape}"
        )
    return OrtModel(
        session=session,
        input_name=token.ids_name,
        sample_shape=(token.max_length,),
        skeleton=skeleton,
        token=token,
    )


def token_ids(graph: onnx.GraphProto) -> TokenIds | None:
    """The token ids of a text model: an integer input read (directly, or through Identity or
    an integer Cast) as the indices of a Gather on axis 0 of a rank-2 float initializer, the
    word embeddings; another integer input is its attention mask. None for any other model.
    The engine's reader (:mod:`workers.engine.models.onnx.tokens`) applies the same rule, and
    refuses what it cannot place; this needs only onnx."""
    initializers = {t.name: t for t in graph.initializer}
    inputs = [v for v in graph.input if v.name not in initializers]
    producers = {out: node for node in graph.node for out in node.output}
    for value in inputs:
        if value.type.tensor_type.elem_type not in _ID_TYPES:
            continue
        rows = _embedding_rows(graph, value.name, initializers, producers)
        if rows is None:
            continue
        dims = [
            d.dim_value if d.HasField("dim_value") else 0 for d in value.type.tensor_type.shape.dim
        ]
        others = [
            v.name
            for v in inputs
            if v.name != value.name
            and v.type.tensor_type.elem_type in (*_ID_TYPES, onnx.TensorProto.BOOL)
        ]
        return TokenIds(
            ids_name=value.name,
            mask_name=others[0] if len(others) == 1 else None,
            embedding_rows=rows,
            max_length=dims[1] if len(dims) == 2 and dims[1] > 0 else None,
        )
    return None


def _embedding_rows(
    graph: onnx.GraphProto,
    name: str,
    initializers: dict[str, onnx.TensorProto],
    producers: dict[str, onnx.NodeProto],
) -> int | None:
    copies = {name}
    for node in graph.node:
        if node.input[:1] and node.input[0] in copies and _passes_ids(node):
            copies.add(node.output[0])
    for node in graph.node:
        if node.op_type != "Gather" or len(node.input) != 2 or node.input[1] not in copies:
            continue
        axis = next((a.i for a in node.attribute if a.name == "axis"), 0)
        table = _initializer_through_identity(node.input[0], initializers, producers)
        if (
            axis == 0
            and table is not None
            and table.data_type in _EMBEDDING_TYPES
            and len(table.dims) == 2
        ):
            return int(table.dims[0])
    return None


def _passes_ids(node: onnx.NodeProto) -> bool:
    if node.op_type == "Identity":
        return True
    to = next((a.i for a in node.attribute if a.name == "to"), None)
    return node.op_type == "Cast" and to in _ID_TYPES


def _initializer_through_identity(
    name: str, initializers: dict[str, onnx.TensorProto], producers: dict[str, onnx.NodeProto]
) -> onnx.TensorProto | None:
    while name not in initializers:
        node = producers.get(name)
        if node is None or node.op_type != "Identity":
            return None
        name = node.input[0]
    return initializers[name]


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
    text: TextInputs | None = None,
    schema: Path | None = None,
    contents: Sequence[str] = (),
) -> None:
    """Raise InvalidModel/InvalidData if the job could not run, ResourceExhausted if one pass of
    the model on one sample is estimated over ``limits``. ONNX models are loaded, estimated and
    run on one sample of each dataset; every format must be what its bytes are (a pickle never
    is), the rest of the checks of the other formats is left to the worker. ``tenant`` is whose
    submission it is: this check runs the same for everyone, a pool that shares checkers between
    tenants schedules by it. ``text`` is set when the job names a tokenizer or text data; a
    text model is checked as such whether it is set or not (and refused without a
    tokenizer). ``contents`` (the inputs' SHA-256s) is for a caller that remembers answers
    (:class:`~service.jobs.validation_pool.ValidationPool`); the check itself reads the files."""
    del contents
    check_declared_format(model_format, model_path)
    with _onnx_file(model_format, model_path) as onnx_path:
        classifier = (
            None
            if onnx_path is None
            else load_ort_model(onnx_path, external_data=model_format is ModelFormat.ONNX_BUNDLE)
        )
        _check_with_model(classifier, dataset_paths, threat, limits, text, schema)


@contextlib.contextmanager
def _onnx_file(model_format: ModelFormat, model_path: Path) -> Iterator[Path | None]:
    """The ONNX file to check: the upload itself, or a bundle's, unpacked with its data files
    into a private folder for as long as the check runs; None for the other formats."""
    if model_format is ModelFormat.ONNX_BUNDLE:
        with unpacked_bundle(model_path) as path:
            try:
                yield path
            except (InvalidModel, InvalidData) as error:
                # onnxruntime names the file it read: not a path of this server's to show
                shown = str(error).replace(f"{path.parent}/", "").replace(str(path.parent), "")
                if shown == str(error):
                    raise
                raise type(error)(shown) from error.__cause__
    else:
        yield model_path if model_format is ModelFormat.ONNX else None


def _check_with_model(
    classifier: OrtModel | None,
    dataset_paths: Sequence[Path],
    threat: ThreatModel,
    limits: CostLimits,
    text: TextInputs | None,
    schema: Path | None,
) -> None:
    if text is not None or (classifier is not None and classifier.token is not None):
        check_text_job(classifier, dataset_paths, text, limits)
        return
    feature_schema = load_schema(schema) if schema is not None else None
    for path, which in zip(dataset_paths, (TRAINING_DATA, EVALUATION_DATA), strict=False):
        with naming(which):
            dataset = load_npz(path)
            if classifier is not None:
                _check_fits_model(dataset, classifier, limits)
            if feature_schema is not None:
                feature_schema.check_against(dataset.x, scaled_from_uint8=dataset.scaled_from_uint8)
            else:
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


def check_text_job(
    classifier: OrtModel | None,
    dataset_paths: Sequence[Path],
    text: TextInputs | None,
    limits: CostLimits = DEFAULT_LIMITS,
) -> None:
    """The text model's checks, before a worker spends time: a tokenizer is named, fits the
    model's embedding table, the texts parse (a bad line named by its number), the model runs
    on the first texts and every label is one of its classes. A text longer than the model's
    length is not refused: the engine cuts it and the report counts it."""
    if classifier is None:
        raise UnsupportedModel(
            "text models are read from ONNX only: export the model to ONNX with int64 token"
            " ids as its input"
        )
    token = classifier.token
    if token is None:
        raise InvalidData(
            f"the job has a tokenizer or text data, but the model reads a float tensor (input"
            f" '{classifier.input_name}'), not token ids; a text model's input is int64 token"
            " ids that feed an embedding lookup (docs/text.md)"
        )
    if text is None or text.tokenizer is None:
        raise InvalidParameter(
            f"the model reads token ids (input '{token.ids_name}'): upload its tokenizer.json"
            " (UploadTokenizer; temper harden --tokenizer) and name it in spec.tokenizer_id, so"
            " that texts can be encoded and attacked as texts"
        )
    datasets = [
        _text_dataset(path, fmt, which)
        for path, fmt, which in zip(
            dataset_paths, text.formats, (TRAINING_DATA, EVALUATION_DATA), strict=False
        )
    ]
    with _named(text.tokenizer, TOKENIZER_NAME) as path:
        tokenizer = load_tokenizer(path)
    check_vocabulary(tokenizer, token.embedding_rows)
    if token.max_length is not None and text.max_length not in (None, token.max_length):
        raise InvalidParameter(
            f"the model takes exactly {token.max_length} tokens; max_length {text.max_length}"
            " cannot be used"
        )
    max_length = (
        token.max_length or text.max_length or tokenizer.truncation_length or TEXT_MAX_LENGTH
    )
    first = datasets[0].texts[:TEXT_SAMPLE_TEXTS]
    batch = encode(tokenizer, first, max_length, pad_to_max_length=token.max_length is not None)
    check_cost(estimate_cost(classifier.skeleton, batch.ids.shape), limits)
    num_classes = _text_classes(classifier, token, batch.ids, batch.attention_mask)
    for dataset, which in zip(datasets, (TRAINING_DATA, EVALUATION_DATA), strict=False):
        try:
            check_labels(dataset, num_classes)
        except InvalidData as error:
            raise InvalidData(f"{which}: {error}") from error


def _text_dataset(path: Path, fmt: str, which: str) -> TextDataset:
    if fmt not in ("jsonl", "csv"):
        raise InvalidData(
            f"the {which} is an .npz of arrays, but the model reads token ids: send labelled"
            ' texts as JSON Lines ({"text": "...", "label": 0} a line) or CSV (docs/text.md)'
        )
    try:
        return load_text_dataset(path, cast(TextFormat, fmt))
    except InvalidData as error:
        raise InvalidData(f"{which}: {error}") from error


@contextlib.contextmanager
def _named(path: Path, name: str) -> Iterator[Path]:
    """``path`` under ``name`` (a link in a temporary folder): a stored blob is named by its
    SHA-256, which means nothing in a message."""
    with tempfile.TemporaryDirectory(prefix="tempering-check-") as folder:
        link = Path(folder) / name
        link.symlink_to(path.resolve())
        yield link


def _text_classes(classifier: OrtModel, token: TokenIds, ids: np.ndarray, mask: np.ndarray) -> int:
    """The number of classes the model returns on the encoded texts, fed as its inputs' types
    say (int64 ids and mask as encoded, cast where the model reads int32 or bool)."""
    types = {i.name: i.type for i in classifier.session.get_inputs()}
    feeds = {token.ids_name: ids}
    if token.mask_name is not None:
        feeds[token.mask_name] = mask
    feeds = {name: _as_input_type(value, types.get(name)) for name, value in feeds.items()}
    try:
        (scores,) = classifier.session.run(None, feeds)[:1]
    except Exception as exc:
        raise InvalidData(
            f"the model cannot run on the first texts as the tokenizer encodes them: {exc}"
        ) from exc
    if scores.ndim != 2 or scores.shape[0] != ids.shape[0]:
        raise UnsupportedModel(
            f"the model must return class scores shaped (N, classes); it returned"
            f" {scores.shape} for {ids.shape[0]} text(s)"
        )
    return int(scores.shape[1])


def _as_input_type(value: np.ndarray, onnx_type: str | None) -> np.ndarray:
    if onnx_type == "tensor(int32)":
        return value.astype(np.int32)
    if onnx_type == "tensor(bool)":
        return value.astype(bool)
    return value


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
