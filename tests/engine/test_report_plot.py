"""The report's picture: a PNG of a fixed size, the same bytes for the same report, and drawn
from both the curve and the per-attack scores."""

from __future__ import annotations

import copy
import struct
from pathlib import Path
from typing import Any

from workers.engine.report import PLOT_DPI, PLOT_SIZE_INCHES, plot_curve


def _accuracy(value: float) -> dict[str, Any]:
    return {"value": value, "low": max(0.0, value - 0.05), "high": min(1.0, value + 0.05)}


def _scores(robust: float, attacks: dict[str, float]) -> dict[str, Any]:
    return {
        "robust_accuracy": _accuracy(robust),
        "attacks": [
            {"name": name, "robust_accuracy": _accuracy(value)} for name, value in attacks.items()
        ],
        "curve": [
            {"eps": eps, "robust_accuracy": _accuracy(value)}
            for eps, value in ((0.0, 0.95), (0.05, robust), (0.1, 0.1), (0.2, 0.0))
        ],
    }


REPORT: dict[str, Any] = {
    "threat_model": {"eps": 0.05, "norm": "linf"},
    "original": _scores(0.2, {"fgsm": 0.4, "pgd-ce": 0.25, "apgd-t": 0.2, "square": 0.3}),
    "hardened": _scores(0.6, {"fgsm": 0.7, "pgd-ce": 0.62, "apgd-t": 0.6, "square": 0.65}),
}


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def test_plot_is_a_png_of_the_size_of_its_two_panels(tmp_path: Path) -> None:
    plot_curve(REPORT, tmp_path / "plot.png")

    width, height = PLOT_SIZE_INCHES
    assert _png_size((tmp_path / "plot.png").read_bytes()) == (
        round(width * PLOT_DPI),
        round(height * PLOT_DPI),
    )


def test_same_report_gives_the_same_bytes(tmp_path: Path) -> None:
    plot_curve(REPORT, tmp_path / "a.png")
    plot_curve(copy.deepcopy(REPORT), tmp_path / "b.png")

    assert (tmp_path / "a.png").read_bytes() == (tmp_path / "b.png").read_bytes()


def test_plot_carries_no_software_or_time_stamp(tmp_path: Path) -> None:
    plot_curve(REPORT, tmp_path / "plot.png")

    data = (tmp_path / "plot.png").read_bytes()
    assert b"matplotlib" not in data.lower()
    assert b"tIME" not in data


def test_plot_draws_the_per_attack_scores(tmp_path: Path) -> None:
    changed = copy.deepcopy(REPORT)
    changed["hardened"]["attacks"][0]["robust_accuracy"] = _accuracy(0.95)

    plot_curve(REPORT, tmp_path / "a.png")
    plot_curve(changed, tmp_path / "b.png")

    assert (tmp_path / "a.png").read_bytes() != (tmp_path / "b.png").read_bytes()


def test_plot_draws_the_worst_case_over_the_suite(tmp_path: Path) -> None:
    changed = copy.deepcopy(REPORT)
    changed["original"]["robust_accuracy"] = _accuracy(0.05)

    plot_curve(REPORT, tmp_path / "a.png")
    plot_curve(changed, tmp_path / "b.png")

    assert (tmp_path / "a.png").read_bytes() != (tmp_path / "b.png").read_bytes()


def test_a_value_a_hair_outside_its_interval_still_draws(tmp_path: Path) -> None:
    report = copy.deepcopy(REPORT)
    report["hardened"]["attacks"][0]["robust_accuracy"] = {
        "value": 1.0,
        "low": 0.98,
        "high": 0.9999999999999999,
    }

    plot_curve(report, tmp_path / "plot.png")

    assert (tmp_path / "plot.png").stat().st_size > 0
