"""The robustness report: one typed value, one JSON schema (``report.schema.json``), a Markdown
model card with a picture: robustness versus epsilon, and per attack.

The report holds nothing that varies between runs with the same inputs and seed on the same
machine (no timestamps, no durations), so two such runs give byte-identical JSON.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from workers.engine.evaluation.suite import ModelScores
from workers.engine.output_files import PLOT_FILE
from workers.engine.training.methods import EpochRecord
from workers.engine.verdict import verdict

SCHEMA_VERSION = "1.3"
KIND = "tempering.robustness_report"


@dataclass(frozen=True)
class ExportCheck:
    max_abs_diff: float
    tolerance: float
    output_scale: float
    allowed_diff: float
    samples: int
    opset: int
    passed: bool


@dataclass(frozen=True)
class TrainingSummary:
    method: str
    epochs: int
    selected_epoch: int
    selection: str
    history: list[EpochRecord]
    notes: list[str] = field(default_factory=list)
    resumed_from_epoch: int | None = None
    recipe: list[str] = field(default_factory=list)
    """How the recipe chose each training parameter the request left unset."""
    config: dict[str, Any] = field(default_factory=dict)
    """The training configuration that ran, every parameter concrete."""


@dataclass(frozen=True)
class RobustnessReport:
    request: dict[str, Any]
    inputs: dict[str, Any]
    model_notes: list[str]
    original: ModelScores
    hardened: ModelScores
    training: TrainingSummary
    export: ExportCheck
    environment: dict[str, str]
    tabular: dict[str, Any] | None = None
    """A model scored under a feature schema: the schema, the constrained attacks' audit and
    the unconstrained sanity line (:func:`workers.engine.tabular.evaluation.tabular_section`)."""

    def to_dict(self) -> dict[str, Any]:
        report = self._common_dict()
        if self.tabular is not None:
            report["modality"] = "tabular"
            report["tabular"] = self.tabular
            report["threat_model"] = {**report["threat_model"], **self.tabular["box"]}
            report["evaluation"]["headline"] = self.tabular["headline"]
        return report

    def _common_dict(self) -> dict[str, Any]:
        original, hardened = _scores_dict(self.original), _scores_dict(self.hardened)
        return {
            "schema_version": SCHEMA_VERSION,
            "kind": KIND,
            "request": self.request,
            "inputs": self.inputs,
            "threat_model": self.request["threat"],
            "evaluation": {
                **self.request["evaluation"],
                "seed": self.request["seed"],
                "attacks": [a.name for a in self.original.attacks],
                "headline": HEADLINE,
                "cascade": [a.name for a in self.original.attacks if a.in_cascade],
                "per_attack_samples": _per_attack_samples(self.original),
                "interval": "95% Wilson score",
            },
            "model_notes": self.model_notes,
            "original": original,
            "hardened": hardened,
            "verdict": verdict(original, hardened),
            "training": {
                "method": self.training.method,
                "epochs": self.training.epochs,
                "selected_epoch": self.training.selected_epoch,
                "selection": self.training.selection,
                "resumed_from_epoch": self.training.resumed_from_epoch,
                "recipe": self.training.recipe,
                "config": self.training.config,
                "notes": self.training.notes,
                "history": [_epoch_dict(r) for r in self.training.history],
            },
            "export": {
                "format": "onnx",
                "opset": self.export.opset,
                "max_abs_diff": self.export.max_abs_diff,
                "tolerance": self.export.tolerance,
                "output_scale": round(self.export.output_scale, 6),
                "allowed_diff": self.export.allowed_diff,
                "samples": self.export.samples,
                "passed": self.export.passed,
            },
            "environment": self.environment,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"


def _scores_dict(scores: ModelScores) -> dict[str, Any]:
    return {
        "clean_accuracy": scores.clean.to_dict(),
        "robust_accuracy": scores.robust.to_dict(),
        "attacks": [
            {
                "name": a.name,
                "description": a.description,
                "white_box": a.white_box,
                "samples": a.robust.total,
                "in_cascade": a.in_cascade,
                "robust_accuracy": a.robust.to_dict(),
            }
            for a in scores.attacks
        ],
        "curve": [{"eps": p.eps, "robust_accuracy": p.robust.to_dict()} for p in scores.curve],
        "masking": [check.to_dict() for check in scores.masking],
        "gradient_masking_suspected": scores.masking_suspected,
    }


HEADLINE = (
    "per-sample worst case: the cascade attacks run in order, each on the samples still standing;"
    " on the per-attack subset every attack runs on every sample"
)


def _per_attack_samples(scores: ModelScores) -> int:
    return scores.attacks[0].robust.total if scores.attacks else 0


def _per_attack_total(report: dict[str, Any]) -> int:
    """Reports without the field come from before the per-attack subset, when every attack ran
    on every sample."""
    total: int = report["evaluation"].get(
        "per_attack_samples", report["original"]["clean_accuracy"]["total"]
    )
    return total


def _epoch_dict(record: EpochRecord) -> dict[str, Any]:
    return {
        "stage": record.stage,
        "epoch": record.epoch,
        "loss": round(record.loss, 6),
        "train_accuracy": round(record.train_accuracy, 6),
        "val_clean_accuracy": round(record.val_clean_accuracy, 6),
        "val_robust_accuracy": (
            None if record.val_robust_accuracy is None else round(record.val_robust_accuracy, 6)
        ),
    }


def json_schema() -> dict[str, Any]:
    text = resources.files("workers.engine").joinpath("report.schema.json").read_text()
    schema: dict[str, Any] = json.loads(text)
    return schema


@dataclass(frozen=True)
class _Budget:
    """How a report's threat model reads in the card and the plots: an image model's radius,
    or a text model's share of words changed."""

    value: float
    """Where the requested budget lies on the robustness curve."""
    axis: str
    column: str
    words: str


