"""``temper jobs``, ``watch``, ``cancel``, ``delete`` and ``download``: the jobs on a server."""

from __future__ import annotations

import argparse
import dataclasses
import itertools
from pathlib import Path
from typing import Any

from client.commands.common import (
    JOB_ID_CHARS,
    UsageError,
    add_connection_arguments,
    connect,
    info,
    label,
    labels_dict,
    positive_int,
    print_json,
    print_json_line,
    resolve_job_id,
)
from client.domain import ArtifactKind, Job, JobState
from client.exit_codes import HELP as EXIT_CODES_HELP
from client.exit_codes import ExitCode
from client.job_format import JOB_COLUMNS, event_json, job_json, job_row, table
from client.layout import OutputLayout, plot_beside
from client.model_bundle_out import bundle_folder
from client.progress_display import choose_display


def register(subparsers: Any) -> None:
    common = {"epilog": EXIT_CODES_HELP}

    jobs = subparsers.add_parser("jobs", help="list jobs, newest first", **common)
    jobs.add_argument(
        "--state",
        type=str.upper,
        choices=[s.value for s in JobState],
        action="append",
        help="only jobs in this state (repeat for several)",
    )
    jobs.add_argument(
        "--label",
        type=label,
        action="append",
        metavar="KEY=VALUE",
        help="only jobs with this label (repeat: all must match)",
    )
    jobs.add_argument("--limit", type=positive_int, default=50, help="at most this many")
    add_connection_arguments(jobs, top_level=False)
    jobs.set_defaults(handler=run_jobs)

    watch = subparsers.add_parser(
        "watch", help="follow a job until it ends (exit 1 if it fails)", **common
    )
    watch.add_argument("job_id", metavar="ID", help="a job id, or a unique prefix of one")
    add_connection_arguments(watch, top_level=False)
    watch.set_defaults(handler=run_watch)

    cancel = subparsers.add_parser("cancel", help="cancel a job", **common)
    cancel.add_argument("job_id", metavar="ID", help="a job id, or a unique prefix of one")
    add_connection_arguments(cancel, top_level=False)
    cancel.set_defaults(handler=run_cancel)

    delete = subparsers.add_parser(
        "delete",
        help="delete a finished job and its artifacts (its uploads stay)",
        description="Delete a finished job and the artifacts only it refers to. Its uploads"
        " stay: other jobs may use them. A queued or running job is refused unless --cancel."
        " Deleting a job twice is not an error.",
        **common,
    )
    delete.add_argument("job_id", metavar="ID", help="a job id, or a unique prefix of one")
    delete.add_argument(
        "--cancel",
        action="store_true",
        help="cancel a queued or running job first, and delete it once it stopped",
    )
    add_connection_arguments(delete, top_level=False)
    delete.set_defaults(handler=run_delete)

    download = subparsers.add_parser(
        "download", help="download an output of a succeeded job", **common
    )
    download.add_argument("job_id", metavar="ID", help="a job id, or a unique prefix of one")
    download.add_argument(
        "--kind",
        choices=[k.value for k in ArtifactKind],
        default=ArtifactKind.MODEL.value,
        help="model (hardened ONNX, default; a text model's tokenizer or a tabular model's"
        " feature schema is written beside it), report (JSON), card (Markdown; its plot is"
        " written beside it), plot (PNG), tokenizer (a text model's tokenizer.json) or schema"
        " (a tabular model's feature schema)",
    )
    download.add_argument(
        "-o",
        "--output",
        type=Path,
        metavar="PATH",
        help="where to write it (a model that comes as a bundle, its weights over the server's"
        " inline limit, is unpacked into the folder of that name without .onnx; default: in the"
        " current folder, ID.onnx, ID.report.json,"
        " ID.model_card.md, ID.robustness_curve.png, ID.tokenizer.json or"
        " ID.feature_schema.json)",
    )
    download.add_argument(
        "--force", action="store_true", help="replace a file already at the default name"
    )
    add_connection_arguments(download, top_level=False)
    download.set_defaults(handler=run_download)


def run_jobs(args: argparse.Namespace) -> int:
    with connect(args) as api:
        found = list(
            itertools.islice(
                api.iter_jobs(args.state, labels_dict(args.label), page_size=min(args.limit, 500)),
                args.limit,
            )
        )
    if args.json:
        print_json([job_json(job) for job in found])
    elif found:
        print(table([job_row(job) for job in found], JOB_COLUMNS))
    else:
        info("no jobs")
    return ExitCode.OK


