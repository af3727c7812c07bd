"""``temper report``: a finished job's robustness report, as a table, as JSON, or as one
self-contained HTML page. Takes a job id (the report and plot come from the server) or the path
of a ``report.json`` (the plot is read from beside it, if there)."""

from __future__ import annotations

import argparse
import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from client import html_report, report_compare, scores_table
from client.commands.common import (
    UsageError,
    add_connection_arguments,
    connect,
    print_json,
    resolve_job_id,
)
from client.domain import ArtifactKind
from client.exit_codes import HELP as EXIT_CODES_HELP
from client.exit_codes import ExitCode
from client.layout import ENGINE_PLOT_NAME

REPORT_KIND = "tempering.robustness_report"


@dataclass(frozen=True)
class LoadedReport:
    report: dict[str, Any]
    plot_png: bytes | None
    job_id: str | None
    default_html: Path
    """Where ``--html`` writes without ``-o``."""


def register(subparsers: Any) -> None:
    report = subparsers.add_parser(
        "report",
        help="show a job's robustness report, write it as one HTML page, or compare two",
        description="Show the robustness report of a succeeded job (ID) or of a report.json"
        " written by a local run (PATH): the before/after table, the report as JSON (--json),"
        " or a self-contained HTML page with the plot embedded (--html).",
        epilog=EXIT_CODES_HELP,
    )
    report.add_argument(
        "targets",
        nargs="+",
        metavar="ID|PATH",
        help="a job id (or a unique prefix of one), or a report.json; two of them: compare"
        " the two side by side",
    )
    report.add_argument(
        "--html",
        action="store_true",
        help="write a self-contained HTML page (ID.report.html, or beside the report.json)",
    )
    report.add_argument(
        "-o", "--output", type=Path, metavar="PATH", help="where --html writes the page"
    )
    add_connection_arguments(report, top_level=False)
    report.set_defaults(handler=run_report)


def run_report(args: argparse.Namespace) -> int:
    if args.output is not None and not args.html:
        raise UsageError("-o/--output names the HTML page: pass it with --html")
    if len(args.targets) > 2:
        raise UsageError("give one report to show, or two to compare")
    if len(args.targets) == 2:
        return _compare(args)
    loaded = _load(args, args.targets[0])
    if args.html:
        path = _write_html(loaded, args.output or loaded.default_html)
        if args.json:
            print_json({"job_id": loaded.job_id, "html": str(path)})
        else:
            print(path)
    elif args.json:
        print_json(loaded.report)
    else:
        print(_table(loaded.report))
    return ExitCode.OK


def _compare(args: argparse.Namespace) -> int:
    if args.html:
        raise UsageError("--html writes one report's page; compare two without it")
    loaded = [_load(args, target) for target in args.targets]
    names = [report.job_id or target for report, target in zip(loaded, args.targets, strict=True)]
    if args.json:
        print_json(
            [
                {"target": name, **report_compare.headline(report.report)}
                for name, report in zip(names, loaded, strict=True)
            ]
        )
        return ExitCode.OK
    try:
        print(report_compare.render(names, [report.report for report in loaded]))
    except (KeyError, TypeError, ValueError) as error:
        raise UsageError(f"a report lacks what the comparison shows ({error!r})") from None
    return ExitCode.OK


def _load(args: argparse.Namespace, target: str) -> LoadedReport:
    path = Path(target)
    if path.is_file():
        return _load_local(path)
    if path.suffix == ".json" or path.parent != Path("."):
        raise UsageError(f"{target}: no such file")
    return _load_from_server(args, target)


def _load_local(path: Path) -> LoadedReport:
    plot = _plot_beside(path)
    return LoadedReport(
        report=_parse(path.read_bytes(), str(path)),
        plot_png=plot.read_bytes() if plot is not None else None,
        job_id=None,
        default_html=path.with_suffix(".html"),
    )


def _plot_beside(report_path: Path) -> Path | None:
    """``hardened.report.json`` -> ``hardened.robustness_curve.png`` (a local run's layout),
    else ``robustness_curve.png`` in the same folder (the engine's own)."""
    stem = report_path.name.removesuffix(".json").removesuffix(".report")
    for candidate in (
        report_path.with_name(f"{stem}.{ENGINE_PLOT_NAME}"),
        report_path.with_name(ENGINE_PLOT_NAME),
    ):
        if candidate.is_file():
            return candidate
    return None


def _load_from_server(args: argparse.Namespace, target: str) -> LoadedReport:
    with connect(args) as api, tempfile.TemporaryDirectory(prefix="temper-report-") as work:
        job_id = resolve_job_id(api, target)
        job = api.get(job_id)
        report_path = api.download(job_id, ArtifactKind.REPORT, Path(work) / "report.json")
        plot_png = None
        if any(output.kind is ArtifactKind.PLOT for output in job.outputs):
            plot_png = api.download(job_id, ArtifactKind.PLOT, Path(work) / "plot.png").read_bytes()
        report = _parse(report_path.read_bytes(), f"the report of job {job_id}")
    return LoadedReport(report, plot_png, job_id, Path(f"{job_id}.report.html"))


def _parse(data: bytes, where: str) -> dict[str, Any]:
    try:
        report = json.loads(data)
    except ValueError as error:
        raise UsageError(f"{where} is not JSON: {error}") from None
    if not isinstance(report, dict) or report.get("kind") != REPORT_KIND:
        raise UsageError(f"{where} is not a Tempering robustness report")
    return report


def _write_html(loaded: LoadedReport, path: Path) -> Path:
    try:
        page = html_report.render(loaded.report, loaded.plot_png, loaded.job_id)
    except (KeyError, TypeError, ValueError) as error:
        raise UsageError(f"the report lacks what the page shows ({error!r})") from None
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page, encoding="utf-8")
    return path


def _table(report: dict[str, Any]) -> str:
    try:
        return scores_table.render(report)
    except (KeyError, TypeError, ValueError) as error:
        raise UsageError(f"the report lacks what the table shows ({error!r})") from None
