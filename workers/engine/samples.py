"""Built-in sample data for demos, tests and benchmarks. Nothing here downloads anything.

- scikit-learn's digits (8x8 grey images, 10 classes) and breast cancer (30 features, 2 classes),
  both shipped inside scikit-learn;
- MNIST read from the IDX files (optionally gzipped) at a path given by the caller.
"""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np

from workers.engine.data import Dataset, check_arrays
from workers.engine.errors import InvalidData


def digits(*, image: bool = True) -> Dataset:
    """scikit-learn's 1,797 digits scaled to [0, 1]; shaped (N, 1, 8, 8) or (N, 64)."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = (bunch.data / 16.0).astype(np.float32)
    if image:
        x = x.reshape(-1, 1, 8, 8)
    return check_arrays(x, bunch.target)


_IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def read_idx(path: Path) -> np.ndarray:
    """Read one IDX file (the MNIST container format), gzipped or not."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as handle:
        raw = handle.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise InvalidData(f"{path.name} is not an IDX file")
    dtype, ndim = _IDX_DTYPES[raw[2]], raw[3]
    dims = struct.unpack(f">{ndim}I", raw[4 : 4 + 4 * ndim])
    body = np.frombuffer(raw, dtype=dtype, offset=4 + 4 * ndim)
    if body.size != int(np.prod(dims)):
        raise InvalidData(f"{path.name} is truncated: expected {np.prod(dims)} values")
    return body.reshape(dims)


def mnist(root: Path, *, split: str = "train") -> Dataset:
    """MNIST from ``root`` holding ``{train,t10k}-{images.idx3,labels.idx1}-ubyte[.gz]``;
    images shaped (N, 1, 28, 28) in [0, 1]."""
    prefix = {"train": "train", "test": "t10k"}[split]
    images = read_idx(_find(root, f"{prefix}-images.idx3-ubyte"))
    labels = read_idx(_find(root, f"{prefix}-labels.idx1-ubyte"))
    return check_arrays(images[:, None, :, :], labels)


def _find(root: Path, stem: str) -> Path:
    for candidate in (root / f"{stem}.gz", root / stem):
        if candidate.exists():
            return candidate
    raise InvalidData(f"no {stem}[.gz] under {root}")
