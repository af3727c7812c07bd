"""The HTML page of a robustness report: self-contained, complete, and safe with user text."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path
from typing import Any

import pytest
from report_sample import MODEL_SHA, PNG_BYTES, TRAIN_SHA, accuracy, sample_report

from client.html_report import render

SCHEMA = Path(__file__).resolve().parents[2] / "workers" / "engine" / "report.schema.json"
IMAGES = re.compile(r'<img\s[^>]*src="data:image/png;base64,([A-Za-z0-9+/=]+)"')


def test_the_sample_report_follows_the_engines_schema() -> None:
    jsonschema = pytest.importorskip("jsonschema")
    jsonschema.validate(sample_report(), json.loads(SCHEMA.read_text()))


def test_page_loads_nothing_from_outside_and_runs_no_script() -> None:
    page = render(sample_report(), PNG_BYTES, "job-1")

    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", page, re.IGNORECASE)
    assert "href=" not in page
    assert "<script" not in page.lower()
    assert "<link" not in page.lower()
    assert "@import" not in page


def test_page_embeds_the_plot_once_as_a_png_data_uri() -> None:
    page = render(sample_report(), PNG_BYTES, "job-1")

    images = IMAGES.findall(page)
    assert len(images) == 1
    assert base64.b64decode(images[0]) == PNG_BYTES
    assert page.count("<img") == 1


def test_page_without_a_plot_has_no_image() -> None:
    assert "<img" not in render(sample_report(), None, "job-1")


def test_page_shows_method_threat_model_suite_and_sample_count() -> None:
    text = _text(render(sample_report(), None, "job-1"))

    assert "Method: trades, threat model: linf ball of radius 0.05" in text
    assert "evaluation suite: fast on 200 held-out samples (seed 7)" in text


def test_page_shows_the_headline_scores_with_their_intervals() -> None:
    text = _text(render(sample_report(), None, "job-1"))

    assert "clean accuracy 94.0%[90.0, 97.0] 91.0%[90.0, 97.0]" in text
    assert (
        "robust accuracy (per-sample worst case over the cascade)"
        " 10.5%[30.0, 45.0] 61.5%[30.0, 45.0]"
    ) in text


def test_page_shows_every_attack_before_and_after() -> None:
    text = _text(render(sample_report(), None, "job-1"))

    assert "fgsm white-box the fgsm attack 30.0%[31.0, 46.0] 70.0%[31.0, 46.0]" in text
    assert "square black-box the square attack 12.5%[31.0, 46.0] 64.0%[31.0, 46.0]" in text


def test_page_explains_a_masking_flag_that_fired() -> None:
    text = _text(render(sample_report(), None, "job-1"))

    assert (
        "original: cross-entropy-much-weaker-than-margin (cross-entropy attacks leave 60.0%"
        " robust, margin attacks 10.0%). This is the signature of a saturated softmax." in text
    )
    assert "hardened: no sign of gradient masking" in text


def test_page_shows_notes_curve_export_check_job_id_and_input_hashes() -> None:
    text = _text(render(sample_report(), None, "job-42"))

    assert "trained for one epoch only" in text
    assert "0.05 10.5%[30.0, 45.0] 61.5%[30.0, 45.0]" in text
    assert "ONNX (opset 17) passed: onnxruntime matches PyTorch within 5.70e-06" in text
    assert "job id job-42" in text
    assert f"model sha256 {MODEL_SHA}" in text
    assert f"train data sha256 {TRAIN_SHA}" in text


def test_page_of_a_local_run_says_it_has_no_job() -> None:
    text = _text(render(sample_report(), None, None))

    assert "job id none (a local run)" in text


def test_text_from_the_report_is_escaped() -> None:
    report = sample_report()
    report["model_notes"] = ['<script>alert("notes")</script>']
    report["original"]["attacks"][0]["name"] = "<img src=x onerror=alert(1)>"
    report["hardened"]["attacks"][0]["name"] = "<img src=x onerror=alert(1)>"
    report["inputs"]["eval_source"] = '"><script>alert("inputs")</script>'
    report["training"]["method"] = "<b>pgd</b>"

    page = render(report, PNG_BYTES, "<job>")

    assert "<script" not in page.lower()
    assert "<b>pgd" not in page
    assert "<job>" not in page
    assert page.count("<img") == 1
    assert "&lt;script&gt;alert(&quot;notes&quot;)&lt;/script&gt;" in page
    assert "&lt;img src=x onerror=alert(1)&gt;" in page


def test_page_states_the_verdict_flagged_when_robustness_did_not_improve() -> None:
    report = sample_report()
    report["verdict"] = {
        "robustness": "unchanged",
        "clean": "dropped",
        "improved": False,
        "summary": "Hardening did not improve worst-case robustness & <b>clean</b> fell.",
        "details": ["Clean accuracy fell from 94.5% to 78.8% <i>too far</i>."],
    }

    page = render(report, None, "job-1")

    assert (
        '<p class="flag"><strong>Hardening did not improve worst-case robustness &amp;'
        " &lt;b&gt;clean&lt;/b&gt; fell.</strong></p>"
    ) in page
    assert "<li>Clean accuracy fell from 94.5% to 78.8% &lt;i&gt;too far&lt;/i&gt;.</li>" in page
    assert "<b>clean" not in page


def test_page_states_an_improvement_without_a_flag() -> None:
    report = sample_report()
    report["verdict"].update(robustness="improved", clean="kept", improved=True)

    assert '<p class="ok"><strong>' in render(report, None, "job-1")


def test_page_of_a_report_without_a_verdict_has_no_verdict_section() -> None:
    report = sample_report()
    del report["verdict"]

    assert "Verdict" not in render(report, None, "job-1")


def test_page_forbids_scripts_through_its_content_security_policy() -> None:
    page = render(sample_report(), PNG_BYTES, "job-1")

    policy = re.search(r'http-equiv="Content-Security-Policy" content="([^"]+)"', page)
    assert policy is not None
    assert "default-src 'none'" in policy.group(1)
    assert "script-src" not in policy.group(1)


def _tabular_section(missed: int) -> dict[str, Any]:
    def model(missed: int) -> dict[str, Any]:
        return {
            "attacks": [],
            "exhaustive": {
                "summary": "applied to 12 samples, exact for 12, skipped 0; 9,000 points tried",
                "missed_by_attacks": missed,
                "headline_exact": True,
            },
            "unconstrained": {
                "label": "UNCONSTRAINED SANITY LINE",
                "robust_accuracy": accuracy(3, 200, 0.01, 0.04),
            },
        }

    return {
        "schema": {"features": [], "default_budget": 0.1},
        "original": model(0),
        "hardened": model(missed),
    }


def test_page_flags_samples_the_exhaustive_step_broke_that_the_attacks_missed() -> None:
    report = {**sample_report(), "tabular": _tabular_section(missed=2)}

    page = render(report, None, "job-1")

    text = _text(page)
    assert (
        "original: applied to 12 samples, exact for 12, skipped 0; 9,000 points tried;"
        " missed by the attacks: 0; the headline is exact" in text
    )
    assert (
        '<span class="flag">2 (the attacks alone overstated robustness)</span>; the headline'
        " is exact" in page
    )


def _text(page: str) -> str:
    """The page's visible text: cells, items and blocks apart, inline tags dropped, runs of
    whitespace made single spaces."""
    body = page.split("<body>", 1)[1]
    spaced = re.sub(r"</(td|th|li|dt|dd|p|h\d)>", " ", body)
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", "", spaced)).strip()
