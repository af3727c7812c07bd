"""What a CI system shows of a hardening run: a JUnit XML report with one test case per gate, and
a Markdown summary (scores of the original and the hardened model with their intervals, the
gate results, the gradient-masking explanations) for the pull request.

They go beside the hardened model and its JSON report, under the same stem
(``hardened.onnx`` -> ``hardened.junit.xml``, ``hardened.summary.md``), unless the caller names
other paths. When ``GITHUB_STEP_SUMMARY`` is set (inside a GitHub Actions step), the summary is
also appended to the file it names, which GitHub shows on the run's page.
"""

from __future__ import annotations

import os
import socket
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from client.gates import GateOutcome, fired_checks

STEP_SUMMARY_ENV = "GITHUB_STEP_SUMMARY"
SUITE_NAME = "tempering.robustness-gates"
CASE_CLASS = "tempering.gates"
FAILURE_TYPE = "RobustnessGateFailed"


@dataclass(frozen=True)
class CiPaths:
    junit: Path
    summary: Path

    @classmethod
    def beside(
        cls, model_path: Path, *, junit: Path | None = None, summary: Path | None = None
    ) -> CiPaths:
        folder, stem = model_path.parent, model_path.stem
        return cls(
            junit=junit or folder / f"{stem}.junit.xml",
            summary=summary or folder / f"{stem}.summary.md",
        )


@dataclass(frozen=True)
class RunInfo:
    """What the outputs say about the run besides the report."""

    model_name: str
    job_id: str | None = None
    duration_seconds: float = 0.0
    artifacts: Sequence[Path] = ()


@dataclass(frozen=True)
class CiOutputs:
    junit: Path
    summary: Path
    step_summary: Path | None
    """The GitHub step summary the Markdown was appended to, if any."""


def write_ci_outputs(
    report: Mapping[str, Any],
    outcome: GateOutcome,
    run: RunInfo,
    paths: CiPaths,
    environ: Mapping[str, str] | None = None,
) -> CiOutputs:
    """Write the JUnit report and the Markdown summary; append the summary to the GitHub step
    summary when ``GITHUB_STEP_SUMMARY`` is set in ``environ`` (default: the process's)."""
    environ = os.environ if environ is None else environ
    summary = markdown_summary(report, outcome, run)
    for path, text in ((paths.junit, junit_xml(report, outcome, run)), (paths.summary, summary)):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    step_summary = environ.get(STEP_SUMMARY_ENV)
    appended = None
    if step_summary:
        with open(step_summary, "a", encoding="utf-8") as handle:
            handle.write(summary + "\n")
        appended = Path(step_summary)
    return CiOutputs(paths.junit, paths.summary, appended)


# ---------------------------------------------------------------------------------------------
# JUnit XML


def junit_xml(report: Mapping[str, Any], outcome: GateOutcome, run: RunInfo) -> str:
    """A ``<testsuites>`` document with one ``<testsuite>`` and one ``<testcase>`` per gate; a
    failed gate carries a ``<failure>`` whose message is its clause of the one-line verdict."""
    tests, failures = len(outcome.results), len(outcome.failures)
    counts = {"tests": str(tests), "failures": str(failures), "errors": "0", "skipped": "0"}
    duration = f"{run.duration_seconds:.3f}"
    root = ET.Element("testsuites", {"name": "tempering", **counts, "time": duration})
    suite = ET.SubElement(
        root,
        "testsuite",
        {
            "name": SUITE_NAME,
            **counts,
            "time": duration,
            "timestamp": datetime.now().strftime("%Y-%m-%dT%H:%M:%S"),
            "hostname": socket.gethostname(),
        },
    )
    properties = ET.SubElement(suite, "properties")
    for name, value in _properties(report, outcome, run):
        ET.SubElement(properties, "property", {"name": name, "value": value})
    for result in outcome.results:
        case = ET.SubElement(
            suite,
            "testcase",
            {"name": result.gate.value, "classname": CASE_CLASS, "time": "0"},
        )
        if result.passed:
            ET.SubElement(case, "system-out").text = result.clause
        else:
            failure = ET.SubElement(
                case, "failure", {"message": result.clause, "type": FAILURE_TYPE}
            )
            failure.text = "\n".join(part for part in (result.clause, result.details) if part)
    ET.SubElement(suite, "system-out").text = outcome.line()
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, "unicode") + "\n"


def _properties(
    report: Mapping[str, Any], outcome: GateOutcome, run: RunInfo
) -> list[tuple[str, str]]:
    threat = report.get("threat_model", {})
    pairs = [
        ("model", run.model_name),
        ("job_id", run.job_id or "local"),
        ("method", str(report.get("training", {}).get("method", ""))),
        ("norm", str(threat.get("norm", ""))),
        ("eps", f"{threat.get('eps', 0):g}"),
        ("suite", str(report.get("evaluation", {}).get("suite", ""))),
        ("gate_on", outcome.config.gate_on.value),
    ]
    for model in ("original", "hardened"):
        for score in ("clean_accuracy", "robust_accuracy"):
            pairs.append((f"{model}.{score}", f"{report[model][score]['value']:.6g}"))
    verdict = report.get("verdict")
    if verdict:
        pairs += [(f"verdict.{key}", str(verdict[key])) for key in ("robustness", "clean")]
        pairs.append(("verdict", verdict["summary"]))
    return pairs


