"""What the capped checker processes add to a SubmitJob: the submit-time check of a small ONNX
classifier and its .npz run ``--calls`` times in this process, then through
:class:`service.validation_pool.ValidationPool` (a warm checker), and on a checker started for
the call (the worst case: the first submission after a failed check, when the replacement has
not warmed up yet). Prints the median and p95 of each, in milliseconds.

    python bench/validation_overhead.py
    python bench/validation_overhead.py --calls 500 --features 784
"""

from __future__ import annotations

import argparse
import io
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from service.jobs.validation import check_job_inputs
from service.jobs.validation_pool import ValidationPool
from workers.engine.spec import ModelFormat, ThreatModel

GiB = 1024**3


def write_inputs(folder: Path, features: int, classes: int = 10) -> tuple[Path, Path]:
    rng = np.random.default_rng(0)
    weight = rng.normal(0, 0.1, (features, classes)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("Gemm", ["x", "W", "B"], ["logits"])],
        "linear",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", features])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", classes])],
        [
            numpy_helper.from_array(weight, "W"),
            numpy_helper.from_array(np.zeros(classes, np.float32), "B"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    model_path, data_path = folder / "model.onnx", folder / "train.npz"
    onnx.save(model, str(model_path))
    buffer = io.BytesIO()
    x = rng.uniform(0, 1, (1000, features)).astype(np.float32)
    np.savez(buffer, x=x, y=rng.integers(0, classes, 1000))
    data_path.write_bytes(buffer.getvalue())
    return model_path, data_path


def timings(call: Callable[[], None], calls: int) -> list[float]:
    seconds = []
    for _ in range(calls):
        start = time.perf_counter()
        call()
        seconds.append(time.perf_counter() - start)
    return seconds


def report(name: str, seconds: list[float]) -> None:
    ms = sorted(s * 1000 for s in seconds)
    p95 = ms[min(len(ms) - 1, int(0.95 * len(ms)))]
    print(f"{name:<28} median {statistics.median(ms):7.2f} ms   p95 {p95:7.2f} ms   n={len(ms)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--features", type=int, default=64)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        model, data = write_inputs(Path(folder), args.features)

        def in_process() -> None:
            check_job_inputs(ModelFormat.ONNX, model, [data], ThreatModel())

        pool = ValidationPool(4 * GiB, processes=1)
        try:

            def pooled() -> None:
                pool.check(ModelFormat.ONNX, model, [data], ThreatModel())

            pooled()  # waits for the first checker to warm up
            report("in the server process", timings(in_process, args.calls))
            report("in a warm capped checker", timings(pooled, args.calls))
            cold = []
            for _ in range(5):
                pool.close()
                cold += timings(pooled, 1)
            report("cold checker (start + check)", cold)
        finally:
            pool.close()


if __name__ == "__main__":
    main()
