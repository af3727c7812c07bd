"""What the tests of the job runner share: inputs put straight into a store and its catalog
(no service in between), and the files a stand-in engine leaves as its outputs. Imported as
``tests.runner_support`` from any test folder."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from service.core.domain import UploadKind
from service.store.artifacts import ArtifactStore
from service.store.catalog import UploadCatalog
from workers.engine.spec import ModelFormat

MODEL_BYTES = b"onnx bytes"
DATASET_BYTES = b"npz bytes"


@dataclass(frozen=True)
class RecordedInputs:
    model_id: str
    dataset_id: str
    dataset_sha256: str


def record_inputs(artifacts: ArtifactStore, catalog: UploadCatalog) -> RecordedInputs:
    """An ONNX model and an npz dataset (placeholder bytes) stored and catalogued."""
    ids, shas = {}, {}
    for kind, data, fmt in (
        (UploadKind.MODEL, MODEL_BYTES, ModelFormat.ONNX.value),
        (UploadKind.DATASET, DATASET_BYTES, "npz"),
    ):
        with artifacts.new_blob() as blob:
            blob.write(data)
            stored = blob.commit()
        ids[kind] = catalog.record(kind, fmt, stored.sha256, stored.size_bytes, "x")[0].id
        shas[kind] = stored.sha256
    return RecordedInputs(ids[UploadKind.MODEL], ids[UploadKind.DATASET], shas[UploadKind.DATASET])


@dataclass(frozen=True)
class StandInOutcome:
    """What :func:`workers.engine.pipeline.harden` returns, as the runner reads it."""

    model_path: Path
    report_path: Path
    card_path: Path
    plot_path: Path
    report: dict[str, Any]
    tokenizer_path: Path | None = None
    schema_path: Path | None = None
    model_is_bundle: bool = False


def write_outputs(output_dir: Path, report: dict[str, Any]) -> StandInOutcome:
    """The four output files, with ``report`` as the report."""
    output_dir.mkdir()
    paths = StandInOutcome(
        output_dir / "hardened.onnx",
        output_dir / "report.json",
        output_dir / "model_card.md",
        output_dir / "robustness_curve.png",
        report,
    )
    paths.model_path.write_bytes(b"onnx")
    paths.report_path.write_text(json.dumps(report))
    paths.card_path.write_text("#")
    paths.plot_path.write_bytes(b"png")
    return paths
