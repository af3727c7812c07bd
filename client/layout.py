"""Where a hardening run puts its files: the ONNX model at the path the user chose, the rest
beside it under the same stem (``hardened.onnx`` -> ``hardened.report.json``,
``hardened.model_card.md``, ``hardened.robustness_curve.png``; a text model's
``hardened.tokenizer.json``, a tabular model's ``hardened.feature_schema.json``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from client.domain import ArtifactKind

ENGINE_PLOT_NAME = "robustness_curve.png"
"""The name the engine's model card uses to link the plot (``PLOT_FILE`` of
``workers/engine/output_files.py``). The client reads it here because it never imports the
engine; tests/client/test_client_report_local.py checks the two agree."""


@dataclass(frozen=True)
class OutputLayout:
    model: Path
    report: Path
    card: Path
    plot: Path
    tokenizer: Path
    """A text model's tokenizer.json, beside the model that reads its ids."""
    schema: Path
    """A tabular model's feature schema, beside the model whose inputs it describes."""

    @classmethod
    def beside(cls, model_path: Path) -> OutputLayout:
        stem, folder = model_path.stem, model_path.parent
        return cls(
            model=model_path,
            report=folder / f"{stem}.report.json",
            card=folder / f"{stem}.model_card.md",
            plot=folder / f"{stem}.{ENGINE_PLOT_NAME}",
            tokenizer=folder / f"{stem}.tokenizer.json",
            schema=folder / f"{stem}.feature_schema.json",
        )

    def path_for(self, kind: ArtifactKind) -> Path:
        return {
            ArtifactKind.MODEL: self.model,
            ArtifactKind.REPORT: self.report,
            ArtifactKind.CARD: self.card,
            ArtifactKind.PLOT: self.plot,
            ArtifactKind.TOKENIZER: self.tokenizer,
            ArtifactKind.SCHEMA: self.schema,
        }[kind]


def plot_beside(card_path: Path) -> Path:
    """Where a downloaded card's plot goes: ``hardened.model_card.md`` ->
    ``hardened.robustness_curve.png`` (as in :class:`OutputLayout`), ``card.md`` ->
    ``card.robustness_curve.png``."""
    suffix = ".model_card.md"
    name = card_path.name
    stem = name.removesuffix(suffix) if name.endswith(suffix) else card_path.stem
    return card_path.parent / f"{stem}.{ENGINE_PLOT_NAME}"


def relink_plot(card_text: str, plot_path: Path) -> str:
    """Point the card's image link at the plot's new name."""
    return card_text.replace(f"]({ENGINE_PLOT_NAME})", f"]({plot_path.name})")