def _budget(report: dict[str, Any]) -> _Budget:
    threat = report["threat_model"]
    if report.get("modality") == "tabular":
        return _Budget(
            1.0,
            "multiple of the schema's budgets",
            "budget x",
            "the feature schema (per-feature budgets, immutable features fixed, integers"
            " integral, one category per group; see the tabular section)",
        )
    if report.get("modality") == "text":
        return _Budget(
            threat["word_share"],
            "share of words replaced by synonyms",
            "words changed",
            f"discrete edits of texts: synonyms for up to {threat['word_share']:.0%} of the words,"
            f" character edits in up to {threat['char_share']:.0%}",
        )
    return _Budget(
        threat["eps"],
        f"epsilon ({threat['norm']})",
        "eps",
        f"{threat['norm']} ball of radius {threat['eps']:g}",
    )


def model_card(report: dict[str, Any], plot_name: str | None = PLOT_FILE) -> str:
    """A short Markdown card: what was done, the before/after table, the per-attack table,
    the masking verdict and the curve."""
    budget = _budget(report)
    original, hardened = report["original"], report["hardened"]
    lines = [
        "# Model card: hardened classifier",
        "",
        f"Method: **{report['training']['method']}**, threat model: {budget.words}, evaluation"
        f" suite: {report['evaluation']['suite']}"
        f" on {original['clean_accuracy']['total']} held-out samples (seed "
        f"{report['evaluation']['seed']}).",
        "",
        "| | clean accuracy | robust accuracy (per-sample worst case over the cascade) |",
        "|---|---|---|",
        f"| original | {_pct(original['clean_accuracy'])} | {_pct(original['robust_accuracy'])} |",
        f"| hardened | {_pct(hardened['clean_accuracy'])} | {_pct(hardened['robust_accuracy'])} |",
        "",
        "Intervals are 95% Wilson intervals. A sample counts as robust only if no attack in the"
        " suite changed its prediction; the attacks run as a cascade, each on the samples the"
        " ones before it left.",
        "",
        *_verdict_lines(report.get("verdict")),
        "## Per attack (robust accuracy)",
        "",
        f"On the first {_per_attack_total(report)} samples, where every attack runs on every"
        " sample; the headline above is over all of them.",
        "",
        "| attack | original | hardened |",
        "|---|---|---|",
    ]
    for before, after in zip(original["attacks"], hardened["attacks"], strict=True):
        lines.append(
            f"| {before['name']} | {_pct(before['robust_accuracy'])} |"
            f" {_pct(after['robust_accuracy'])} |"
        )
    lines += ["", "## Gradient masking", ""]
    if report.get("modality") == "text":
        lines.append(
            "- Not applicable to the headline: the text attacks are black-box searches over"
            " words and characters, which a model cannot mislead by masking its gradients."
        )
    for label, scores in (("original", original), ("hardened", hardened)):
        if report.get("modality") == "text":
            break
        fired = [c for c in scores["masking"] if c["fired"]]
        if not fired:
            lines.append(f"- {label}: no sign of gradient masking in the checks we run.")
        for check in fired:
            lines.append(
                f"- **{label}: {check['check']}** ({check['detail']}). {check['explanation']}"
            )
    lines += _tabular_lines(report.get("tabular"))
    if report["training"]["notes"] or report["model_notes"]:
        lines += ["", "## Notes", ""]
        lines += [f"- {note}" for note in report["model_notes"] + report["training"]["notes"]]
    if plot_name:
        lines += [
            "",
            f"## Robustness versus {budget.column}",
            "",
            f"![robustness plots]({plot_name})",
        ]
    lines += ["", f"| {budget.column} | original | hardened |", "|---|---|---|"]
    for before, after in zip(original["curve"], hardened["curve"], strict=True):
        lines.append(
            f"| {before['eps']:.4g} | {_pct(before['robust_accuracy'])} |"
            f" {_pct(after['robust_accuracy'])} |"
        )
    lines += [
        "",
        f"Export check: onnxruntime matches PyTorch within {report['export']['max_abs_diff']:.2e}"
        f" (allowed {report['export']['allowed_diff']:.2g}: {report['export']['tolerance']:g},"
        " relative to the largest output where that exceeds 1).",
        "",
    ]
    return "\n".join(lines)


