"""The before/after table states the engine's verdict in words, and a report from an older
server, without one, still renders."""

from __future__ import annotations

from fake_service import make_report

from client.scores_table import render


def test_the_table_states_the_verdict_and_its_sentences_in_words() -> None:
    report = make_report(total=1000, original=(945, 460), hardened=(788, 400))

    lines = render(report).splitlines()

    start = lines.index(
        "verdict: Hardening did not improve worst-case robustness beyond the confidence"
        " intervals, and clean accuracy fell by more than the intervals allow."
    )
    assert lines[start + 1 : start + 3] == [
        "  Hardening did not improve worst-case robustness beyond the confidence intervals:"
        " 40.0% [37.0, 43.1] after, 46.0% [42.9, 49.1] before.",
        "  Clean accuracy fell from 94.5% [92.9, 95.8] to 78.8% [76.2, 81.2], more than the"
        " confidence intervals allow.",
    ]


def test_the_table_of_a_report_without_a_verdict_shows_none() -> None:
    table = render(make_report(with_verdict=False))

    assert "verdict" not in table
    assert "robust accuracy (worst)" in table


def test_the_table_ends_with_the_notes_on_the_inputs() -> None:
    report = make_report()
    note = "the training data's x is uint8: it was divided by 255"
    report.setdefault("inputs", {})["notes"] = [note]

    lines = render(report).splitlines()
    at = lines.index(f"note: {note}")
    assert lines[at - 1] == ""
    assert "note:" not in render(make_report())
