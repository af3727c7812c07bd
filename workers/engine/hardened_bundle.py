"""The hardened model as it leaves the engine: one self-contained ``.onnx``, or, when its
weights went to external data (over the inline weight limit), the bundle ``hardened.onnx.tar``
of the ``.onnx`` and its data file, in the format uploads use (docs/model-bundles.md).

A bundle is checked as a user will read it: unpacked by the same strict unpacker uploads go
through, into a fresh folder, and loaded by onnxruntime from there, its report in the metadata.
"""

from __future__ import annotations

from pathlib import Path

import onnx
import onnxruntime as ort

from workers.engine.errors import ExportCheckFailed
from workers.engine.models.bundle import pack_bundle, unpacked_bundle
from workers.engine.models.onnx.reading import _model_tensors
from workers.engine.output_files import MODEL_BUNDLE_FILE

REPORT_KEY = "tempering.report"


def package_model(model_path: Path) -> tuple[Path, bool]:
    """The file to return for the written model at ``model_path``, and whether it is a bundle.
    A bundle replaces the loose ``.onnx`` and data files beside it (they would double the
    disk a large model takes)."""
    locations = external_locations(model_path)
    if not locations:
        return model_path, False
    archive = model_path.with_name(MODEL_BUNDLE_FILE)
    archive.unlink(missing_ok=True)
    pack_bundle(model_path, locations, archive)
    check_bundle(archive)
    for location in locations:
        (model_path.parent / location).unlink()
    model_path.unlink()
    return archive, True


def external_locations(model_path: Path) -> list[str]:
    """The distinct external data files the model references, in the order first met."""
    model = onnx.load(str(model_path), load_external_data=False)
    found: dict[str, None] = {}
    for tensor in _model_tensors(model):
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            entries = {entry.key: entry.value for entry in tensor.external_data}
            found.setdefault(entries.get("location", ""))
    return list(found)


def check_bundle(archive: Path) -> None:
    """Unpack ``archive`` as an upload would be and load its model in onnxruntime from that
    folder; :class:`ExportCheckFailed` unless it loads and carries its report."""
    with unpacked_bundle(archive) as model_path:
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        try:
            session = ort.InferenceSession(
                str(model_path), options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # onnxruntime raises its own untyped errors
            raise ExportCheckFailed(
                f"onnxruntime cannot load the hardened model from its unpacked bundle: {exc}"
            ) from exc
        if REPORT_KEY not in session.get_modelmeta().custom_metadata_map:
            raise ExportCheckFailed("the hardened model's bundle lost the report in its metadata")
