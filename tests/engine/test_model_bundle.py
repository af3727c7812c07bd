"""ONNX bundles (an uncompressed tar of one .onnx and its external data files): unpacked into a
private folder only after every header was checked, every bad bundle refused with a message
naming its problem, and the model read through the engine's confined external-data reader."""

from __future__ import annotations

import gzip
import tarfile
import time
from pathlib import Path

import numpy as np
import onnx
import pytest

from tests.bundle_support import (
    CLASSES,
    bundle_of,
    file_member,
    linear_with_external_data,
    link_member,
    special_member,
    tar_bytes,
)
from workers.engine.errors import InvalidModel
from workers.engine.models.bundle import MAX_BUNDLE_MEMBERS, list_bundle, unpack_bundle
from workers.engine.models.formats import check_declared_format, sniff_format
from workers.engine.models.loading import load_model
from workers.engine.spec import ModelFormat, ModelSource


@pytest.fixture
def model_folder(tmp_path: Path) -> Path:
    linear_with_external_data(tmp_path / "export")
    return tmp_path / "export"


def write(tmp_path: Path, data: bytes, name: str = "bundle.tar") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def refusal(path: Path, tmp_path: Path) -> str:
    out = tmp_path / "unpacked"
    out.mkdir()
    with pytest.raises(InvalidModel) as caught:
        unpack_bundle(path, out)
    assert not any(out.iterdir()), "nothing is written from a refused bundle"
    return str(caught.value)


def test_a_bundle_unpacks_to_its_model_beside_its_data(model_folder: Path, tmp_path: Path) -> None:
    path = write(tmp_path, bundle_of(model_folder, ["m.onnx", "m.onnx.data"]))
    out = tmp_path / "out"
    out.mkdir()

    model = unpack_bundle(path, out)

    assert model == out / "m.onnx"
    assert (out / "m.onnx.data").read_bytes() == (model_folder / "m.onnx.data").read_bytes()


def test_a_bundle_is_recognised_by_its_bytes(model_folder: Path, tmp_path: Path) -> None:
    path = write(tmp_path, bundle_of(model_folder, ["m.onnx", "m.onnx.data"]), "model.onnx")

    assert sniff_format(path) == "onnx_bundle"


def test_the_engine_loads_a_bundled_model_with_its_external_weights(
    model_folder: Path, tmp_path: Path
) -> None:
    path = write(tmp_path, bundle_of(model_folder, ["m.onnx", "m.onnx.data"]))
    expected = onnx.numpy_helper.to_array(
        next(t for t in onnx.load(model_folder / "m.onnx").graph.initializer if t.name == "w")
    )

    loaded = load_model(ModelSource(path, ModelFormat.ONNX_BUNDLE))

    assert loaded.num_classes == CLASSES
    assert loaded.format is ModelFormat.ONNX
    np.testing.assert_array_equal(loaded.module.onnx_tensor("w").detach().numpy(), expected)


def test_data_files_may_sit_in_a_subfolder_of_the_bundle(tmp_path: Path) -> None:
    folder = tmp_path / "export"
    linear_with_external_data(folder, location="weights/all.bin")
    path = write(tmp_path, bundle_of(folder, ["m.onnx", "weights/all.bin"]))

    loaded = load_model(ModelSource(path, ModelFormat.ONNX_BUNDLE))

    assert loaded.num_classes == CLASSES


def test_a_data_file_the_model_references_but_the_bundle_lacks_is_named(
    model_folder: Path, tmp_path: Path
) -> None:
    path = write(tmp_path, bundle_of(model_folder, ["m.onnx"]))

    with pytest.raises(InvalidModel, match=r"external data file 'm\.onnx\.data' .* is missing"):
        load_model(ModelSource(path, ModelFormat.ONNX_BUNDLE))


def test_a_single_onnx_with_external_data_is_still_refused_on_its_own(model_folder: Path) -> None:
    with pytest.raises(InvalidModel, match="external data"):
        load_model(ModelSource(model_folder / "m.onnx", ModelFormat.ONNX))


def test_local_runs_read_external_data_beside_the_model(model_folder: Path) -> None:
    loaded = load_model(
        ModelSource(model_folder / "m.onnx", ModelFormat.ONNX, external_data_beside=True)
    )

    assert loaded.num_classes == CLASSES


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("../x.data", "points outside the bundle"),
        ("a/../../x.data", "points outside the bundle"),
        ("/etc/passwd", "has an absolute path"),
        ("C:/windows/x.data", "has an absolute path"),
        ("weights\\x.data", "malformed name"),
    ],
)
def test_a_member_named_outside_the_bundle_is_refused(
    model_folder: Path, tmp_path: Path, name: str, expected: str
) -> None:
    onnx_bytes = (model_folder / "m.onnx").read_bytes()
    path = write(tmp_path, tar_bytes([file_member("m.onnx", onnx_bytes), file_member(name, b"1")]))

    message = refusal(path, tmp_path)

    assert expected in message
    assert repr(name) in message


@pytest.mark.parametrize(
    ("member", "kind"),
    [
        (link_member("m.onnx.data", "/etc/passwd"), "a symbolic link"),
        (link_member("m.onnx.data", "m.onnx", tarfile.LNKTYPE), "a hard link"),
        (special_member("m.onnx.data", tarfile.CHRTYPE), "a character device"),
        (special_member("m.onnx.data", tarfile.FIFOTYPE), "a named pipe"),
    ],
)
def test_links_and_devices_are_refused(
    model_folder: Path, tmp_path: Path, member: tuple[tarfile.TarInfo, bytes], kind: str
) -> None:
    onnx_bytes = (model_folder / "m.onnx").read_bytes()
    path = write(tmp_path, tar_bytes([file_member("m.onnx", onnx_bytes), member]))

    assert f"bundle member 'm.onnx.data' is {kind}" in refusal(path, tmp_path)


