"""Loading and writing a large ONNX model with its weights inline against streamed from and to
external data (docs/model-bundles.md, "Large models"), and packing and unpacking the bundle the
hardened model comes back as.

Builds an MLP of about ``--mib`` MiB of float32 weights in layers of 128 MiB (four of
8192x4096 for the default 512, then one to 10 classes), its weights in ``model.onnx.data``.
Each path runs in a fresh process, so that its peak resident memory (``ru_maxrss``) is its
own: it loads the model with
``load_onnx_classifier`` and writes it back with ``write_trained_onnx``, once with the inline
limit above the model (every tensor through the ``ModelProto``) and once below it (read
straight into torch, written straight from it). Then the external output is packed into
``hardened.onnx.tar`` (the engine's ``pack_bundle``) and unpacked by the client as a download
would be (``save_bundle``, SHA-256 checked).

    OMP_NUM_THREADS=1 nice -n 19 python bench/large_model.py
    OMP_NUM_THREADS=1 nice -n 19 python bench/large_model.py --mib 128 --folder /tmp/large
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from onnx import TensorProto, helper

MiB = 1 << 20
WIDE, NARROW, CLASSES = 8192, 4096, 10
EXTERNAL_LIMIT = 64 * MiB
"""The inline limit of the external path: far below the model."""


def build(folder: Path, mib: int) -> Path:
    """An MLP of about ``mib`` MiB: alternate 8192->4096 and 4096->8192 MatMul layers with
    ReLU between them, then 8192->10; weights written straight to the data file."""
    layers = max(1, round(mib * MiB / (WIDE * NARROW * 4)))
    shapes = [(WIDE, NARROW) if i % 2 == 0 else (NARROW, WIDE) for i in range(layers)]
    shapes.append((shapes[-1][1], CLASSES))
    rng = np.random.default_rng(0)
    nodes, initializers = [], []
    current, offset = "x", 0
    with (folder / "model.onnx.data").open("wb") as data:
        for index, (rows, columns) in enumerate(shapes):
            name = f"w{index}"
            weight = rng.standard_normal((rows, columns), dtype=np.float32)
            weight *= 1.0 / np.sqrt(rows)
            data.write(weight.tobytes())
            tensor = TensorProto(name=name, data_type=TensorProto.FLOAT, dims=[rows, columns])
            tensor.data_location = TensorProto.EXTERNAL
            for key, value in (
                ("location", "model.onnx.data"),
                ("offset", str(offset)),
                ("length", str(weight.nbytes)),
            ):
                entry = tensor.external_data.add()
                entry.key, entry.value = key, value
            offset += weight.nbytes
            initializers.append(tensor)
            out = "y" if index == len(shapes) - 1 else f"h{index}"
            nodes.append(helper.make_node("MatMul", [current, name], [out]))
            if out != "y":
                nodes.append(helper.make_node("Relu", [out], [f"a{index}"]))
                current = f"a{index}"
    graph = helper.make_graph(
        nodes,
        "large_mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", WIDE])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", CLASSES])],
        initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    path = folder / "model.onnx"
    path.write_bytes(model.SerializeToString())
    return path


def measure(model: Path, out: Path, limit: int) -> dict[str, float]:
    """In this process: load, then write back; seconds of each and the peak RSS in MiB."""
    import torch

    from workers.engine.models.onnx import load_onnx_classifier, write_trained_onnx

    torch.set_num_threads(1)
    baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    start = time.perf_counter()
    module = load_onnx_classifier(model, allow_external_data=True, inline_limit=limit)
    loaded = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    external = write_trained_onnx(module, out / "hardened.onnx", inline_limit=limit)
    written = time.perf_counter()
    return {
        "load_s": loaded - start,
        "write_s": written - loaded,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "rss_after_imports_mib": baseline,
        "external": float(external),
    }


def in_child(model: Path, out: Path, limit: int) -> dict[str, float]:
    command = [sys.executable, __file__, "--child", str(model), str(out), str(limit)]
    result = subprocess.run(command, capture_output=True, text=True, check=True)
    return dict(json.loads(result.stdout.strip().splitlines()[-1]))


def pack_and_unpack(written: Path, work: Path) -> dict[str, float]:
    from client.model_bundle_out import save_bundle
    from client.transfer import digest_file, read_chunks
    from workers.engine.models.bundle import pack_bundle

    archive = work / "hardened.onnx.tar"
    start = time.perf_counter()
    pack_bundle(written / "hardened.onnx", ["hardened.onnx.data"], archive)
    packed = time.perf_counter() - start
    digest = digest_file(archive)
    start = time.perf_counter()
    save_bundle(read_chunks(archive), work / "downloaded" / "hardened.onnx", digest)
    unpacked = time.perf_counter() - start
    return {
        "pack_s": packed,
        "client_unpack_s": unpacked,
        "bundle_mib": archive.stat().st_size / MiB,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mib", type=int, default=512, help="weights of the model (default 512)")
    parser.add_argument("--folder", type=Path, help="work here (default: a temporary folder)")
    parser.add_argument(
        "--child", nargs=3, metavar=("MODEL", "OUT", "LIMIT"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.child:
        model, out, limit = args.child
        print(json.dumps(measure(Path(model), Path(out), int(limit))))
        return
    with tempfile.TemporaryDirectory(prefix="large-model-", dir=args.folder) as tmp:
        work = Path(tmp)
        (work / "model").mkdir()
        model = build(work / "model", args.mib)
        weights = (work / "model" / "model.onnx.data").stat().st_size / MiB
        print(f"model: {weights:.0f} MiB of float32 weights, {os.cpu_count()} CPUs")
        from workers.engine.spec import INLINE_WEIGHT_LIMIT

        rows = {
            "inline": in_child(model, work / "inline", INLINE_WEIGHT_LIMIT),
            "external": in_child(model, work / "external", EXTERNAL_LIMIT),
        }
        print(
            f"{'path':10} {'load s':>8} {'write s':>8} {'peak RSS MiB':>13} {'after imports':>14}"
        )
        for name, row in rows.items():
            print(
                f"{name:10} {row['load_s']:8.2f} {row['write_s']:8.2f}"
                f" {row['peak_rss_mib']:13,.0f} {row['rss_after_imports_mib']:14,.0f}"
            )
        bundle = pack_and_unpack(work / "external", work)
        print(
            f"bundle {bundle['bundle_mib']:.0f} MiB: pack {bundle['pack_s']:.2f} s,"
            f" client unpack (SHA-256 checked) {bundle['client_unpack_s']:.2f} s"
        )


if __name__ == "__main__":
    main()
