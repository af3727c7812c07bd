"""The plot and the report of a job a real server and worker finished (child processes, as for
``temper demo``): ``temper harden`` and ``temper download`` write the plot beside the card,
``temper download --kind plot`` fetches it, ``temper report ID`` shows the report."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from client_helpers import ASSETS, CliRunner

from client import HardeningClient, HardeningParams, Method
from client.domain import EvaluationSuite, HardeningOutcome
from client.local_stack import LocalStack

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PARAMS = HardeningParams(
    method=Method.FGSM, eps=0.1, epochs=1, suite=EvaluationSuite.FAST, eval_samples=100
)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    pytest.importorskip("service.ops.cli")
    with LocalStack(tmp_path_factory.mktemp("stack")) as running:
        running.wait_until_serving()
        yield running.target


@pytest.fixture(scope="module")
def finished(stack: str, tmp_path_factory: pytest.TempPathFactory) -> HardeningOutcome:
    """One job, hardened through the SDK as ``temper harden --server`` does."""
    output = tmp_path_factory.mktemp("harden") / "hardened.onnx"
    with HardeningClient(stack, timeout=30) as api:
        return api.harden(
            ASSETS / "digits_cnn.onnx",
            ASSETS / "digits_train.npz",
            PARAMS,
            output=output,
            eval_data_path=ASSETS / "digits_test.npz",
            timeout=600,
        )


def job_id(outcome: HardeningOutcome) -> str:
    assert outcome.job is not None
    return outcome.job.id


def test_harden_writes_the_plot_beside_the_card_and_the_card_links_it(
    finished: HardeningOutcome,
) -> None:
    assert finished.plot_path == finished.model_path.with_name("hardened.robustness_curve.png")
    assert finished.plot_path.read_bytes().startswith(PNG_SIGNATURE)
    assert "](hardened.robustness_curve.png)" in finished.card_path.read_text()


def test_download_kind_plot_writes_the_png_the_job_produced(
    temper: CliRunner, stack: str, finished: HardeningOutcome, tmp_path: Path
) -> None:
    result = temper("download", job_id(finished), "--server", stack, "--kind", "plot", "-o",
                    tmp_path / "curve.png")  # fmt: skip

    assert result.code == 0, result.err
    assert finished.plot_path is not None
    assert (tmp_path / "curve.png").read_bytes() == finished.plot_path.read_bytes()


def test_download_kind_card_writes_the_plot_its_image_link_names(
    temper: CliRunner, stack: str, finished: HardeningOutcome, tmp_path: Path
) -> None:
    card = tmp_path / "card.md"

    result = temper("download", job_id(finished), "--server", stack, "--kind", "card", "-o",
                    card, "--json")  # fmt: skip

    assert result.code == 0, result.err
    (link,) = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", card.read_text())
    assert (card.parent / link).read_bytes().startswith(PNG_SIGNATURE)
    assert json.loads(result.out)["plot"] == str(card.parent / link)


def test_report_html_embeds_the_jobs_plot_and_names_the_job(
    temper: CliRunner, stack: str, finished: HardeningOutcome, tmp_path: Path
) -> None:
    page_path = tmp_path / "report.html"

    result = temper("report", job_id(finished), "--server", stack, "--html", "-o", page_path)

    assert result.code == 0, result.err
    page = page_path.read_text()
    (image,) = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    assert finished.plot_path is not None
    assert base64.b64decode(image) == finished.plot_path.read_bytes()
    assert job_id(finished) in page
    assert finished.report["inputs"]["model_sha256"] in page


def test_report_json_prints_the_jobs_report(
    temper: CliRunner, stack: str, finished: HardeningOutcome
) -> None:
    result = temper("report", job_id(finished), "--server", stack, "--json")

    assert result.code == 0, result.err
    assert json.loads(result.out) == finished.report


def test_report_prints_the_before_and_after_table(
    temper: CliRunner, stack: str, finished: HardeningOutcome
) -> None:
    result = temper("report", job_id(finished), "--server", stack)

    assert result.code == 0, result.err
    assert "Before and after fgsm hardening" in result.out
    assert "robust accuracy (worst)" in result.out


def test_report_of_an_unknown_job_exits_4(temper: CliRunner, stack: str) -> None:
    result = temper("report", "no-such-job", "--server", stack, "--html")

    assert result.code == 4
