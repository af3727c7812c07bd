"""What a CI system sees of ``temper harden``: the exit code and one-line verdict of the gates,
the JUnit XML report, the Markdown summary (and the GitHub step summary), with ``--local`` and
``--server``; and the worked CI examples under deploy/ci/."""

from __future__ import annotations

import json
import re
import shlex
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from client_helpers import CliRunner
from fake_service import MASKING_CHECKS, FakeHardening, make_report, running

from client.ci_report import CiPaths, RunInfo, write_ci_outputs
from client.cli import build_parser
from client.exit_codes import ExitCode
from client.gates import Gate, GateConfig, evaluate

REPO_ROOT = Path(__file__).resolve().parents[2]
CI_EXAMPLES = REPO_ROOT / "deploy" / "ci"
ALL_GATES = GateConfig(
    min_robust_accuracy=0.80, max_clean_drop=0.02, fail_on_masking=True, require_improvement=True
)


@pytest.fixture(autouse=True)
def no_step_summary(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests that run inside GitHub Actions must not write to the real step summary."""
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)


def parse_junit(path: Path) -> ET.Element:
    root = ET.parse(path).getroot()
    assert root.tag == "testsuites"
    (suite,) = root.findall("testsuite")
    cases = suite.findall("testcase")
    failures = [c for c in cases if c.find("failure") is not None]
    for element in (root, suite):
        assert element.get("tests") == str(len(cases))
        assert element.get("failures") == str(len(failures))
        assert element.get("errors") == "0"
    for case in cases:
        assert case.get("classname") == "tempering.gates"
        assert len(case.findall("failure")) <= 1
    return suite


def last_line(text: str) -> str:
    return text.rstrip("\n").splitlines()[-1]


# ---------------------------------------------------------------------------------------------
# The files


def test_junit_has_one_test_case_per_gate_and_a_failure_with_the_message(tmp_path: Path) -> None:
    report = make_report(total=200, original=(194, 40), hardened=(180, 150))
    outcome = evaluate(report, ALL_GATES)
    paths = CiPaths.beside(tmp_path / "hardened.onnx")

    written = write_ci_outputs(report, outcome, RunInfo("model.onnx", "job-7", 12.5), paths, {})

    assert written.junit == tmp_path / "hardened.junit.xml"
    assert written.step_summary is None
    suite = parse_junit(written.junit)
    cases = {c.get("name"): c for c in suite.findall("testcase")}
    assert list(cases) == [g.value for g in Gate]
    robust = cases["min-robust-accuracy"].find("failure")
    drop = cases["max-clean-drop"].find("failure")
    assert robust is not None
    assert drop is not None
    assert robust.get("message") == (
        "robust accuracy 0.750 [0.686, 0.805] < 0.80 (min-robust-accuracy)"
    )
    assert robust.get("type") == "RobustnessGateFailed"
    assert drop.get("message") == "clean drop 0.070 > 0.02 (max-clean-drop)"
    assert cases["fail-on-masking"].find("failure") is None
    properties = {p.get("name"): p.get("value") for p in suite.iter("property")}
    assert properties["job_id"] == "job-7"
    assert properties["hardened.robust_accuracy"] == "0.75"
    assert suite.get("time") == "12.500"
    assert suite.findtext("system-out", "").startswith("GATE FAILED: ")


def test_junit_without_gates_is_an_empty_but_valid_suite(tmp_path: Path) -> None:
    report = make_report()
    paths = CiPaths.beside(tmp_path / "h.onnx")

    written = write_ci_outputs(report, evaluate(report, GateConfig()), RunInfo("m"), paths, {})

    assert parse_junit(written.junit).findall("testcase") == []


def test_the_summary_shows_scores_with_intervals_gates_and_masking_explanations(
    tmp_path: Path,
) -> None:
    report = make_report(hardened_fired=[MASKING_CHECKS[0]])
    outcome = evaluate(report, ALL_GATES)
    run = RunInfo("digits.onnx", "job-3", artifacts=[tmp_path / "hardened.onnx"])

    written = write_ci_outputs(report, outcome, run, CiPaths.beside(tmp_path / "h.onnx"), {})

    text = written.summary.read_text()
    assert text.startswith("## ❌ Tempering: robustness gate failed")
    assert f"`{outcome.line()}`" in text
    assert "| clean accuracy | 97.0% [93.6, 98.6] | 95.0% [91.0, 97.3] |" in text
    assert (
        "| **robust accuracy** (per-sample worst case over the cascade) | 20.0% [15.0, 26.1] |"
    ) in text
    assert "square (black-box)" in text
    assert "| `fail-on-masking` | no masking suspected |" in text
    assert "❌ **failed**" in text
    assert f"**hardened: {MASKING_CHECKS[0]}**" in text
    assert f"Why {MASKING_CHECKS[0]} points at masked gradients." in text
    assert "(job `job-3`)" in text
    assert "- `hardened.onnx`" in text


def test_the_summary_and_junit_state_the_verdict(tmp_path: Path) -> None:
    report = make_report(total=1000, original=(950, 460), hardened=(950, 400))
    outcome = evaluate(report, ALL_GATES)

    written = write_ci_outputs(
        report, outcome, RunInfo("m"), CiPaths.beside(tmp_path / "h.onnx"), {}
    )

    text = written.summary.read_text()
    verdict = report["verdict"]
    assert f"**Verdict:** {verdict['summary']}" in text
    assert f"- {verdict['details'][0]}" in text
    assert "| `require-improvement` | robustness improved beyond the 95% intervals |" in text
    suite = parse_junit(written.junit)
    properties = {p.get("name"): p.get("value") for p in suite.iter("property")}
    assert properties["verdict.robustness"] == "unchanged"
    assert properties["verdict"] == verdict["summary"]
    failure = suite.find("testcase[@name='require-improvement']/failure")
    assert failure is not None
    assert verdict["details"][0] in (failure.text or "")


def test_the_summary_of_a_report_without_a_verdict_has_no_verdict_line(tmp_path: Path) -> None:
    report = make_report(with_verdict=False)

    written = write_ci_outputs(
        report, evaluate(report, GateConfig()), RunInfo("m"), CiPaths.beside(tmp_path / "h"), {}
    )

    assert "Verdict" not in written.summary.read_text()
    assert "verdict" not in written.junit.read_text()


def test_the_summary_is_appended_to_the_github_step_summary(tmp_path: Path) -> None:
    step_summary = tmp_path / "step_summary.md"
    step_summary.write_text("earlier step\n")
    report = make_report()
    outcome = evaluate(report, ALL_GATES)
    environ = {"GITHUB_STEP_SUMMARY": str(step_summary)}

    for _ in range(2):
        written = write_ci_outputs(
            report, outcome, RunInfo("m"), CiPaths.beside(tmp_path / "h.onnx"), environ
        )

    assert written.step_summary == step_summary
    text = step_summary.read_text()
    assert text.startswith("earlier step\n## ✅ Tempering: robustness gates passed")
    assert text.count("robustness gates passed") == 2


# ---------------------------------------------------------------------------------------------
# temper harden --local


@pytest.fixture
def one_torch_thread() -> Iterator[None]:
    torch = pytest.importorskip("torch")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.slow
@pytest.mark.usefixtures("one_torch_thread")
def test_local_harden_with_a_failing_gate_exits_5_with_one_line_and_writes_the_reports(
    temper: CliRunner,
    digits_model: Path,
    digits_train: Path,
    digits_test: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    step_summary = tmp_path / "github_step_summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(step_summary))
    output = tmp_path / "out" / "hardened.onnx"

    result = temper(
        "harden", digits_model, "--data", digits_train, "--eval-data", digits_test,
        "--method", "pgd", "--eps", "0.1", "--epochs", "1", "--suite", "fast",
        "--eval-samples", "48", "--local", "-o", output,
        "--min-robust-accuracy", "0.99", "--max-clean-drop", "0.5", "--fail-on-masking",
        "--summary", tmp_path / "pr-comment.md",
    )  # fmt: skip

    assert result.code == ExitCode.GATE_FAILED, result.err
    line = last_line(result.err)
    assert re.fullmatch(
        r"GATE FAILED: robust accuracy 0\.\d{3} \[0\.\d{3}, 0\.\d{3}\] < 0\.99"
        r" \(min-robust-accuracy\)(; gradient masking suspected on the hardened model: .+"
        r" \(fail-on-masking\))? \[passed: max-clean-drop(, fail-on-masking)?\]",
        line,
    ), line
    report = json.loads((tmp_path / "out" / "hardened.report.json").read_text())
    assert report["hardened"]["clean_accuracy"]["total"] == 48
    suite = parse_junit(tmp_path / "out" / "hardened.junit.xml")
    assert [c.get("name") for c in suite.findall("testcase")] == [
        "min-robust-accuracy",
        "max-clean-drop",
        "fail-on-masking",
    ]
    failure = suite.find("testcase[@name='min-robust-accuracy']/failure")
    assert failure is not None
    assert failure.get("message", "") in line
    summary = (tmp_path / "pr-comment.md").read_text()
    assert not (tmp_path / "out" / "hardened.summary.md").exists()
    assert "| `min-robust-accuracy` | >= 0.99 (value) |" in summary
    assert step_summary.read_text() == summary + "\n"
    assert f"junit:          {tmp_path / 'out' / 'hardened.junit.xml'}" in result.out


# ---------------------------------------------------------------------------------------------
# temper harden --server


def server_args(address: str, model: Path, train: Path, output: Path) -> list[Any]:
    return [
        "harden", model, "--data", train, "--method", "pgd", "--eps", "0.1",
        "--server", address, "-o", output,
    ]  # fmt: skip


def test_server_harden_with_passing_gates_exits_0_and_says_so(
    temper: CliRunner, digits_model: Path, digits_train: Path, tmp_path: Path
) -> None:
    fake = FakeHardening(make_report(total=200, original=(194, 40), hardened=(192, 170)))
    with running(fake) as address:
        result = temper(
            *server_args(address, digits_model, digits_train, tmp_path / "hardened.onnx"),
            "--min-robust-accuracy", "0.8", "--max-clean-drop", "0.02", "--fail-on-masking",
            "--require-improvement", "--json",
        )  # fmt: skip

    assert result.code == 0, result.err
    assert last_line(result.err).startswith("GATES PASSED: robust accuracy 0.850 [0.794, 0.893]")
    document = json.loads(result.out)
    assert document["gates"]["passed"] is True
    assert [r["gate"] for r in document["gates"]["results"]] == [g.value for g in Gate]
    assert document["ci_outputs"]["junit"] == str(tmp_path / "hardened.junit.xml")
    suite = parse_junit(tmp_path / "hardened.junit.xml")
    assert suite.find("testcase/failure") is None
    properties = {p.get("name"): p.get("value") for p in suite.iter("property")}
    assert properties["job_id"] == "job-1"
    assert (tmp_path / "hardened.summary.md").read_text().startswith("## ✅")


def test_server_harden_with_a_failing_gate_exits_5(
    temper: CliRunner, digits_model: Path, digits_train: Path, tmp_path: Path
) -> None:
    # 0.800 [0.739, 0.850]: meets 0.78 by its value, not by its lower bound.
    fake = FakeHardening(
        make_report(total=200, hardened=(190, 160), hardened_fired=[MASKING_CHECKS[1]])
    )
    with running(fake) as address:
        result = temper(
            *server_args(address, digits_model, digits_train, tmp_path / "hardened.onnx"),
            "--min-robust-accuracy", "0.78", "--gate-on", "lower-bound", "--fail-on-masking",
        )  # fmt: skip

    assert result.code == ExitCode.GATE_FAILED, result.err
    assert last_line(result.err) == (
        "GATE FAILED: robust accuracy 0.800 [0.739, 0.850]: lower bound 0.739 < 0.78"
        f" (min-robust-accuracy); gradient masking suspected on the hardened model:"
        f" {MASKING_CHECKS[1]} (fail-on-masking)"
    )
    assert "clean accuracy" in result.out  # the table is still printed


def test_server_harden_requiring_improvement_exits_5_when_robustness_did_not_improve(
    temper: CliRunner, digits_model: Path, digits_train: Path, tmp_path: Path
) -> None:
    report = make_report(total=1000, original=(950, 460), hardened=(950, 400))
    with running(FakeHardening(report)) as address:
        result = temper(
            *server_args(address, digits_model, digits_train, tmp_path / "hardened.onnx"),
            "--require-improvement",
        )  # fmt: skip

    assert result.code == ExitCode.GATE_FAILED, result.err
    assert last_line(result.err) == (
        "GATE FAILED: hardening did not improve worst-case robustness (unchanged):"
        " 0.400 [0.370, 0.431] after, 0.460 [0.429, 0.491] before (require-improvement)"
    )
    assert f"verdict: {report['verdict']['summary']}" in result.out


def test_server_harden_json_carries_the_reports_verdict(
    temper: CliRunner, digits_model: Path, digits_train: Path, tmp_path: Path
) -> None:
    report = make_report(total=1000, original=(950, 460), hardened=(950, 400))
    with running(FakeHardening(report)) as address:
        result = temper(
            *server_args(address, digits_model, digits_train, tmp_path / "h.onnx"), "--json"
        )

    assert result.code == 0, result.err
    assert json.loads(result.out)["verdict"] == report["verdict"]


def test_server_harden_json_of_a_report_without_a_verdict_says_null(
    temper: CliRunner, digits_model: Path, digits_train: Path, tmp_path: Path
) -> None:
    with running(FakeHardening(make_report(with_verdict=False))) as address:
        result = temper(
            *server_args(address, digits_model, digits_train, tmp_path / "h.onnx"), "--json"
        )

    assert result.code == 0, result.err
    assert json.loads(result.out)["verdict"] is None


def test_without_gates_no_ci_files_and_no_gate_line(
    temper: CliRunner, digits_model: Path, digits_train: Path, tmp_path: Path
) -> None:
    with running(FakeHardening()) as address:
        result = temper(*server_args(address, digits_model, digits_train, tmp_path / "h.onnx"))

    assert result.code == 0, result.err
    assert "GATE" not in result.err
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "h.model_card.md",
        "h.onnx",
        "h.report.json",
    ]


def test_junit_flag_alone_writes_the_reports_without_gates(
    temper: CliRunner, digits_model: Path, digits_train: Path, tmp_path: Path
) -> None:
    with running(FakeHardening()) as address:
        result = temper(
            *server_args(address, digits_model, digits_train, tmp_path / "h.onnx"),
            "--junit", tmp_path / "reports" / "gates.xml",
        )  # fmt: skip

    assert result.code == 0, result.err
    assert parse_junit(tmp_path / "reports" / "gates.xml").findall("testcase") == []
    assert (tmp_path / "h.summary.md").is_file()


# ---------------------------------------------------------------------------------------------
# deploy/ci/


def github_commands(workflow: dict[str, Any]) -> list[str]:
    runs = [
        step["run"] for job in workflow["jobs"].values() for step in job["steps"] if "run" in step
    ]
    return [c for run in runs for c in shell_commands(run)]


def gitlab_commands(pipeline: dict[str, Any]) -> list[str]:
    jobs = [job for name, job in pipeline.items() if isinstance(job, dict) and "script" in job]
    return [c for job in jobs for line in job["script"] for c in shell_commands(line)]


def shell_commands(script: str) -> list[str]:
    """The script's commands, one per line once backslash continuations are joined."""
    joined = re.sub(r"\\\n\s*", " ", script)
    return [line.strip() for line in joined.splitlines() if line.strip()]


def temper_argv(command: str) -> list[str]:
    """``temper harden ...`` as argv: GitHub expressions and shell variables become words."""
    command = re.sub(r"\$\{\{[^}]*\}\}", "EXPRESSION", command)
    argv = shlex.split(command)
    assert argv[:2] == ["temper", "harden"], command
    return argv[1:]


@pytest.mark.parametrize(
    ("name", "commands"),
    [("github-actions.yml", github_commands), ("gitlab-ci.yml", gitlab_commands)],
)
def test_the_ci_examples_are_valid_yaml_and_call_temper_with_flags_it_accepts(
    name: str, commands: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    document = yaml.safe_load((CI_EXAMPLES / name).read_text())
    hardens = [c for c in commands(document) if c.startswith("temper harden")]
    assert len(hardens) == 1, hardens

    try:
        args = build_parser().parse_args(temper_argv(hardens[0]))
    except SystemExit:  # pragma: no cover - argparse explains on stderr
        pytest.fail(f"{name}: temper rejects the command line: {capsys.readouterr().err}")

    assert args.command == "harden"
    assert args.server == "$TEMPERING_SERVER"
    assert args.min_robust_accuracy == 0.80
    assert args.max_clean_drop == 0.02
    assert args.fail_on_masking
    assert args.timeout
    assert args.cancel_on_timeout
    assert args.api_key is None, "the API key travels in TEMPERING_API_KEY, not on argv"
    text = (CI_EXAMPLES / name).read_text()
    expected = CiPaths.beside(args.output)
    for path in (args.output, expected.junit, expected.summary):
        assert str(path).split("/")[-1] in text


def test_the_github_workflow_runs_on_releases_uploads_and_publishes_junit() -> None:
    workflow = yaml.safe_load((CI_EXAMPLES / "github-actions.yml").read_text())
    triggers = workflow.get("on", workflow.get(True))  # YAML 1.1 reads `on` as true
    assert "release" in triggers
    (job,) = workflow["jobs"].values()
    assert job["env"]["TEMPERING_API_KEY"] == "${{ secrets.TEMPERING_API_KEY }}"
    steps = {step.get("uses", "").split("@")[0]: step for step in job["steps"]}
    assert any(step.get("run") == "pip install ." for step in job["steps"])
    upload = steps["actions/upload-artifact"]
    assert upload["if"] == "always()"
    assert "hardened.summary.md" in upload["with"]["path"]
    assert steps["mikepenz/action-junit-report"]["with"]["report_paths"] == "hardened.junit.xml"


def test_the_gitlab_job_reports_junit_and_keeps_the_artifacts() -> None:
    pipeline = yaml.safe_load((CI_EXAMPLES / "gitlab-ci.yml").read_text())
    artifacts = pipeline["harden"]["artifacts"]
    assert artifacts["when"] == "always"
    assert artifacts["reports"]["junit"] == str(CiPaths.beside(Path("hardened.onnx")).junit)
    assert {"hardened.onnx", "hardened.report.json", "hardened.summary.md"} <= set(
        artifacts["paths"]
    )


def test_the_cli_doc_documents_exit_code_5_and_the_gate_flags() -> None:
    text = (REPO_ROOT / "docs" / "cli.md").read_text()
    assert "| 5 | a robustness gate failed" in text
    gates = ("--min-robust-accuracy", "--max-clean-drop", "--fail-on-masking", "--gate-on")
    for flag in (*gates, "--require-improvement"):
        assert f"`{flag}" in text
    for flag in ("--junit", "--summary", "--timeout", "--cancel-on-timeout"):
        assert f"`{flag}" in text