# ---------------------------------------------------------------------------------------------
# Markdown


def markdown_summary(report: Mapping[str, Any], outcome: GateOutcome, run: RunInfo) -> str:
    original, hardened = report["original"], report["hardened"]
    if not outcome.results:
        title = "Tempering: hardening report (no gate set)"
    elif outcome.passed:
        title = "✅ Tempering: robustness gates passed"
    else:
        title = "❌ Tempering: robustness gate failed"
    lines = [f"## {title}", ""]
    if outcome.results:
        lines += [f"`{_code_span(outcome.line())}`", ""]
    lines += [_context(report, run), ""]
    lines += [
        "| | original | hardened |",
        "|---|---:|---:|",
        _row("clean accuracy", original["clean_accuracy"], hardened["clean_accuracy"]),
        _row(
            "**robust accuracy** (per-sample worst case over the cascade)",
            original["robust_accuracy"],
            hardened["robust_accuracy"],
        ),
    ]
    after_by_name = {a["name"]: a for a in hardened.get("attacks", ())}
    for attack in original.get("attacks", ()):
        other = after_by_name.get(attack["name"])
        name = attack["name"] + ("" if attack.get("white_box", True) else " (black-box)")
        lines.append(
            f"| &nbsp;&nbsp;{_cell(name)} | {_percent(attack['robust_accuracy'])} |"
            f" {_percent(other['robust_accuracy']) if other else '-'} |"
        )
    lines.append(f"| gradient masking | {_verdict(original)} | {_verdict(hardened)} |")
    lines += _hardening_verdict(report)
    lines += ["", "### Gates", ""]
    if outcome.results:
        lines += ["| gate | condition | measured | result |", "|---|---|---|---|"]
        for result in outcome.results:
            verdict = "✅ passed" if result.passed else "❌ **failed**"
            lines.append(
                f"| `{result.gate.value}` | {_cell(result.threshold)} |"
                f" {_cell(result.measured)} | {verdict} |"
            )
    else:
        lines.append(
            "No gate was set (`--min-robust-accuracy`, `--max-clean-drop`, `--fail-on-masking`,"
            " `--require-improvement`)."
        )
    lines += ["", "### Gradient masking", ""]
    notes = [
        f"- **{label}: {_cell(check['check'])}** ({check.get('detail', '')})."
        f" {check.get('explanation', '')}"
        for label, scores in (("original", original), ("hardened", hardened))
        for check in fired_checks(scores)
    ]
    lines += notes or ["No masking check fired on either model."]
    if run.artifacts:
        lines += ["", "### Artifacts", ""]
        lines += [f"- `{path.name}`" for path in run.artifacts]
    lines.append("")
    return "\n".join(lines)


def _hardening_verdict(report: Mapping[str, Any]) -> list[str]:
    """The engine's verdict under the scores; nothing for a report from before verdicts."""
    verdict = report.get("verdict")
    if not verdict:
        return []
    return ["", f"**Verdict:** {verdict['summary']}", "", *(f"- {d}" for d in verdict["details"])]


def _context(report: Mapping[str, Any], run: RunInfo) -> str:
    threat = report.get("threat_model", {})
    evaluation = report.get("evaluation", {})
    method = report.get("training", {}).get("method", "?")
    total = report["original"]["clean_accuracy"].get("total")
    job = f" (job `{run.job_id}`)" if run.job_id else " (run locally)"
    samples = f" on {total} held-out samples" if total else ""
    return (
        f"**{method}** hardening of `{_code_span(run.model_name)}`{job}; threat model:"
        f" {threat.get('norm', '?')} ball of radius {threat.get('eps', 0):g};"
        f" {evaluation.get('suite', '?')} evaluation suite{samples}; 95% Wilson intervals."
    )


def _row(label: str, before: Mapping[str, Any], after: Mapping[str, Any]) -> str:
    return f"| {label} | {_percent(before)} | {_percent(after)} |"


def _percent(accuracy: Mapping[str, Any]) -> str:
    return (
        f"{accuracy['value'] * 100:.1f}% [{accuracy['low'] * 100:.1f},"
        f" {accuracy['high'] * 100:.1f}]"
    )


def _verdict(scores: Mapping[str, Any]) -> str:
    return "**suspected**" if scores.get("gradient_masking_suspected") else "no sign"


def _cell(text: str) -> str:
    """Text safe inside a Markdown table cell."""
    return text.replace("|", "\\|").replace("\n", " ")


def _code_span(text: str) -> str:
    return text.replace("`", "'")
