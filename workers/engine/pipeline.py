"""One hardening job from files to artifacts: load, check, harden, score both models, export.

This is the engine's single entry point; the CLI's ``--local`` mode and the Celery task both call
:func:`harden`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime
import torch

from workers.engine import data as datasets
from workers.engine.attacks.region import FeatureRegion
from workers.engine.checkpoint import Checkpointer
from workers.engine.device import Device, pick_device, seed_everything
from workers.engine.errors import ExportCheckFailed, InvalidData, InvalidParameter
from workers.engine.evaluation.suite import EvaluationTarget, ModelScores, evaluate
from workers.engine.export import PARITY_TOLERANCE, check_parity, export_onnx
from workers.engine.geometry import Box
from workers.engine.memory import phase
from workers.engine.models.loading import LoadedModel, load_model
from workers.engine.models.onnx import OnnxClassifier
from workers.engine.outputs import MODEL_FILE, HardeningResult, input_sha256, write_outputs
from workers.engine.progress import ProgressEvent, Reporter
from workers.engine.report import (
    ExportCheck,
    RobustnessReport,
    TrainingSummary,
)
from workers.engine.spec import IMAGE_EVAL_SAMPLES, HardeningRequest
from workers.engine.tabular.evaluation import TabularScores, evaluate_tabular, tabular_section
from workers.engine.tabular.schema import load_schema
from workers.engine.tabular.threat import TabularThreat, load_threat
from workers.engine.text.pipeline import harden_text
from workers.engine.threads import governed_threads
from workers.engine.training import recipe as recipes
from workers.engine.training.methods import TrainingData, train

ENGINE_VERSION = "0.1.0"
PARITY_SAMPLES = 256


@dataclass(frozen=True)
class PreparedData:
    train: datasets.Dataset
    validation: datasets.Dataset
    evaluation: datasets.Dataset
    eval_source: str
    recipe: recipes.Recipe


def harden(
    request: HardeningRequest,
    output_dir: Path,
    reporter: Reporter | None = None,
    *,
    device: Device | None = None,
    checkpointer: Checkpointer | None = None,
) -> HardeningResult:
    """Harden and score. With a ``checkpointer``, training saves its state after every epoch
    and a run that finds a saved state of the same job goes on from it (see
    :mod:`workers.engine.checkpoint`); the report's ``training.resumed_from_epoch`` says so."""
    request.validate()
    with governed_threads():
        return _harden(request, output_dir, reporter or Reporter(), device, checkpointer)


