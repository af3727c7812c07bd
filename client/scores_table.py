"""The before/after table every hardening command ends with, read from the report JSON."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

LABEL_WIDTH = 26
COLUMN_WIDTH = 24


def percent(accuracy: Mapping[str, Any]) -> str:
    """``61.5% [54.6, 68.0]``: the value and its 95% interval, in percent."""
    return (
        f"{accuracy['value'] * 100:5.1f}% [{accuracy['low'] * 100:4.1f},"
        f" {accuracy['high'] * 100:5.1f}]"
    )


def render(report: Mapping[str, Any]) -> str:
    original, hardened = report["original"], report["hardened"]
    rows = [
        ("", "original", "hardened"),
        (
            "clean accuracy",
            percent(original["clean_accuracy"]),
            percent(hardened["clean_accuracy"]),
        ),
        (
            "robust accuracy (worst)",
            percent(original["robust_accuracy"]),
            percent(hardened["robust_accuracy"]),
        ),
        *_attack_rows(original["attacks"], hardened["attacks"]),
        (
            "gradient masking",
            _masking_verdict(original),
            _masking_verdict(hardened),
        ),
        *_masking_rows(original["masking"], hardened["masking"]),
    ]
    lines = [_title(report), ""]
    lines += [f"{a:<{LABEL_WIDTH}}{b:<{COLUMN_WIDTH}}{c}".rstrip() for a, b, c in rows]
    lines += _verdict_lines(report)
    input_notes = report.get("inputs", {}).get("notes", [])
    if input_notes:
        lines += ["", *(f"note: {note}" for note in input_notes)]
    notes = _masking_notes(original, hardened)
    if notes:
        lines += ["", *notes]
    return "\n".join(lines)


def _verdict_lines(report: Mapping[str, Any]) -> list[str]:
    """The engine's verdict in words, after a blank line; nothing for a report from a server
    older than verdicts."""
    verdict = report.get("verdict")
    if not verdict:
        return []
    return ["", f"verdict: {verdict['summary']}", *(f"  {d}" for d in verdict["details"])]


def _title(report: Mapping[str, Any]) -> str:
    threat = report.get("threat_model", {})
    suite = report.get("evaluation", {}).get("suite", "?")
    method = report.get("training", {}).get("method", "?")
    total = report["original"]["clean_accuracy"].get("total")
    samples = f" on {total} held-out samples" if total else ""
    return (
        f"Before and after {method} hardening\n"
        f"threat model: {threat.get('norm', '?')} ball of radius {threat.get('eps', 0):g};"
        f" {suite} evaluation suite{samples}; 95% intervals"
    )


def _attack_rows(
    before: list[Mapping[str, Any]], after: list[Mapping[str, Any]]
) -> list[tuple[str, str, str]]:
    hardened = {a["name"]: a for a in after}
    rows = []
    for attack in before:
        other = hardened.get(attack["name"])
        rows.append(
            (
                f"  {attack['name']}" + ("" if attack.get("white_box", True) else " (black-box)"),
                percent(attack["robust_accuracy"]),
                percent(other["robust_accuracy"]) if other else "-",
            )
        )
    return rows


def _masking_verdict(scores: Mapping[str, Any]) -> str:
    return "SUSPECTED" if scores.get("gradient_masking_suspected") else "no sign"


def _masking_rows(
    before: list[Mapping[str, Any]], after: list[Mapping[str, Any]]
) -> list[tuple[str, str, str]]:
    fired_before = {c["check"] for c in before if c["fired"]}
    fired_after = {c["check"] for c in after if c["fired"]}
    checks = [c["check"] for c in before] + [
        c["check"] for c in after if c["check"] not in {b["check"] for b in before}
    ]
    return [
        (
            f"  {check}",
            "fired" if check in fired_before else "-",
            "fired" if check in fired_after else "-",
        )
        for check in checks
        if check in fired_before or check in fired_after
    ]


def _masking_notes(original: Mapping[str, Any], hardened: Mapping[str, Any]) -> list[str]:
    notes = []
    for label, scores in (("original", original), ("hardened", hardened)):
        for check in scores["masking"]:
            if check["fired"]:
                notes.append(
                    f"{label}: {check['check']} ({check['detail']}). {check['explanation']}"
                )
    return notes
