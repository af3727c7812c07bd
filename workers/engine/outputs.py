"""What a hardening job leaves behind, and the names of its files, for every kind of model."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

MODEL_FILE = "hardened.onnx"
REPORT_FILE = "report.json"
CARD_FILE = "model_card.md"
PLOT_FILE = "robustness_curve.png"
TOKENIZER_FILE = "tokenizer.json"
"""A text model's tokenizer, returned beside the model it encodes texts for."""


@dataclass(frozen=True)
class HardeningResult:
    model_path: Path
    report_path: Path
    card_path: Path
    plot_path: Path
    report: dict[str, Any]
    tokenizer_path: Path | None = None