def run_watch(args: argparse.Namespace) -> int:
    display = choose_display(quiet=args.json)
    final_state: JobState | None = None
    reason = ""
    with connect(args) as api:
        args.job_id = resolve_job_id(api, args.job_id)
        try:
            for event in api.watch(args.job_id):
                if args.json:
                    print_json_line(event_json(event))
                display.show(event)
                if event.job is not None:
                    final_state, reason = event.job.state, event.job.reason
        finally:
            display.close()
        if final_state is None or not final_state.is_terminal:
            job = api.get(args.job_id)
            final_state, reason = job.state, job.reason
    if not args.json:
        print(f"{args.job_id}: {final_state.value}" + (f" ({reason})" if reason else ""))
    return ExitCode.OK if final_state is JobState.SUCCEEDED else ExitCode.JOB_FAILED


def run_cancel(args: argparse.Namespace) -> int:
    with connect(args) as api:
        job = api.cancel(resolve_job_id(api, args.job_id))
    if args.json:
        print_json(job_json(job))
    else:
        pending = " (stopping)" if job.cancel_requested and not job.state.is_terminal else ""
        print(f"{job.id}: {job.state.value}{pending}")
    return ExitCode.OK


def run_delete(args: argparse.Namespace) -> int:
    with connect(args) as api:
        whole = len(args.job_id.strip()) >= JOB_ID_CHARS
        job_id = args.job_id.strip().lower() if whole else resolve_job_id(api, args.job_id)
        deletion = api.delete(job_id, cancel=args.cancel)
    if args.json:
        print_json(dataclasses.asdict(deletion))
    elif deletion.already_deleted:
        print(f"{deletion.job_id}: already deleted")
    else:
        size = human_bytes(deletion.bytes_removed)
        print(
            f"{deletion.job_id}: deleted ({deletion.artifacts_removed} artifact(s), {size} freed)"
        )
    return ExitCode.OK


def run_download(args: argparse.Namespace) -> int:
    plot: Path | None = None
    tokenizer: Path | None = None
    schema: Path | None = None
    with connect(args) as api:
        args.job_id = resolve_job_id(api, args.job_id)
        output = args.output or default_download_path(args.job_id, ArtifactKind(args.kind))
        if args.output is None and not args.force:
            refuse_to_overwrite(output, ArtifactKind(args.kind))
            if args.kind == ArtifactKind.MODEL and _model_is_bundle(api.get(args.job_id)):
                refuse_to_overwrite(bundle_folder(output), ArtifactKind.MODEL)
        if args.kind == ArtifactKind.CARD:
            path, plot = api.download_card(args.job_id, output)
        else:
            path = api.download(args.job_id, ArtifactKind(args.kind), output)
        if args.kind == ArtifactKind.MODEL:
            job = api.get(args.job_id)
            if _has(job, ArtifactKind.TOKENIZER):
                beside = OutputLayout.beside(path).tokenizer
                tokenizer = api.download(args.job_id, ArtifactKind.TOKENIZER, beside)
            if _has(job, ArtifactKind.SCHEMA):
                beside = OutputLayout.beside(path).schema
                schema = api.download(args.job_id, ArtifactKind.SCHEMA, beside)
    if args.json:
        written: dict[str, str | None] = {
            "job_id": args.job_id,
            "kind": args.kind,
            "path": str(path),
        }
        if args.kind == ArtifactKind.CARD:
            written["plot"] = str(plot) if plot else None
        if tokenizer is not None:
            written["tokenizer"] = str(tokenizer)
        if schema is not None:
            written["schema"] = str(schema)
        print_json(written)
    else:
        print(path)
        for extra in (plot, tokenizer, schema):
            if extra is not None:
                print(extra)
    return ExitCode.OK


def _model_is_bundle(job: Job) -> bool:
    """Whether the hardened model comes as a bundle, unpacked into a folder of its own
    (weights over the server's inline limit; docs/model-bundles.md)."""
    return any(o.kind is ArtifactKind.MODEL and o.bundle for o in job.outputs)


def _has(job: Job, kind: ArtifactKind) -> bool:
    """Whether the job returned ``kind``: a text model's tokenizer (its model is useless
    without the tokenizer that encodes its ids), a tabular model's feature schema (what its
    inputs are and what an attacker may change)."""
    return any(output.kind is kind for output in job.outputs)


def human_bytes(count: int) -> str:
    if count < 1024:
        return f"{count} B"
    size = count / 1024
    for unit in ("KiB", "MiB"):
        if size < 1024:
            return f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GiB"


def default_download_path(job_id: str, kind: ArtifactKind) -> Path:
    """Named as ``temper harden`` names its outputs, with the job id as the stem."""
    return OutputLayout.beside(Path(f"{job_id}.onnx")).path_for(kind)


def refuse_to_overwrite(path: Path, kind: ArtifactKind) -> None:
    taken = [p for p in (path, plot_beside(path) if kind is ArtifactKind.CARD else None) if p]
    for existing in taken:
        if existing.exists():
            raise UsageError(
                f"{existing} already exists: pass --force to replace it, or -o PATH to write"
                " elsewhere"
            )
