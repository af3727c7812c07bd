"""Reading and checking datasets.

Torch-free on purpose: the gRPC server validates uploads with these functions before it queues a
job, and it never imports torch. Archives are read with ``allow_pickle=False``: an object array
inside an upload is refused, never unpickled.
"""

from __future__ import annotations

import contextlib
import math
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from workers.engine.errors import InvalidData

TRAINING_DATA = "training data"
EVALUATION_DATA = "evaluation data"


@contextlib.contextmanager
def naming(which: str) -> Iterator[None]:
    """An :class:`InvalidData` raised inside says which dataset it is about (``training data:
    feature 'amount' is -3 in row 7 ...``): a job has two, and the row alone does not say which
    file to open."""
    try:
        yield
    except InvalidData as error:
        if str(error).startswith(f"{which}: "):
            raise
        raise InvalidData(f"{which}: {error}") from error


MAX_LABEL = 2**31 - 1
_NPY_HEADER_READERS = {
    (1, 0): np.lib.format.read_array_header_1_0,
    (2, 0): np.lib.format.read_array_header_2_0,
}
_OBJECT_REFUSAL = (
    "the .npz archive holds an object array; only numeric arrays are accepted"
    " (object arrays would need unpickling, which we never do)"
)


@dataclass(frozen=True)
class Dataset:
    x: np.ndarray
    """Inputs, float32, shape (N, ...)."""
    y: np.ndarray
    """Integer labels, int64, shape (N,)."""
    scaled_from_uint8: bool = False
    """``x`` was uint8 and was divided by 255 (see :func:`uint8_scaling_note`)."""

    def __len__(self) -> int:
        return int(self.y.shape[0])

    @property
    def sample_shape(self) -> tuple[int, ...]:
        return tuple(int(d) for d in self.x.shape[1:])

    def subset(self, index: np.ndarray) -> Dataset:
        return Dataset(self.x[index], self.y[index], self.scaled_from_uint8)


def load_npz(path: Path) -> Dataset:
    """Read ``x`` and ``y`` from an ``.npz`` archive and check them (see :func:`check_arrays`)."""
    if not zipfile.is_zipfile(path):
        # np.load would take anything else for a pickle (refused) or a single .npy array.
        raise InvalidData(
            "the file is not a readable .npz archive (a zip of .npy arrays); save the arrays"
            " with numpy.savez(path, x=..., y=...)"
        )
    try:
        with np.load(path, allow_pickle=False) as archive:
            missing = {"x", "y"} - set(archive.files)
            if missing:
                raise InvalidData(
                    f"the .npz archive must hold arrays 'x' and 'y'; missing {sorted(missing)}"
                    f" (found {sorted(archive.files)})"
                )
            for key in ("x", "y"):
                _check_member(archive.zip, key)
            x, y = archive["x"], archive["y"]
    except InvalidData:
        raise
    except ValueError as exc:
        if "pickle" in str(exc).lower() or "object" in str(exc).lower():
            raise InvalidData(_OBJECT_REFUSAL) from exc
        raise InvalidData(f"the .npz archive cannot be read: {exc}") from exc
    except (OSError, zipfile.BadZipFile, EOFError) as exc:
        raise InvalidData(f"the file is not a readable .npz archive: {exc}") from exc
    return check_arrays(x, y)


def _check_member(archive: zipfile.ZipFile, key: str) -> None:
    """Read the ``.npy`` header of array ``key`` and check it against the member's size before
    numpy allocates anything: a header may claim terabytes in a file of a few bytes."""
    names = set(archive.namelist())
    name = f"{key}.npy" if f"{key}.npy" in names else key
    info = archive.getinfo(name)
    with archive.open(info) as member:
        try:
            reader = _NPY_HEADER_READERS.get(np.lib.format.read_magic(member))
            if reader is None:
                raise ValueError("unsupported .npy format version")
            shape, _, dtype = reader(member)
        except ValueError as exc:
            raise InvalidData(
                f"array {key!r} of the .npz archive is not a readable .npy array ({exc});"
                " save the arrays with numpy.savez"
            ) from exc
        header_bytes = member.tell()
    if dtype.hasobject:
        raise InvalidData(_OBJECT_REFUSAL)
    data_bytes = math.prod(shape) * dtype.itemsize
    if header_bytes + data_bytes != info.file_size:
        raise InvalidData(
            f"array {key!r} declares shape {shape} of {dtype} ({data_bytes} bytes) but the"
            f" archive holds {info.file_size - header_bytes} bytes for it; the file is"
            " truncated or corrupt"
        )


