"""The CI side of ``temper harden``: robustness gates, the JUnit and Markdown outputs, and the
overall ``--timeout``.

``temper harden ... --min-robust-accuracy 0.80 --max-clean-drop 0.02 --fail-on-masking
--require-improvement`` holds the hardened model to those thresholds (see :mod:`client.gates`),
writes ``STEM.junit.xml`` and ``STEM.summary.md`` beside the model (:mod:`client.ci_report`),
prints one ``GATE FAILED: ...`` or ``GATES PASSED: ...`` line on stderr and exits 5 when a gate
failed.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from client import gates
from client.ci_report import CiOutputs, CiPaths, RunInfo, write_ci_outputs
from client.commands.common import info, positive_float
from client.domain import HardeningOutcome
from client.errors import ClientError, DeadlineExceeded
from client.exit_codes import ExitCode
from client.retry import Deadline
from client.sdk import HardeningClient

CANCEL_GRACE_SECONDS = 20.0
"""How long ``--cancel-on-timeout`` may take to cancel the job once the deadline passed."""

GATES_DESCRIPTION = """\
Hold the hardened model to thresholds; exit 5 when one fails, with one line saying which
(GATE FAILED: ... or GATES PASSED: ... on stderr). Accuracies are fractions (0.80, not 80).
With any gate (or --junit/--summary), STEM.junit.xml and STEM.summary.md are written beside
the model, and the summary is appended to $GITHUB_STEP_SUMMARY when that is set."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("CI gates and reports", GATES_DESCRIPTION)
    group.add_argument(
        "--min-robust-accuracy",
        type=fraction,
        metavar="FRACTION",
        help="fail unless the hardened model's worst-case robust accuracy is at least this",
    )
    group.add_argument(
        "--max-clean-drop",
        type=fraction,
        metavar="FRACTION",
        help="fail if original minus hardened clean accuracy is more than this",
    )
    group.add_argument(
        "--fail-on-masking",
        action="store_true",
        help="fail if gradient masking is suspected on the hardened model",
    )
    group.add_argument(
        "--require-improvement",
        action="store_true",
        help="fail unless the report's verdict says hardening improved worst-case robust"
        " accuracy beyond the 95%% intervals",
    )
    group.add_argument(
        "--gate-on",
        choices=[g.value for g in gates.GateOn],
        default=gates.GateOn.VALUE.value,
        help="what --min-robust-accuracy compares: the point estimate (value, default) or the"
        " lower end of its 95%% interval (lower-bound, stricter)",
    )
    group.add_argument(
        "--junit", type=Path, metavar="PATH", help="JUnit XML report (default STEM.junit.xml)"
    )
    group.add_argument(
        "--summary", type=Path, metavar="PATH", help="Markdown summary (default STEM.summary.md)"
    )
    time = parser.add_argument_group("time")
    time.add_argument(
        "--timeout",
        type=positive_float,
        metavar="SECONDS",
        help="give up after this long in all, uploads to downloads (exit 3)",
    )
    time.add_argument(
        "--cancel-on-timeout",
        action="store_true",
        help="with --server: cancel the job when --timeout passes (default: it goes on)",
    )


def fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a fraction, got {text!r}") from None
    if not 0.0 <= value <= 1.0:
        hint = f" (for {text}%, write {value / 100:g})" if 1.0 < value <= 100.0 else ""
        raise argparse.ArgumentTypeError(f"must be a fraction between 0 and 1, got {text}{hint}")
    return value


def gate_config(args: argparse.Namespace) -> gates.GateConfig:
    return gates.GateConfig(
        min_robust_accuracy=args.min_robust_accuracy,
        max_clean_drop=args.max_clean_drop,
        fail_on_masking=args.fail_on_masking,
        gate_on=gates.GateOn(args.gate_on),
        require_improvement=args.require_improvement,
    )


def deadline_of(args: argparse.Namespace) -> Deadline | None:
    return Deadline.after(args.timeout) if args.timeout else None


@contextmanager
def server_deadline(
    api: HardeningClient, args: argparse.Namespace, submitted: list[str]
) -> Iterator[None]:
    """Bound the server run by ``--timeout``; when it passes, cancel the job if asked, and
    leave with a :class:`DeadlineExceeded` that says what became of the job (exit 3)."""
    if not args.timeout:
        yield
        return
    try:
        with api.deadline(args.timeout):
            yield
    except DeadlineExceeded as error:
        raise DeadlineExceeded(_timeout_message(api, args, submitted, error), error.code) from error


def _timeout_message(
    api: HardeningClient, args: argparse.Namespace, submitted: list[str], error: ClientError
) -> str:
    message = f"--timeout {args.timeout:g} s: {error}"
    if not submitted:
        return message + "; no job was submitted"
    job_id = submitted[0]
    if not args.cancel_on_timeout:
        return (
            f"{message}; job {job_id} goes on on the server. Follow it with"
            f" `temper watch {job_id}`, stop it with `temper cancel {job_id}`"
            " (or pass --cancel-on-timeout)"
        )
    try:
        with api.deadline(CANCEL_GRACE_SECONDS):
            job = api.get(job_id)
            if job.state.is_terminal:
                return f"{message}; job {job_id} had already ended {job.state.value}"
            api.cancel(job_id)
    except ClientError as cancel_error:
        return f"{message}; cancelling job {job_id} failed too: {cancel_error}"
    return f"{message}; job {job_id} cancelled (--cancel-on-timeout)"


@dataclass(frozen=True)
class Verdict:
    outcome: gates.GateOutcome
    outputs: CiOutputs | None

    @property
    def exit_code(self) -> ExitCode:
        return ExitCode.OK if self.outcome.passed else ExitCode.GATE_FAILED

    def to_json(self) -> dict[str, Any]:
        return {
            "gates": self.outcome.to_json(),
            "ci_outputs": None
            if self.outputs is None
            else {
                "junit": str(self.outputs.junit),
                "summary": str(self.outputs.summary),
                "step_summary": str(self.outputs.step_summary)
                if self.outputs.step_summary
                else None,
            },
        }


def conclude(
    args: argparse.Namespace,
    outcome: HardeningOutcome,
    config: gates.GateConfig,
    duration_seconds: float,
) -> Verdict:
    """Hold the report to the gates and write the CI outputs when any gate, --junit or
    --summary was given."""
    result = gates.evaluate(outcome.report, config)
    if not (config.any or args.junit or args.summary):
        return Verdict(result, None)
    artifacts = [outcome.model_path, outcome.report_path, outcome.card_path]
    if outcome.plot_path:
        artifacts.append(outcome.plot_path)
    run = RunInfo(
        model_name=args.model.name,
        job_id=outcome.job.id if outcome.job is not None else None,
        duration_seconds=duration_seconds,
        artifacts=artifacts,
    )
    paths = CiPaths.beside(outcome.model_path, junit=args.junit, summary=args.summary)
    return Verdict(result, write_ci_outputs(outcome.report, result, run, paths))


def announce(verdict: Verdict) -> int:
    """The one line a CI log shows, last, on stderr; the exit code (0, or 5 if a gate failed)."""
    if verdict.outcome.results:
        sys.stdout.flush()
        info(verdict.outcome.line())
    return int(verdict.exit_code)
