"""What a hardening job leaves behind, for every kind of model; the files' names are in
:mod:`workers.engine.output_files`."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from workers.engine.export import add_metadata
from workers.engine.files import sha256_file
from workers.engine.hardened_bundle import package_model
from workers.engine.output_files import CARD_FILE, PLOT_FILE, REPORT_FILE
from workers.engine.output_files import FEATURE_SCHEMA_FILE as FEATURE_SCHEMA_FILE
from workers.engine.output_files import MODEL_FILE as MODEL_FILE
from workers.engine.output_files import TOKENIZER_FILE as TOKENIZER_FILE
from workers.engine.report import model_card, plot_curve


@dataclass(frozen=True)
class HardeningResult:
    model_path: Path
    report_path: Path
    card_path: Path
    plot_path: Path
    report: dict[str, Any]
    tokenizer_path: Path | None = None
    schema_path: Path | None = None
    """A tabular model's feature schema, returned unchanged beside it; None for other models."""
    model_is_bundle: bool = False
    """``model_path`` is ``hardened.onnx.tar``, the model with its external data file (its
    weights were over the inline limit), not one ``.onnx``."""


def write_outputs(
    output_dir: Path,
    model_path: Path,
    report: dict[str, Any],
    tokenizer_path: Path | None = None,
    schema_path: Path | None = None,
) -> HardeningResult:
    """The report inside the ONNX file's metadata and beside it, with its card and plot; a
    feature schema (``schema_path``, the request's) is copied beside them unchanged. A model
    written with external data is returned as a bundle (:mod:`workers.engine.hardened_bundle`)."""
    text = json.dumps(report, indent=2, sort_keys=True) + "\n"
    inputs = report["inputs"]
    metadata = {
        "tempering.report": text,
        "tempering.model_sha256": inputs["model_sha256"],
        "tempering.train_data_sha256": inputs["train_data_sha256"],
        "tempering.eval_data_sha256": inputs["eval_data_sha256"] or "",
        "tempering.report_schema": report["schema_version"],
    }
    if "text" in report:
        metadata["tempering.tokenizer_sha256"] = report["text"]["tokenizer_sha256"]
    if "tabular" in report and "schema_sha256" in report["tabular"]:
        metadata["tempering.feature_schema_sha256"] = report["tabular"]["schema_sha256"]
    add_metadata(model_path, metadata)
    model_path, bundled = package_model(model_path)
    report_path = output_dir / REPORT_FILE
    report_path.write_text(text)
    plot_path = output_dir / PLOT_FILE
    plot_curve(report, plot_path)
    card_path = output_dir / CARD_FILE
    card_path.write_text(model_card(report, PLOT_FILE))
    returned_schema = None
    if schema_path is not None:
        returned_schema = output_dir / FEATURE_SCHEMA_FILE
        returned_schema.write_bytes(schema_path.read_bytes())
    return HardeningResult(
        model_path,
        report_path,
        card_path,
        plot_path,
        report,
        tokenizer_path,
        returned_schema,
        model_is_bundle=bundled,
    )


def input_sha256(verified: Mapping[Path, str], path: Path) -> str:
    """The digest the caller checked these bytes against, else the file's own."""
    return verified.get(path) or sha256_file(path)