def test_a_truncated_bundle_is_refused_before_its_data_is_read(
    model_folder: Path, tmp_path: Path
) -> None:
    data = bundle_of(model_folder, ["m.onnx", "m.onnx.data"])
    path = write(tmp_path, data[: len(data) - 1024 - 512 + 10])

    message = refusal(path, tmp_path)

    assert "bundle member 'm.onnx.data' declares" in message
    assert "(truncated or corrupt)" in message


def test_a_member_declaring_fewer_bytes_than_it_holds_is_refused(
    model_folder: Path, tmp_path: Path
) -> None:
    onnx_bytes = (model_folder / "m.onnx").read_bytes()
    weights = (model_folder / "m.onnx.data").read_bytes() + b"\1" * 1024
    members = [file_member("m.onnx", onnx_bytes), file_member("m.onnx.data", weights, size=8)]
    path = write(tmp_path, tar_bytes(members))

    assert "declared size does not match its bytes" in refusal(path, tmp_path)


def test_thousands_of_tiny_files_are_refused_after_the_cap(tmp_path: Path) -> None:
    members = [file_member(f"f{i}.bin", b"x") for i in range(10_000)]
    path = write(tmp_path, tar_bytes([file_member("m.onnx", b"\x08\x07"), *members]))
    started = time.perf_counter()

    message = refusal(path, tmp_path)

    assert f"more than {MAX_BUNDLE_MEMBERS} entries" in message
    assert time.perf_counter() - started < 1.0


@pytest.mark.parametrize(
    ("names", "found"),
    [
        (["m.onnx.data"], "holds none"),
        (["sub/m.onnx", "m.onnx.data"], "holds none"),
        (["m.onnx", "n.onnx", "m.onnx.data"], "holds 'm.onnx', 'n.onnx'"),
    ],
)
def test_a_bundle_needs_exactly_one_onnx_at_its_top_level(
    tmp_path: Path, names: list[str], found: str
) -> None:
    path = write(tmp_path, tar_bytes([file_member(n, b"\x08\x07") for n in names]))

    message = refusal(path, tmp_path)

    assert "exactly one .onnx file at its top level" in message
    assert found in message


def test_a_name_given_twice_is_refused(tmp_path: Path) -> None:
    members = [file_member("m.onnx", b"a"), file_member("./m.onnx", b"b")]
    path = write(tmp_path, tar_bytes(members))

    assert "bundle member 'm.onnx' appears twice" in refusal(path, tmp_path)


def test_a_file_that_is_also_a_folder_is_refused(tmp_path: Path) -> None:
    members = [file_member("m.onnx", b"a"), file_member("w", b"b"), file_member("w/x", b"c")]
    path = write(tmp_path, tar_bytes(members))

    assert "'w' is a file and also the folder of 'w/x'" in refusal(path, tmp_path)


def test_a_folder_entry_and_a_leading_dot_slash_are_accepted(
    model_folder: Path, tmp_path: Path
) -> None:
    folder_entry = tarfile.TarInfo("./")
    folder_entry.type = tarfile.DIRTYPE
    members = [
        (folder_entry, b""),
        file_member("./m.onnx", (model_folder / "m.onnx").read_bytes()),
        file_member("./m.onnx.data", (model_folder / "m.onnx.data").read_bytes()),
    ]

    names = [e.name for e in list_bundle(write(tmp_path, tar_bytes(members)))]

    assert names == ["m.onnx", "m.onnx.data"]


def test_a_compressed_tar_is_not_a_bundle(model_folder: Path, tmp_path: Path) -> None:
    data = gzip.compress(bundle_of(model_folder, ["m.onnx", "m.onnx.data"]))
    path = write(tmp_path, data, "bundle.tar.gz")

    with pytest.raises(InvalidModel, match="declared as onnx_bundle but its bytes are nothing"):
        check_declared_format(ModelFormat.ONNX_BUNDLE, path)


def test_an_onnx_file_declared_as_a_bundle_is_refused(model_folder: Path) -> None:
    with pytest.raises(InvalidModel, match="not an ONNX bundle"):
        check_declared_format(ModelFormat.ONNX_BUNDLE, model_folder / "m.onnx")


def test_a_bundle_declared_as_onnx_is_refused(model_folder: Path, tmp_path: Path) -> None:
    path = write(tmp_path, bundle_of(model_folder, ["m.onnx", "m.onnx.data"]))

    with pytest.raises(InvalidModel, match="its bytes are an ONNX bundle"):
        check_declared_format(ModelFormat.ONNX, path)


def test_an_extended_header_claiming_megabytes_is_refused_before_it_is_read(
    tmp_path: Path,
) -> None:
    header = tarfile.TarInfo("././@PaxHeader")
    header.type, header.size = tarfile.XHDTYPE, 4 << 20
    payload = b"9 a=b\n" * ((4 << 20) // 6) + b"\n" * ((4 << 20) % 6)
    path = write(tmp_path, tar_bytes([(header, payload), file_member("m.onnx", b"\x08\x07")]))

    assert "extended tar header over" in refusal(path, tmp_path)