def _harden(
    request: HardeningRequest,
    output_dir: Path,
    reporter: Reporter,
    device: Device | None,
    checkpointer: Checkpointer | None,
) -> HardeningResult:
    if request.time_limit_seconds and not reporter.time_limit_seconds:
        reporter.time_limit_seconds = request.time_limit_seconds
    device = device or pick_device()
    generator = seed_everything(request.seed)
    reporter.emit(ProgressEvent(stage="loading", message="reading model and data"))

    read_first = _read_onnx_first(request)
    module = read_first.module if read_first is not None else None
    if isinstance(module, OnnxClassifier) and module.token_input is not None:
        return harden_text(request, module, output_dir, reporter, device)
    if request.tokenizer is not None:
        raise InvalidParameter(
            "a tokenizer was sent, but the model does not read token ids: text models are read"
            " from ONNX, with an int64 token-ids input feeding an embedding lookup"
        )
    with datasets.naming(datasets.TRAINING_DATA):
        train_set = datasets.load_npz(request.train_data)
    loaded = read_first or load_model(
        request.model,
        allow_trusted_formats=request.allow_trusted_formats,
        sample_shape=train_set.sample_shape,
        num_classes=request.model.num_classes or int(train_set.y.max()) + 1,
        inline_weight_limit=request.inline_weight_limit,
    )
    prepared = prepare_data(request, loaded, train_set)
    tabular = _tabular_threat(request, prepared)
    box = tabular.box if tabular else _box(request, prepared.train.sample_shape)
    reporter.check()

    with phase("training", prepared.recipe.config.batch_size or 0):
        outcome = train(
            loaded.module,
            TrainingData(
                torch.from_numpy(prepared.train.x),
                torch.from_numpy(prepared.train.y),
                torch.from_numpy(prepared.validation.x),
                torch.from_numpy(prepared.validation.y),
            ),
            threat=request.threat,
            box=box,
            config=prepared.recipe.config,
            device=device,
            reporter=reporter,
            generator=generator,
            checkpointer=checkpointer,
            early_stopping_patience=prepared.recipe.early_stopping_patience,
            region=FeatureRegion(tabular.constraints, request.threat.eps) if tabular else None,
        )
    trained_with = outcome.config

    target = _evaluation_target(request, prepared.evaluation, box, loaded.num_classes)
    scored: dict[str, TabularScores] = {}
    with phase("scoring the original model", target.batch_size):
        original = loaded.module.to(device.torch_device)
        original_scores = _score(original, target, tabular, reporter, "original", scored)
    with phase("scoring the hardened model", target.batch_size):
        hardened_scores = _score(outcome.model, target, tabular, reporter, "hardened", scored)

    reporter.emit(ProgressEvent(stage="exporting", message="writing and checking the ONNX file"))
    output_dir.mkdir(parents=True, exist_ok=True)
    model_path = output_dir / MODEL_FILE
    with phase("exporting and checking the ONNX file", PARITY_SAMPLES):
        opset = export_onnx(
            loaded,
            outcome.model,
            model_path,
            target.x,
            inline_limit=request.inline_weight_limit,
        )
        parity = check_parity(model_path, loaded, outcome.model, target.x[:PARITY_SAMPLES])
    if not parity.passed:
        raise ExportCheckFailed(
            f"the exported ONNX model differs from the PyTorch model by {parity.max_abs_diff:.3g}"
            f" (allowed {parity.allowed_diff:.3g} for outputs up to {parity.output_scale:.3g})"
            " on held-out inputs"
        )

    report = RobustnessReport(
        request=request.to_dict(),
        inputs=_inputs(request, prepared, loaded),
        model_notes=loaded.notes,
        original=original_scores,
        hardened=hardened_scores,
        training=TrainingSummary(
            method=request.training.method.value,
            epochs=trained_with.epochs or 0,
            selected_epoch=outcome.selected_epoch,
            selection=outcome.selection,
            history=outcome.history,
            notes=outcome.notes,
            resumed_from_epoch=outcome.resumed_from_epoch,
            recipe=list(prepared.recipe.choices),
            config=trained_with.to_dict(),
        ),
        export=ExportCheck(
            parity.max_abs_diff,
            PARITY_TOLERANCE,
            parity.output_scale,
            parity.allowed_diff,
            parity.samples,
            opset,
            parity.passed,
        ),
        environment={
            "engine": ENGINE_VERSION,
            "torch": torch.__version__,
            "onnxruntime": onnxruntime.__version__,
            "device": device.name,
        },
        tabular={
            **tabular_section(tabular, scored["original"], scored["hardened"]),
            "schema_sha256": _sha256(request, request.feature_schema),
        }
        if tabular and request.feature_schema
        else None,
    )
    return _write_outputs(output_dir, model_path, report, reporter, request)


def _tabular_threat(request: HardeningRequest, prepared: PreparedData) -> TabularThreat | None:
    if request.feature_schema is None:
        return None
    return load_threat(
        request.feature_schema,
        request.threat.eps,
        prepared.train.x,
        prepared.validation.x,
        prepared.evaluation.x,
    )


def _score(
    model: torch.nn.Module,
    target: EvaluationTarget,
    tabular: TabularThreat | None,
    reporter: Reporter,
    label: str,
    scored: dict[str, TabularScores],
) -> ModelScores:
    """The image suite, or with a feature schema the constrained suite (its full results kept
    in ``scored`` for the report's tabular section)."""
    if tabular is None:
        return evaluate(model, target, reporter, label)
    scored[label] = evaluate_tabular(model, target, tabular, reporter, label)
    return scored[label].scores


def _read_onnx_first(request: HardeningRequest) -> LoadedModel | None:
    """An ONNX model is read before the data: whether it reads token ids says how to read them
    (other formats need the data's shape to be read at all)."""
    if not request.model.format.is_onnx:
        return None
    return load_model(request.model, inline_weight_limit=request.inline_weight_limit)


