"""Load an uploaded classifier into a trainable module that returns logits.

Formats, in order of trust:

- ONNX: data, not a program. Interpreted by :mod:`workers.engine.models.onnx`. A model with
  external data comes as a bundle (:mod:`workers.engine.models.bundle`), unpacked into a private
  folder and read from there; with ``--local`` it may also be read beside its data files.
- safetensors weights for a built-in architecture: data, read without pickle.
- TorchScript (``.pt``) and torch.export (``.pt2``): programs. PyTorch's own security policy
  says loading them runs the author's code, and ``torch.export.load`` may fall back to full
  unpickling, so they are refused unless the operator switched trusted formats on, and they are
  only ever loaded here, in the worker's job process.

A plain ``torch.save`` pickle is refused in every case, before anything reads it as a pickle.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from workers.engine.errors import InvalidModel, UntrustedFormat
from workers.engine.models import registry
from workers.engine.models.bundle import unpacked_bundle
from workers.engine.models.formats import PICKLE_REFUSAL, check_declared_format, sniff_format
from workers.engine.models.onnx import OnnxClassifier, load_onnx_classifier
from workers.engine.spec import INLINE_WEIGHT_LIMIT, ModelFormat, ModelSource

__all__ = ["PICKLE_REFUSAL", "LoadedModel", "load_model", "sniff_format"]


@dataclass
class LoadedModel:
    module: nn.Module
    """Maps a batch to logits. For a model whose last operation is Softmax, the logits before it."""
    input_shape: tuple[int | None, ...]
    """Per-sample input shape (batch dimension excluded); None where the model leaves it free."""
    num_classes: int
    format: ModelFormat
    final_activation: str | None = None
    """'Softmax' or 'LogSoftmax' when the uploaded model ends in one; the artifact keeps it."""
    notes: list[str] = field(default_factory=list)

    @property
    def onnx_source(self) -> OnnxClassifier | None:
        return self.module if isinstance(self.module, OnnxClassifier) else None


def load_model(
    source: ModelSource,
    *,
    allow_trusted_formats: bool = False,
    sample_shape: tuple[int, ...] | None = None,
    num_classes: int | None = None,
    inline_weight_limit: int = INLINE_WEIGHT_LIMIT,
) -> LoadedModel:
    """Load ``source``. ``sample_shape`` and ``num_classes`` (from the data) are needed for
    formats that do not carry them: safetensors weights and the program formats. An ONNX model
    with more than ``inline_weight_limit`` bytes of external data has them read from its files
    into the module, never into a ``ModelProto``."""
    check_declared_format(source.format, source.path)
    if source.format.is_program and not allow_trusted_formats:
        raise UntrustedFormat(
            f"{source.format.value} files are programs, not data: loading one runs code of the"
            " uploader's choosing. This service accepts them only where the operator has switched"
            " trusted formats on (TEMPERING_ALLOW_TRUSTED_FORMATS=1); upload ONNX instead"
        )
    if source.format is ModelFormat.ONNX:
        return _from_onnx(
            source.path,
            allow_external_data=source.external_data_beside,
            inline_limit=inline_weight_limit,
        )
    if source.format is ModelFormat.ONNX_BUNDLE:
        with unpacked_bundle(source.path) as path:
            return _from_onnx(path, allow_external_data=True, inline_limit=inline_weight_limit)
    if sample_shape is None or num_classes is None:
        raise InvalidModel(f"{source.format.value} models need the data's shape and classes")
    if source.format is ModelFormat.SAFETENSORS:
        return _from_safetensors(source, sample_shape, num_classes or source.num_classes)
    if source.format is ModelFormat.TORCHSCRIPT:
        return _from_torchscript(source.path, sample_shape, num_classes)
    return _from_torch_export(source.path, sample_shape, num_classes)


def _from_onnx(
    path: Path, *, allow_external_data: bool = False, inline_limit: int = INLINE_WEIGHT_LIMIT
) -> LoadedModel:
    """Every tensor is in memory once this returns: the model's folder may go."""
    module = load_onnx_classifier(
        path, allow_external_data=allow_external_data, inline_limit=inline_limit
    )
    return LoadedModel(
        module=module,
        input_shape=module.input_shape,
        num_classes=module.num_classes,
        format=ModelFormat.ONNX,
        final_activation=module.final_activation,
        notes=list(module.notes),
    )


def _from_safetensors(
    source: ModelSource, sample_shape: tuple[int, ...], num_classes: int
) -> LoadedModel:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    if not source.architecture:
        raise InvalidModel(
            "safetensors uploads carry weights only: name the built-in architecture they"
            f" belong to (one of {sorted(registry.ARCHITECTURES)})"
        )
    module = registry.build(source.architecture, sample_shape, num_classes)
    try:
        state = load_file(str(source.path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise InvalidModel(f"the safetensors file cannot be read: {exc}") from exc
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise InvalidModel(
            f"the weights do not fit architecture {source.architecture!r} for inputs"
            f" {sample_shape} and {num_classes} classes: {str(exc).splitlines()[0]}"
        ) from exc
    return LoadedModel(module, tuple(sample_shape), num_classes, ModelFormat.SAFETENSORS)


def _from_torchscript(path: Path, sample_shape: tuple[int, ...], num_classes: int) -> LoadedModel:
    try:
        module = torch.jit.load(str(path), map_location="cpu")
    except RuntimeError as exc:
        raise InvalidModel(f"the TorchScript file cannot be loaded: {exc}") from exc
    _check_outputs(module, sample_shape, num_classes)
    return LoadedModel(
        module,
        tuple(sample_shape),
        num_classes,
        ModelFormat.TORCHSCRIPT,
        notes=["TorchScript module: BatchNorm and Dropout keep their train/eval behaviour"],
    )


def _from_torch_export(path: Path, sample_shape: tuple[int, ...], num_classes: int) -> LoadedModel:
    try:
        program = torch.export.load(str(path))
    except Exception as exc:  # torch.export.load raises many unrelated types on bad archives
        raise InvalidModel(f"the torch.export archive cannot be loaded: {exc}") from exc
    module = program.module()
    _check_outputs(module, sample_shape, num_classes)
    return LoadedModel(
        module,
        tuple(sample_shape),
        num_classes,
        ModelFormat.TORCH_EXPORT,
        notes=["torch.export program: trained as exported (its train/eval mode is fixed)"],
    )


def _check_outputs(module: nn.Module, sample_shape: tuple[int, ...], num_classes: int) -> None:
    probe = torch.zeros((2, *sample_shape))
    try:
        with torch.no_grad():
            out = module(probe)
    except Exception as exc:  # a user's program can raise anything
        raise InvalidModel(f"the model fails on inputs shaped {(2, *sample_shape)}: {exc}") from exc
    if not isinstance(out, torch.Tensor) or out.dim() != 2 or not out.is_floating_point():
        raise InvalidModel("the model must return one float tensor shaped (batch, classes)")
    if out.shape[1] < num_classes:
        raise InvalidModel(
            f"the model has {out.shape[1]} outputs but the labels need {num_classes} classes"
        )
