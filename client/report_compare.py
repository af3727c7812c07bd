"""Two robustness reports side by side: the headline figures with their 95% intervals, the
masking checks and the verdicts (``temper report A B``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from client.scores_table import percent

LABEL_WIDTH = 30
COLUMN_WIDTH = 26

Report = Mapping[str, Any]


def headline(report: Report) -> dict[str, Any]:
    """The figures the table shows, as JSON (``temper report A B --json``)."""
    threat = report.get("threat_model", {})
    return {
        "method": report.get("training", {}).get("method"),
        "norm": threat.get("norm"),
        "eps": threat.get("eps"),
        "suite": report.get("evaluation", {}).get("suite"),
        "samples": report["original"]["clean_accuracy"].get("total"),
        "original": _scores(report["original"]),
        "hardened": _scores(report["hardened"]),
        "verdict": (report.get("verdict") or {}).get("summary"),
    }


def _scores(scores: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "clean_accuracy": dict(scores["clean_accuracy"]),
        "robust_accuracy": dict(scores["robust_accuracy"]),
        "gradient_masking_suspected": bool(scores.get("gradient_masking_suspected")),
    }


def render(names: Sequence[str], reports: Sequence[Report]) -> str:
    first, second = (headline(report) for report in reports)
    rows = [
        ("", names[0], names[1]),
        ("method", _text(first["method"]), _text(second["method"])),
        ("threat model", _threat(first), _threat(second)),
        ("suite, samples", _suite(first), _suite(second)),
    ]
    for model in ("original", "hardened"):
        rows += [
            (f"{model}: clean accuracy", *_both(first, second, model, "clean_accuracy")),
            (f"{model}: robust (worst)", *_both(first, second, model, "robust_accuracy")),
            (
                f"{model}: gradient masking",
                _masking(first[model]),
                _masking(second[model]),
            ),
        ]
    lines = [f"{a:<{LABEL_WIDTH}}{b:<{COLUMN_WIDTH}}{c}".rstrip() for a, b, c in rows]
    lines.append("")
    for name, figures in zip(names, (first, second), strict=True):
        lines.append(f"verdict of {name}: {figures['verdict'] or 'none (older server)'}")
    if _threat(first) != _threat(second) or first["samples"] != second["samples"]:
        lines += [
            "",
            "note: the two were scored under different threat models or sample counts; their"
            " figures answer different questions",
        ]
    return "\n".join(lines)


def _both(first: Report, second: Report, model: str, figure: str) -> tuple[str, str]:
    return percent(first[model][figure]), percent(second[model][figure])


def _masking(scores: Mapping[str, Any]) -> str:
    return "SUSPECTED" if scores["gradient_masking_suspected"] else "no sign"


def _threat(figures: Mapping[str, Any]) -> str:
    eps = figures["eps"]
    return f"{_text(figures['norm'])}, eps {eps:g}" if eps is not None else "?"


def _suite(figures: Mapping[str, Any]) -> str:
    return f"{_text(figures['suite'])}, {_text(figures['samples'])}"


def _text(value: Any) -> str:
    return "?" if value is None else str(value)