def check_arrays(x: np.ndarray, y: np.ndarray) -> Dataset:
    """Validate raw arrays and return them as float32 inputs and int64 labels.

    ``uint8`` inputs are taken as 8-bit images and scaled to [0, 1] (the result says so:
    ``scaled_from_uint8``, and the report's inputs carry :func:`uint8_scaling_note`).
    """
    if x.dtype == object or y.dtype == object:
        raise InvalidData("object arrays are not accepted; use numeric dtypes for x and y")
    if x.ndim < 2:
        raise InvalidData(f"x must have shape (N, ...) with at least 2 dimensions, got {x.shape}")
    if y.ndim != 1:
        raise InvalidData(f"y must be a 1-D array of labels, got shape {y.shape}")
    if x.shape[0] == 0:
        raise InvalidData("the dataset is empty")
    if x.shape[0] != y.shape[0]:
        raise InvalidData(
            f"x holds {x.shape[0]} samples but y holds {y.shape[0]} labels; they must match"
        )
    scaled = x.dtype == np.uint8
    if scaled:
        x = x.astype(np.float32) / 255.0
    elif np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer):
        x = x.astype(np.float32)
    else:
        raise InvalidData(f"x must be float32 or uint8, got dtype {x.dtype}")
    if not np.isfinite(x).all():
        bad = int(np.count_nonzero(~np.isfinite(x).reshape(x.shape[0], -1).all(axis=1)))
        raise InvalidData(f"x contains NaN or infinite values in {bad} samples")
    if np.issubdtype(y.dtype, np.floating):
        if not np.isfinite(y).all() or not np.all(y == np.round(y)):
            raise InvalidData("y must hold integer class labels")
    elif not np.issubdtype(y.dtype, np.integer):
        raise InvalidData(f"y must hold integer class labels, got dtype {y.dtype}")
    if int(y.min()) < 0:
        raise InvalidData(f"labels must be >= 0, found {int(y.min())}")
    if int(y.max()) > MAX_LABEL:
        raise InvalidData(f"labels must be class indices up to {MAX_LABEL}, found {int(y.max())}")
    y = y.astype(np.int64)
    return Dataset(np.ascontiguousarray(x), y, scaled)


def uint8_scaling_note(which: str) -> str:
    """What the report says when ``which`` data (``training``, ``evaluation``) was uint8."""
    return (
        f"the {which} data's x is uint8: it was divided by 255, so the model was trained and"
        " scored on inputs in [0, 1] (and --lower/--upper, eps, apply to that scale). Feed the"
        " hardened model inputs scaled the same way, or store x as float32 to choose the scale"
    )


def check_fits(dataset: Dataset, input_shape: tuple[int | None, ...], num_classes: int) -> None:
    """Check that the data fits a model's per-sample input shape and its number of classes.

    ``input_shape`` excludes the batch dimension; ``None`` entries are free dimensions.
    """
    shape = dataset.sample_shape
    if len(shape) != len(input_shape) or any(
        want is not None and want != got for want, got in zip(input_shape, shape, strict=False)
    ):
        wanted = "(N, " + ", ".join("?" if d is None else str(d) for d in input_shape) + ")"
        raise InvalidData(
            f"the model expects inputs shaped {wanted} but the data is shaped (N, "
            + ", ".join(str(d) for d in shape)
            + ")"
        )
    top = int(dataset.y.max())
    if top >= num_classes:
        raise InvalidData(
            f"labels go up to {top} but the model has {num_classes} outputs;"
            f" labels must lie in [0, {num_classes - 1}]"
        )


def check_bounds(dataset: Dataset, lower: tuple[float, ...], upper: tuple[float, ...]) -> None:
    """Check that every input lies in the declared domain (one pair, or one per channel)."""
    lo, hi = bounds_arrays(lower, upper, dataset.sample_shape)
    tolerance = 1e-6
    if (dataset.x < lo - tolerance).any() or (dataset.x > hi + tolerance).any():
        raise InvalidData(
            f"inputs range over [{float(dataset.x.min()):.4g}, {float(dataset.x.max()):.4g}],"
            f" outside the declared input bounds; pass the bounds of your model's input domain"
        )


def bounds_arrays(
    lower: tuple[float, ...], upper: tuple[float, ...], sample_shape: tuple[int, ...]
) -> tuple[np.ndarray, np.ndarray]:
    """Bounds shaped to broadcast against a batch ``(N, *sample_shape)``.

    One pair applies everywhere; k pairs apply along the axis :func:`channel_axis` finds.
    """
    if len(lower) == 1:
        return np.full((1,), lower[0], np.float32), np.full((1,), upper[0], np.float32)
    shape = [1] * (len(sample_shape) + 1)
    shape[1 + channel_axis(len(lower), sample_shape)] = len(lower)
    return (
        np.asarray(lower, np.float32).reshape(shape),
        np.asarray(upper, np.float32).reshape(shape),
    )


def channel_axis(count: int, sample_shape: tuple[int, ...]) -> int:
    """The axis of a sample that ``count`` per-channel bounds follow: the first (a
    channels-first image, as torch exports, or the features of a flat input), else the last for
    a channels-last image (NHWC, as Keras and TensorFlow exports are) whose first axis is not of
    that size. A sample whose first and last axes both have ``count`` entries is read channels
    first."""
    if sample_shape[0] == count:
        return 0
    if len(sample_shape) >= 3 and sample_shape[-1] == count:
        return len(sample_shape) - 1
    raise InvalidData(
        f"{count} bound pairs given but inputs shaped {list(sample_shape)} have"
        f" {sample_shape[0]} channels/features on their first axis"
        + (f" and {sample_shape[-1]} on their last" if len(sample_shape) >= 3 else "")
        + "; give one pair, or one per channel"
    )


def channels_last_note(count: int, sample_shape: tuple[int, ...]) -> str | None:
    """The report's note when per-channel bounds follow the last axis, None otherwise."""
    if count == 1 or channel_axis(count, sample_shape) == 0:
        return None
    return (
        f"inputs shaped {list(sample_shape)} read as channels last: the {count} per-channel"
        " bounds apply along the last axis"
    )


def split_holdout(dataset: Dataset, holdout: int, seed: int) -> tuple[Dataset, Dataset]:
    """A seeded, stratification-free split: ``holdout`` samples out, the rest in."""
    holdout = min(holdout, len(dataset) // 2)
    order = np.random.default_rng(seed).permutation(len(dataset))
    return dataset.subset(np.sort(order[holdout:])), dataset.subset(np.sort(order[:holdout]))
