"""A small robustness report shaped as the engine writes it (checked against the engine's JSON
schema in test_html_report.py), for the client tests that render reports without torch."""

from __future__ import annotations

import copy
from typing import Any

from workers.engine.verdict import verdict

PNG_BYTES = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4
"""Stands in for the plot: the page embeds bytes, it does not read them."""

MODEL_SHA = "a1" * 32
TRAIN_SHA = "b2" * 32


def accuracy(correct: int, total: int, low: float, high: float) -> dict[str, Any]:
    return {"correct": correct, "total": total, "value": correct / total, "low": low, "high": high}


def _scores(clean: int, robust: int, attacks: dict[str, int], fired: bool) -> dict[str, Any]:
    return {
        "clean_accuracy": accuracy(clean, 200, 0.9, 0.97),
        "robust_accuracy": accuracy(robust, 200, 0.3, 0.45),
        "attacks": [
            {
                "name": name,
                "description": f"the {name} attack",
                "white_box": name != "square",
                "robust_accuracy": accuracy(correct, 200, 0.31, 0.46),
            }
            for name, correct in attacks.items()
        ],
        "curve": [
            {"eps": 0.0, "robust_accuracy": accuracy(clean, 200, 0.9, 0.97)},
            {"eps": 0.05, "robust_accuracy": accuracy(robust, 200, 0.3, 0.45)},
        ],
        "masking": [
            {
                "check": "cross-entropy-much-weaker-than-margin",
                "detail": "cross-entropy attacks leave 60.0% robust, margin attacks 10.0%",
                "explanation": "This is the signature of a saturated softmax.",
                "fired": fired,
            }
        ],
        "gradient_masking_suspected": fired,
    }


_REPORT: dict[str, Any] = {
    "schema_version": "1.0",
    "kind": "tempering.robustness_report",
    "request": {"seed": 7, "threat": {"eps": 0.05, "norm": "linf"}},
    "inputs": {
        "model_format": "onnx",
        "model_sha256": MODEL_SHA,
        "train_data_sha256": TRAIN_SHA,
        "eval_data_sha256": None,
        "eval_source": "holdout_split",
        "input_shape": [1, 8, 8],
        "num_classes": 10,
        "train_samples": 800,
        "validation_samples": 200,
    },
    "threat_model": {"eps": 0.05, "norm": "linf", "lower": [0.0], "upper": [1.0]},
    "evaluation": {
        "suite": "fast",
        "samples": 200,
        "batch_size": 500,
        "curve_points": 2,
        "seed": 7,
        "attacks": ["fgsm", "pgd-ce", "square"],
        "headline": (
            "per-sample worst case over the cascade; over every attack on the per-attack subset"
        ),
        "interval": "95% Wilson score",
    },
    "model_notes": [],
    "original": _scores(188, 21, {"fgsm": 60, "pgd-ce": 30, "square": 25}, fired=True),
    "hardened": _scores(182, 123, {"fgsm": 140, "pgd-ce": 130, "square": 128}, fired=False),
    "training": {
        "method": "trades",
        "epochs": 1,
        "selected_epoch": 1,
        "selection": "best validation robust accuracy",
        "resumed_from_epoch": None,
        "notes": ["trained for one epoch only"],
        "history": [
            {
                "stage": "training",
                "epoch": 1,
                "loss": 1.2,
                "train_accuracy": 0.6,
                "val_clean_accuracy": 0.9,
                "val_robust_accuracy": 0.5,
            }
        ],
    },
    "export": {
        "format": "onnx",
        "opset": 17,
        "max_abs_diff": 5.7e-06,
        "tolerance": 0.0001,
        "output_scale": 30.0,
        "allowed_diff": 0.003,
        "samples": 256,
        "passed": True,
    },
    "environment": {"device": "cpu", "engine": "0.1.0", "torch": "2.13.0+cpu"},
}


_REPORT["verdict"] = verdict(_REPORT["original"], _REPORT["hardened"])


def sample_report() -> dict[str, Any]:
    return copy.deepcopy(_REPORT)
