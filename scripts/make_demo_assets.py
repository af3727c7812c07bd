"""Build the assets that `temper demo` hardens: a small CNN for scikit-learn's 8x8 digits, as ONNX,
and the digits themselves as .npz archives.

Writes into ``client/demo_assets/``:

- ``digits_train.npz`` and ``digits_test.npz``: arrays ``x`` (float32 in [0, 1], shaped
  (N, 1, 8, 8)) and ``y`` (int64 labels 0-9); a seeded, stratified 80/20 split of the 1797 digits.
- ``digits_cnn.onnx``: the CNN, trained for a few seconds on the training split (plain training,
  no hardening: the demo shows what hardening changes).

Deterministic: a fixed seed, one CPU thread, deterministic kernels, and zip entries with a fixed
timestamp, so running it twice on the same versions of torch and scikit-learn writes the same
bytes. Needs the worker extra (torch, scikit-learn, onnx)::

    python scripts/make_demo_assets.py [--out client/demo_assets]
"""

from __future__ import annotations

import argparse
import io
import warnings
import zipfile
from pathlib import Path

import numpy as np
import onnx
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn

SEED = 20240611
EPOCHS = 15
BATCH_SIZE = 64
LEARNING_RATE = 3e-3
OPSET = 17
DEFAULT_OUT = Path(__file__).resolve().parent.parent / "client" / "demo_assets"
FIXED_ZIP_TIME = (1980, 1, 1, 0, 0, 0)


def digits() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The 8x8 digits scaled from 0-16 to [0, 1], split 80/20 with a fixed seed."""
    bunch = load_digits()
    x = (bunch.images / 16.0).astype(np.float32)[:, None, :, :]
    y = bunch.target.astype(np.int64)
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=0.2, random_state=SEED % 2**32, stratify=y
    )
    return x_train, y_train, x_test, y_test


def digits_cnn() -> nn.Module:
    """Two convolutions and two dense layers, about 40k parameters: trains in seconds on a CPU."""
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(16, 32, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(32 * 4 * 4, 64),
        nn.ReLU(),
        nn.Linear(64, 10),
    )


def train(model: nn.Module, x: np.ndarray, y: np.ndarray) -> nn.Module:
    generator = torch.Generator().manual_seed(SEED)
    inputs, labels = torch.from_numpy(x), torch.from_numpy(y)
    optimizer = torch.optim.Adam(model.parameters(), lr=LEARNING_RATE)
    loss_fn = nn.CrossEntropyLoss()
    model.train()
    for _ in range(EPOCHS):
        order = torch.randperm(len(labels), generator=generator)
        for start in range(0, len(order), BATCH_SIZE):
            batch = order[start : start + BATCH_SIZE]
            optimizer.zero_grad()
            loss_fn(model(inputs[batch]), labels[batch]).backward()
            optimizer.step()
    return model.eval()


def accuracy(model: nn.Module, x: np.ndarray, y: np.ndarray) -> float:
    with torch.no_grad():
        predicted = model(torch.from_numpy(x)).argmax(dim=1).numpy()
    return float((predicted == y).mean())


def export(model: nn.Module, path: Path) -> None:
    """The TorchScript-based exporter gives a plain Conv/Relu/Flatten/Gemm graph with a dynamic
    batch dimension and the weights inline."""
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            model,
            (torch.zeros(1, 1, 8, 8),),
            buffer,  # type: ignore[arg-type]  # the TorchScript exporter takes a file object
            dynamo=False,
            input_names=["input"],
            output_names=["logits"],
            dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
            opset_version=OPSET,
        )
    proto = onnx.load_from_string(buffer.getvalue())
    proto.producer_name = "tempering-demo"
    proto.producer_version = "1"
    proto.doc_string = "Small CNN for scikit-learn's 8x8 digits; see scripts/make_demo_assets.py"
    onnx.checker.check_model(proto)
    path.write_bytes(proto.SerializeToString())


def save_npz(path: Path, **arrays: np.ndarray) -> None:
    """Like ``np.savez_compressed``, but with fixed zip timestamps so the bytes are reproducible."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, array in arrays.items():
            payload = io.BytesIO()
            np.lib.format.write_array(payload, np.ascontiguousarray(array), allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=FIXED_ZIP_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            archive.writestr(info, payload.getvalue())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output directory")
    args = parser.parse_args(argv)

    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    torch.manual_seed(SEED)
    x_train, y_train, x_test, y_test = digits()
    model = train(digits_cnn(), x_train, y_train)

    args.out.mkdir(parents=True, exist_ok=True)
    save_npz(args.out / "digits_train.npz", x=x_train, y=y_train)
    save_npz(args.out / "digits_test.npz", x=x_test, y=y_test)
    export(model, args.out / "digits_cnn.onnx")
    print(
        f"wrote {args.out}: {len(y_train)} training and {len(y_test)} test digits;"
        f" test accuracy {accuracy(model, x_test, y_test):.1%}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
