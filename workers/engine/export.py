"""Write the hardened model as ONNX and prove it computes what the PyTorch model computes.

ONNX uploads keep their own graph: the trained tensors are written back into it (see
docs/onnx-conversion.md). Other formats go through ``torch.onnx.export``: the dynamo exporter
first, the TorchScript-based one for modules it cannot trace (TorchScript uploads). Either way
the file must pass ``onnx.checker``, have a dynamic batch dimension, and match the PyTorch
model's outputs under onnxruntime within ``PARITY_TOLERANCE``; a failed check fails the job.
"""

from __future__ import annotations

import contextlib
import io
import logging
import math
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import torch
from torch import Tensor, nn

from workers.engine.errors import ExportCheckFailed
from workers.engine.models.loading import LoadedModel
from workers.engine.models.onnx import OnnxClassifier, write_trained_onnx
from workers.engine.spec import INLINE_WEIGHT_LIMIT

PARITY_TOLERANCE = 1e-4
EXPORT_OPSET = 18
INPUT_NAME = "input"
OUTPUT_NAME = "output"

log = logging.getLogger(__name__)


class _WithFinalActivation(nn.Module):
    """Re-attaches the Softmax the user's model ended with, so the artifact keeps its contract."""

    def __init__(self, model: nn.Module, activation: str | None) -> None:
        super().__init__()
        self.model = model
        self.activation = activation

    def forward(self, x: Tensor) -> Tensor:
        logits = self.model(x)
        if self.activation == "Softmax":
            return torch.softmax(logits, dim=1)
        if self.activation == "LogSoftmax":
            return torch.log_softmax(logits, dim=1)
        return logits


@dataclass(frozen=True)
class ParityResult:
    max_abs_diff: float
    output_scale: float
    """Largest absolute output; float32 rounding of logits grows with it."""
    samples: int
    passed: bool

    @property
    def allowed_diff(self) -> float:
        return allowed_difference(self.output_scale)


def allowed_difference(output_scale: float) -> float:
    """``PARITY_TOLERANCE`` for outputs up to 1 in size, relative to the output beyond that.

    Probabilities and ordinary logits are held to 1e-4 absolute. Logits in the thousands, as
    defensive distillation produces, carry float32 rounding near 1e-4 by themselves, so for them
    the same 1e-4 applies relative to the largest output.
    """
    return PARITY_TOLERANCE * max(1.0, output_scale)


def export_onnx(
    loaded: LoadedModel,
    model: nn.Module,
    path: Path,
    sample: Tensor,
    *,
    inline_limit: int = INLINE_WEIGHT_LIMIT,
) -> int:
    """Write ``model`` (the hardened version of ``loaded``) to ``path``; returns the opset.
    Weights over ``inline_limit`` bytes go to ``<name>.data`` beside it (the dynamo exporter's
    name too); the TorchScript-based exporter, used for TorchScript uploads only, switches by
    itself at protobuf's 2 GB."""
    model = model.cpu().eval()
    if isinstance(model, OnnxClassifier):
        write_trained_onnx(model, path, inline_limit=inline_limit)
        return model.opset
    wrapped = _WithFinalActivation(model, loaded.final_activation).eval()
    example = sample[:2].cpu()
    external = _state_bytes(model) > inline_limit
    try:
        _export_dynamo(wrapped, example, path, external_data=external)
    except Exception as exc:  # the dynamo exporter fails in many ways on scripted modules
        log.info("dynamo export failed (%s); using the TorchScript-based exporter", exc)
        _export_legacy(wrapped, example, path)
    onnx.checker.check_model(str(path))
    return onnx_opset(path)


def _state_bytes(model: nn.Module) -> int:
    return sum(t.numel() * t.element_size() for t in model.state_dict().values())


def _export_dynamo(
    model: nn.Module, example: Tensor, path: Path, *, external_data: bool = False
) -> None:
    batch = torch.export.Dim("batch", min=1)
    with _quiet_exporter():
        program = torch.onnx.export(
            model,
            (example,),
            dynamo=True,
            opset_version=EXPORT_OPSET,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_shapes=({0: batch},),
            external_data=False,
            verbose=False,
        )
    if program is None:
        raise RuntimeError("the dynamo exporter returned no program")
    program.save(str(path), external_data=external_data)


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[None]:
    """The dynamo exporter prints progress to stdout and warns about absent torchvision ops;
    neither belongs in a job's log."""
    exporter_log = logging.getLogger("torch.onnx")
    level = exporter_log.level
    exporter_log.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        exporter_log.setLevel(level)


def _export_legacy(model: nn.Module, example: Tensor, path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (example,),
            str(path),
            dynamo=False,
            opset_version=17,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
        )


def check_parity(path: Path, loaded: LoadedModel, model: nn.Module, inputs: Tensor) -> ParityResult:
    """Compare onnxruntime's outputs with the PyTorch model's on held-out inputs."""
    model = model.cpu().eval()
    served = model if isinstance(model, OnnxClassifier) else None
    with torch.no_grad():
        if served is not None:
            expected = served.served_from_logits(model(inputs.cpu())).numpy()
        else:
            reference = _WithFinalActivation(model, loaded.final_activation).eval()
            expected = reference(inputs.cpu()).numpy()
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feeds = {session.get_inputs()[0].name: inputs.cpu().numpy().astype(np.float32)}
    return compare_outputs(
        session, feeds, expected, served.served_output if served is not None else None
    )


def compare_outputs(
    session: ort.InferenceSession,
    feeds: dict[str, np.ndarray],
    expected: np.ndarray,
    output: str | None = None,
) -> ParityResult:
    """onnxruntime's ``output`` (the first by default) on ``feeds`` against ``expected``, the
    PyTorch model's. Integer feeds are cast to the width the graph declares (int32 token ids)."""
    declared = {i.name: i.type for i in session.get_inputs()}
    feeds = {
        name: value.astype(np.int32) if declared.get(name) == "tensor(int32)" else value
        for name, value in feeds.items()
    }
    actual = _as_array(session.run([output] if output else None, feeds)[0])
    if actual.shape != expected.shape:
        raise ExportCheckFailed(
            f"the ONNX artifact returns shape {actual.shape}, PyTorch {expected.shape}"
        )
    diff = float(np.max(np.abs(actual.astype(np.float64) - expected.astype(np.float64))))
    diff = diff if math.isfinite(diff) else math.inf
    scale = float(np.max(np.abs(expected))) if expected.size else 0.0
    return ParityResult(diff, scale, len(expected), diff <= allowed_difference(scale))


def _as_array(output: Any) -> np.ndarray:
    """An output as an array: a scikit-learn export's ZipMap gives one map per sample, class
    label to probability, in the order of the labels."""
    if isinstance(output, list):
        return np.array([[row[key] for key in sorted(row)] for row in output])
    return np.asarray(output)


def add_metadata(path: Path, metadata: dict[str, str]) -> None:
    """Store key/value strings in the model's ``metadata_props`` (replacing same keys)."""
    model = onnx.load(str(path), load_external_data=False)
    kept = [p for p in model.metadata_props if p.key not in metadata]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    for key, value in metadata.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(model, str(path))


def onnx_opset(path: Path) -> int:
    """The default-domain opset the ONNX file at ``path`` declares (0 if none)."""
    model = onnx.load(str(path), load_external_data=False)
    return next((int(o.version) for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