def _tabular_lines(section: dict[str, Any] | None) -> list[str]:
    """The schema, what each constrained attack respected, the repair counts and the
    unconstrained sanity line."""
    if not section:
        return []
    lines = [
        "",
        "## Feature schema",
        "",
        "| feature | kind | mutable | range | budget |",
        "|---|---|---|---|---|",
    ]
    for f in section["schema"]["features"]:
        low = "" if f["lower"] is None else f"{f['lower']:g}"
        high = "" if f["upper"] is None else f"{f['upper']:g}"
        kind = f["kind"] + (f" ({len(f['columns'])} columns)" if f["kind"] == "categorical" else "")
        mutable = "yes" if f["mutable"] else "no"
        lines.append(f"| {f['name']} | {kind} | {mutable} | [{low}, {high}] | {f['budget']} |")
    constraints = section["schema"].get("constraints") or []
    if constraints:
        lines += ["", "Linear constraints between features (`linear` below):", ""]
        for number, c in enumerate(constraints, 1):
            solved = f"; `{c['dependent']}` recomputed" if c.get("dependent") else ""
            lines.append(f"{number}. {c['name']}: `{c['formula']}`{solved}")
    lines += [
        "",
        "## Constrained attacks",
        "",
        "A candidate counts only if its repair onto the schema is misclassified and passes an"
        " independent check of every constraint.",
        "",
        "| model | attack | candidates | invalid before repair | fooled before repair |"
        " dropped after repair | counted | constraints respected as returned |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for label in ("original", "hardened"):
        for a in section[label]["attacks"]:
            lines.append(
                f"| {label} | {a['name']} | {a['candidates']} | {a['invalid_before_repair']} |"
                f" {a['fooled_before_repair']} | {a['dropped_after_repair']} | {a['counted']} |"
                f" {', '.join(a['respected']) or 'none'} |"
            )
    lines += _exhaustive_lines(section)
    lines += [
        "",
        "**Unconstrained sanity line (not the headline).** "
        + (section["original"]["unconstrained"]["label"])
        + ":",
        "",
    ]
    for label in ("original", "hardened"):
        sanity = section[label]["unconstrained"]
        lines.append(
            f"- {label}: {_pct(sanity['robust_accuracy'])} robust unconstrained"
            + (
                ""
                if sanity["at_most_constrained"]
                else " (ABOVE the constrained worst case:"
                " the constrained attacks found what the plain ball's attacks missed)"
            )
        )
    return lines


def _exhaustive_lines(section: dict[str, Any]) -> list[str]:
    """Per model, what the enumeration of every valid point settled (none before 1.3)."""
    if "exhaustive" not in section["original"]:
        return []
    lines = [
        "",
        "**Exhaustive enumeration** of every valid point, where the attacker's set is finite,"
        " on the samples the attacks left robust:",
        "",
    ]
    for label in ("original", "hardened"):
        lines.append(f"- {label}: {_exhaustive_words(section[label]['exhaustive'])}")
    return lines


def _exhaustive_words(block: dict[str, Any]) -> str:
    """The enumeration's line for one model: its summary, what the attacks missed, and whether
    the headline is exact."""
    missed = block["missed_by_attacks"]
    return (
        f"{block['summary']}; missed by the attacks: {missed}"
        + (" (the attacks alone overstated robustness)" if missed else "")
        + ("; the headline is exact" if block["headline_exact"] else "")
    )


def _verdict_lines(judgement: dict[str, Any] | None) -> list[str]:
    """The verdict section, or nothing for a report written before reports had one."""
    if not judgement:
        return []
    lines = ["## Verdict", "", f"**{judgement['summary']}**", ""]
    lines += [f"- {detail}" for detail in judgement["details"]]
    return [*lines, ""]


PLOT_SIZE_INCHES = (10.0, 3.6)
PLOT_DPI = 100
_STYLES = {"original": ("C0", "o--"), "hardened": ("C1", "s-")}


def plot_curve(report: dict[str, Any], path: Path) -> None:
    """Two panels: robust accuracy against epsilon, and robust accuracy per attack at the
    threat model's epsilon (the worst case over the suite as its own bar); both with their 95%
    intervals. The PNG carries no timestamp or version, so the same report gives the same bytes."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    figure, (curve_axes, attack_axes) = plt.subplots(
        1, 2, figsize=PLOT_SIZE_INCHES, dpi=PLOT_DPI, gridspec_kw={"width_ratios": [2, 3]}
    )
    _draw_curve(curve_axes, report)
    _draw_attacks(attack_axes, report)
    figure.legend(*curve_axes.get_legend_handles_labels(), loc="upper center", ncols=2)
    figure.tight_layout(rect=(0, 0, 1, 0.92))
    figure.savefig(path, metadata={"Software": None})
    plt.close(figure)


def _draw_curve(axes: Any, report: dict[str, Any]) -> None:
    for label, (color, style) in _STYLES.items():
        curve = report[label]["curve"]
        eps = [p["eps"] for p in curve]
        values = [p["robust_accuracy"]["value"] for p in curve]
        axes.plot(eps, values, style, color=color, label=label)
        axes.fill_between(
            eps,
            [p["robust_accuracy"]["low"] for p in curve],
            [p["robust_accuracy"]["high"] for p in curve],
            color=color,
            alpha=0.2,
        )
    budget = _budget(report)
    axes.axvline(budget.value, color="grey", linewidth=0.8, linestyle=":")
    axes.set_title(f"Robustness versus {budget.column}")
    axes.set_xlabel(budget.axis)
    axes.set_ylabel("robust accuracy")
    axes.set_ylim(0, 1)


def _draw_attacks(axes: Any, report: dict[str, Any]) -> None:
    names = [a["name"] for a in report["original"]["attacks"]]
    positions = list(range(len(names) + 1))
    width = 0.38
    for offset, (label, (color, _)) in zip((-width / 2, width / 2), _STYLES.items(), strict=True):
        by_name = {a["name"]: a["robust_accuracy"] for a in report[label]["attacks"]}
        scores = [by_name[name] for name in names] + [report[label]["robust_accuracy"]]
        bars = axes.bar(
            [x + offset for x in positions],
            [s["value"] for s in scores],
            width,
            yerr=[
                [max(0.0, s["value"] - s["low"]) for s in scores],
                [max(0.0, s["high"] - s["value"]) for s in scores],
            ],
            color=color,
            capsize=2,
            error_kw={"elinewidth": 0.8},
        )
        bars[-1].set_hatch("//")
        bars[-1].set_edgecolor("black")
    axes.axvline(len(names) - 0.5, color="grey", linewidth=0.8)
    axes.set_xticks(positions, [*names, "worst case"], rotation=30, ha="right")
    threat = report["threat_model"]
    if report.get("modality") == "text":
        axes.set_title("Per attack at the requested budgets")
    else:
        axes.set_title(f"Per attack at eps = {threat['eps']:g} ({threat['norm']})")
    axes.set_ylabel("robust accuracy")
    axes.set_ylim(0, 1)


def _pct(accuracy: dict[str, Any]) -> str:
    return (
        f"{accuracy['value']:.1%} [{accuracy['low']:.1%}, {accuracy['high']:.1%}]".replace("%", "")
        + " %"
    )
