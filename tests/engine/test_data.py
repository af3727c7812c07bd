"""Dataset reading and checks: every malformed upload is refused with a message naming the fix."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pytest

from workers.engine.data import (
    bounds_arrays,
    channels_last_note,
    check_bounds,
    check_fits,
    load_npz,
    split_holdout,
)
from workers.engine.errors import InvalidData


def _npz(path: Path, **arrays: np.ndarray) -> Path:
    np.savez(path, **arrays)  # type: ignore[arg-type]
    return path


def _good(n: int = 8) -> dict[str, np.ndarray]:
    return {
        "x": np.random.default_rng(0).random((n, 1, 4, 4), dtype=np.float32),
        "y": np.arange(n) % 3,
    }


def test_load_npz_returns_float32_inputs_and_int64_labels(tmp_path: Path) -> None:
    dataset = load_npz(_npz(tmp_path / "d.npz", **_good()))
    assert dataset.x.dtype == np.float32
    assert dataset.y.dtype == np.int64
    assert dataset.sample_shape == (1, 4, 4)


def test_uint8_images_are_scaled_to_unit_interval(tmp_path: Path) -> None:
    x = np.full((2, 3), 255, np.uint8)
    dataset = load_npz(_npz(tmp_path / "d.npz", x=x, y=np.array([0, 1])))
    assert dataset.x.max() == pytest.approx(1.0)
    assert dataset.scaled_from_uint8
    assert dataset.subset(np.array([1])).scaled_from_uint8


def test_float_data_is_not_marked_scaled(tmp_path: Path) -> None:
    assert not load_npz(_npz(tmp_path / "d.npz", **_good())).scaled_from_uint8


def test_object_array_is_refused_without_unpickling(tmp_path: Path) -> None:
    x = np.empty(2, dtype=object)
    x[0], x[1] = [1.0], [2.0]
    with pytest.raises(InvalidData, match="object array"):
        load_npz(_npz(tmp_path / "d.npz", x=x, y=np.array([0, 1])))


def test_nan_inputs_are_refused(tmp_path: Path) -> None:
    arrays = _good()
    arrays["x"][3, 0, 0, 0] = np.nan
    with pytest.raises(InvalidData, match="NaN or infinite values in 1 samples"):
        load_npz(_npz(tmp_path / "d.npz", **arrays))


def test_infinite_inputs_are_refused(tmp_path: Path) -> None:
    arrays = _good()
    arrays["x"][0, 0, 0, 0] = np.inf
    with pytest.raises(InvalidData, match="infinite"):
        load_npz(_npz(tmp_path / "d.npz", **arrays))


def test_mismatched_sample_counts_are_refused(tmp_path: Path) -> None:
    arrays = _good()
    with pytest.raises(InvalidData, match="8 samples but y holds 7"):
        load_npz(_npz(tmp_path / "d.npz", x=arrays["x"], y=arrays["y"][:7]))


def test_empty_dataset_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidData, match="empty"):
        load_npz(_npz(tmp_path / "d.npz", x=np.zeros((0, 3), np.float32), y=np.zeros(0, int)))


def test_missing_arrays_are_named(tmp_path: Path) -> None:
    with pytest.raises(InvalidData, match=r"missing \['y'\]"):
        load_npz(_npz(tmp_path / "d.npz", x=np.zeros((2, 3), np.float32)))


def test_non_integer_labels_are_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidData, match="integer class labels"):
        load_npz(_npz(tmp_path / "d.npz", x=np.zeros((2, 3), np.float32), y=np.array([0.5, 1])))


def test_negative_labels_are_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidData, match=">= 0"):
        load_npz(_npz(tmp_path / "d.npz", x=np.zeros((2, 3), np.float32), y=np.array([-1, 1])))


def test_file_that_is_not_an_archive_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "d.npz"
    path.write_bytes(b"this is not a zip archive")
    with pytest.raises(InvalidData):
        load_npz(path)


def test_truncated_archive_is_refused(tmp_path: Path) -> None:
    path = _npz(tmp_path / "d.npz", **_good(64))
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(InvalidData):
        load_npz(path)


def test_archive_with_a_pickled_member_is_refused(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    np.save(buffer, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    path = tmp_path / "d.npz"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("x.npy", buffer.getvalue())
        archive.writestr("y.npy", buffer.getvalue())
    with pytest.raises(InvalidData, match="object array"):
        load_npz(path)


def test_labels_beyond_the_models_classes_are_refused(tmp_path: Path) -> None:
    dataset = load_npz(_npz(tmp_path / "d.npz", **_good()))
    with pytest.raises(InvalidData, match=r"labels go up to 2 but the model has 2 outputs"):
        check_fits(dataset, (1, 4, 4), 2)


def test_shape_mismatch_names_both_shapes(tmp_path: Path) -> None:
    dataset = load_npz(_npz(tmp_path / "d.npz", **_good()))
    with pytest.raises(InvalidData, match=r"expects inputs shaped \(N, 1, 8, 8\).*\(N, 1, 4, 4\)"):
        check_fits(dataset, (1, 8, 8), 10)


def test_free_dimensions_accept_any_size(tmp_path: Path) -> None:
    dataset = load_npz(_npz(tmp_path / "d.npz", **_good()))
    check_fits(dataset, (1, None, None), 10)


def test_inputs_outside_the_declared_bounds_are_refused(tmp_path: Path) -> None:
    dataset = load_npz(_npz(tmp_path / "d.npz", **_good()))
    with pytest.raises(InvalidData, match="outside the declared input bounds"):
        check_bounds(dataset, (0.0,), (0.5,))


def test_per_channel_bounds_follow_axis_one_of_a_channels_first_image() -> None:
    lower, _ = bounds_arrays((0.0, 1.0, 2.0), (1.0, 2.0, 3.0), (3, 8, 8))

    assert lower.shape == (1, 3, 1, 1)
    assert channels_last_note(3, (3, 8, 8)) is None


def test_per_channel_bounds_follow_the_last_axis_of_a_channels_last_image() -> None:
    lower, upper = bounds_arrays((0.0, -1.0, -2.0), (1.0, 1.0, 2.0), (8, 8, 3))

    assert lower.shape == (1, 1, 1, 3)
    assert upper.ravel().tolist() == [1.0, 1.0, 2.0]
    assert "channels last" in (channels_last_note(3, (8, 8, 3)) or "")


def test_channels_last_data_is_checked_against_its_own_channels(tmp_path: Path) -> None:
    x = np.zeros((4, 5, 5, 2), np.float32)
    x[..., 1] = -3.0
    dataset = load_npz(_npz(tmp_path / "d.npz", x=x, y=np.arange(4) % 2))

    check_bounds(dataset, (0.0, -4.0), (1.0, 0.0))
    with pytest.raises(InvalidData, match="outside the declared input bounds"):
        check_bounds(dataset, (-4.0, 0.0), (0.0, 1.0))


def test_bound_pairs_that_match_no_channel_axis_are_refused() -> None:
    with pytest.raises(InvalidData, match="2 bound pairs given but inputs shaped"):
        bounds_arrays((0.0, 0.0), (1.0, 1.0), (3, 8, 8))


def test_holdout_split_is_fixed_by_the_seed(tmp_path: Path) -> None:
    dataset = load_npz(_npz(tmp_path / "d.npz", **_good(20)))
    first = split_holdout(dataset, 5, seed=3)
    second = split_holdout(dataset, 5, seed=3)
    assert np.array_equal(first[1].x, second[1].x)
    assert len(first[0]) == 15
    assert len(first[1]) == 5
