"""``temper demo`` end to end: a real server and worker as child processes, the real gRPC client."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime
import pytest
from client_helpers import CliRunner

pytestmark = [pytest.mark.slow, pytest.mark.e2e]


def test_demo_hardens_the_bundled_model_through_the_server_and_writes_its_outputs(
    temper: CliRunner, digits_test: Path, tmp_path: Path
) -> None:
    pytest.importorskip("service.ops.cli")
    output = tmp_path / "demo-output"

    result = temper("demo", "-o", output)

    assert result.code == 0, result.err
    assert "robust accuracy (worst)" in result.out
    assert "stopping the server and worker" in result.err
    session = onnxruntime.InferenceSession(str(output / "hardened.onnx"))
    with np.load(digits_test) as data:
        (logits,) = session.run(None, {session.get_inputs()[0].name: data["x"][:8]})
    assert logits.shape == (8, 10)
    report = json.loads((output / "hardened.report.json").read_text())
    assert report["training"]["method"] == "pgd"
    assert report["evaluation"]["suite"] == "fast"
    assert report["hardened"]["clean_accuracy"]["total"] == 200
    assert (output / "hardened.model_card.md").is_file()