def prepare_data(
    request: HardeningRequest, loaded: LoadedModel, train_set: datasets.Dataset
) -> PreparedData:
    """Check the data against the model and the bounds, then split it: an evaluation set (the
    uploaded one, or a seeded hold-out) and a validation set for checkpoint selection, sized by
    the recipe, which then fixes every training parameter left to it."""
    with datasets.naming(datasets.TRAINING_DATA):
        datasets.check_fits(train_set, loaded.input_shape, loaded.num_classes)
        _check_domain(request, train_set)
    if request.eval_data is not None:
        with datasets.naming(datasets.EVALUATION_DATA):
            eval_set = datasets.load_npz(request.eval_data)
            datasets.check_fits(eval_set, loaded.input_shape, loaded.num_classes)
            _check_domain(request, eval_set)
        eval_source = "eval_data"
    else:
        train_set, eval_set = datasets.split_holdout(
            train_set, request.evaluation.samples_or(IMAGE_EVAL_SAMPLES), request.seed
        )
        eval_source = "holdout_split"
    train_set, validation = datasets.split_holdout(
        train_set, recipes.validation_size(request.training, len(train_set)), request.seed + 1
    )
    if len(train_set) == 0:
        raise InvalidData("too few samples left for training after the hold-out splits")
    order = np.random.default_rng(request.seed).permutation(len(eval_set))
    eval_set = eval_set.subset(np.sort(order[: request.evaluation.samples_or(IMAGE_EVAL_SAMPLES)]))
    recipe = recipes.resolve(request.training, len(train_set), len(validation))
    return PreparedData(train_set, validation, eval_set, eval_source, recipe)


def _check_domain(request: HardeningRequest, dataset: datasets.Dataset) -> None:
    """The data lies in the threat model's box, or, with a feature schema, fits the schema
    (checked there with row numbers of the file as uploaded)."""
    if request.feature_schema is not None:
        load_schema(request.feature_schema).check_against(
            dataset.x, scaled_from_uint8=dataset.scaled_from_uint8
        )
        return
    datasets.check_bounds(dataset, request.threat.lower, request.threat.upper)


def _box(request: HardeningRequest, sample_shape: tuple[int, ...]) -> Box:
    lower, upper = datasets.bounds_arrays(request.threat.lower, request.threat.upper, sample_shape)
    return Box(torch.from_numpy(lower), torch.from_numpy(upper))


def _evaluation_target(
    request: HardeningRequest, evaluation: datasets.Dataset, box: Box, num_classes: int
) -> EvaluationTarget:
    return EvaluationTarget(
        x=torch.from_numpy(evaluation.x),
        y=torch.from_numpy(evaluation.y),
        norm=request.threat.norm.value,
        eps=request.threat.eps,
        box=box,
        suite=request.evaluation.suite,
        curve_points=request.evaluation.curve_points,
        batch_size=request.evaluation.batch_size,
        seed=request.seed,
        num_classes=num_classes,
    )


def _inputs(
    request: HardeningRequest, prepared: PreparedData, loaded: LoadedModel
) -> dict[str, Any]:
    return {
        "model_sha256": _sha256(request, request.model.path),
        "model_format": request.model.format.value,
        "train_data_sha256": _sha256(request, request.train_data),
        "eval_data_sha256": _sha256(request, request.eval_data) if request.eval_data else None,
        "eval_source": prepared.eval_source,
        "train_samples": len(prepared.train),
        "validation_samples": len(prepared.validation),
        "num_classes": loaded.num_classes,
        "input_shape": list(prepared.train.sample_shape),
        "notes": _input_notes(request, prepared),
    }


def _input_notes(request: HardeningRequest, prepared: PreparedData) -> list[str]:
    notes = []
    channels_last = datasets.channels_last_note(
        len(request.threat.lower), prepared.train.sample_shape
    )
    if request.feature_schema is None and channels_last is not None:
        notes.append(channels_last)
    if prepared.train.scaled_from_uint8:
        notes.append(datasets.uint8_scaling_note("training"))
    if request.eval_data is not None and prepared.evaluation.scaled_from_uint8:
        notes.append(datasets.uint8_scaling_note("evaluation"))
    return notes


def _write_outputs(
    output_dir: Path,
    model_path: Path,
    report: RobustnessReport,
    reporter: Reporter,
    request: HardeningRequest,
) -> HardeningResult:
    schema = request.feature_schema
    result = write_outputs(output_dir, model_path, report.to_dict(), schema_path=schema)
    reporter.emit(ProgressEvent(stage="done", message="artifacts written"))
    return result


def _sha256(request: HardeningRequest, path: Path) -> str:
    return input_sha256(request.verified_sha256, path)
