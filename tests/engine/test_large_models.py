"""Models over the inline weight limit (TEMPERING_INLINE_WEIGHT_LIMIT, lowered here so that a
160 KiB model is over it): their large initializers never enter a ModelProto on the way in,
the hardened weights go to hardened.onnx.data on the way out, and the model comes back as a
bundle that unpacks like an upload and loads in onnxruntime with its report."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from tests.bundle_support import (
    STREAMED_LIMIT,
    WIDE_FEATURES,
    bundle_of,
    wide_mlp_with_external_data,
)
from workers.engine.errors import InvalidModel
from workers.engine.export import add_metadata
from workers.engine.hardened_bundle import package_model
from workers.engine.models.bundle import list_bundle, pack_bundle, unpack_bundle
from workers.engine.models.loading import load_model
from workers.engine.models.onnx import load_onnx_classifier, write_trained_onnx
from workers.engine.models.onnx.reading import _read_model_file
from workers.engine.spec import ModelFormat, ModelSource


@pytest.fixture
def model_path(tmp_path: Path) -> Path:
    return wide_mlp_with_external_data(tmp_path / "export")


def inputs() -> torch.Tensor:
    return torch.from_numpy(
        np.random.default_rng(1).standard_normal((5, WIDE_FEATURES)).astype("f4")
    )


def external_names(model: onnx.ModelProto) -> list[str]:
    return [t.name for t in model.graph.initializer if t.data_location == onnx.TensorProto.EXTERNAL]


def test_over_the_limit_the_large_initializer_stays_in_its_file(model_path: Path) -> None:
    model, streamed = _read_model_file(model_path, None, True, STREAMED_LIMIT)

    assert streamed
    assert external_names(model) == ["w1"]
    assert not model.graph.initializer[0].raw_data


def test_at_the_limit_every_tensor_is_read_into_the_graph(model_path: Path) -> None:
    total = model_path.with_name("m.onnx.data").stat().st_size

    model, streamed = _read_model_file(model_path, None, True, total)

    assert not streamed
    assert external_names(model) == []


def test_a_streamed_model_computes_what_the_inlined_one_computes(model_path: Path) -> None:
    streamed = load_onnx_classifier(
        model_path, allow_external_data=True, inline_limit=STREAMED_LIMIT
    )
    inlined = load_onnx_classifier(model_path, allow_external_data=True)

    assert torch.equal(streamed(inputs()), inlined(inputs()))
    assert streamed.trainable_parameter_names == ["w1", "b1", "w2", "b2"]


def test_a_streamed_bundle_is_whole_in_memory_once_its_folder_is_gone(
    model_path: Path, tmp_path: Path
) -> None:
    archive = tmp_path / "bundle.tar"
    archive.write_bytes(bundle_of(model_path.parent, ["m.onnx", "m.onnx.data"]))

    loaded = load_model(
        ModelSource(archive, ModelFormat.ONNX_BUNDLE), inline_weight_limit=STREAMED_LIMIT
    )

    assert loaded.module(inputs()).shape == (5, 3)


def test_a_data_file_shorter_than_its_tensors_is_refused_naming_one(model_path: Path) -> None:
    data = model_path.with_name("m.onnx.data")
    data.write_bytes(data.read_bytes()[:1000])

    with pytest.raises(InvalidModel, match="tensor 'w1' lies outside its file"):
        load_onnx_classifier(model_path, allow_external_data=True, inline_limit=STREAMED_LIMIT)


def written(model_path: Path, out: Path, limit: int) -> bool:
    module = load_onnx_classifier(model_path, allow_external_data=True, inline_limit=STREAMED_LIMIT)
    with torch.no_grad():
        module.onnx_tensor("w1").mul_(2)
    out.mkdir()
    return write_trained_onnx(module, out / "hardened.onnx", inline_limit=limit)


def test_weights_over_the_limit_are_written_to_a_data_file_beside_the_model(
    model_path: Path, tmp_path: Path
) -> None:
    weights = model_path.with_name("m.onnx.data").stat().st_size

    assert written(model_path, tmp_path / "out", weights - 1)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "hardened.onnx",
        "hardened.onnx.data",
    ]


def test_weights_at_the_limit_stay_inside_the_onnx(model_path: Path, tmp_path: Path) -> None:
    weights = model_path.with_name("m.onnx.data").stat().st_size

    assert not written(model_path, tmp_path / "out", weights)
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["hardened.onnx"]


def test_onnxruntime_reads_the_trained_weights_from_the_data_file(
    model_path: Path, tmp_path: Path
) -> None:
    module = load_onnx_classifier(model_path, allow_external_data=True, inline_limit=STREAMED_LIMIT)
    with torch.no_grad():
        module.onnx_tensor("w1").mul_(2)
        expected = module(inputs()).numpy()
    write_trained_onnx(module, tmp_path / "hardened.onnx", inline_limit=STREAMED_LIMIT)

    session = ort.InferenceSession(str(tmp_path / "hardened.onnx"))
    (actual,) = session.run(None, {"x": inputs().numpy()})

    np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-5)


def test_a_model_with_external_data_comes_back_as_a_bundle_that_unpacks_like_an_upload(
    model_path: Path, tmp_path: Path
) -> None:
    assert written(model_path, tmp_path / "out", STREAMED_LIMIT)
    add_metadata(tmp_path / "out" / "hardened.onnx", {"tempering.report": '{"kind": "test"}'})

    returned, bundled = package_model(tmp_path / "out" / "hardened.onnx")
    unpacked = tmp_path / "unpacked"
    unpacked.mkdir()
    model = unpack_bundle(returned, unpacked)

    assert bundled
    assert returned.name == "hardened.onnx.tar"
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["hardened.onnx.tar"]
    assert sorted(p.name for p in unpacked.iterdir()) == ["hardened.onnx", "hardened.onnx.data"]
    session = ort.InferenceSession(str(model))
    assert session.get_modelmeta().custom_metadata_map["tempering.report"] == '{"kind": "test"}'


def test_a_self_contained_model_comes_back_as_it_is(model_path: Path, tmp_path: Path) -> None:
    written(model_path, tmp_path / "out", 10**9)

    returned, bundled = package_model(tmp_path / "out" / "hardened.onnx")

    assert not bundled
    assert returned == tmp_path / "out" / "hardened.onnx"


def test_packing_the_same_files_gives_the_same_bytes(model_path: Path, tmp_path: Path) -> None:
    first, second = tmp_path / "first.tar", tmp_path / "second.tar"

    pack_bundle(model_path, ["m.onnx.data"], first)
    pack_bundle(model_path, ["m.onnx.data"], second)

    digest = hashlib.sha256(first.read_bytes()).hexdigest()
    assert digest == hashlib.sha256(second.read_bytes()).hexdigest()
    assert [e.name for e in list_bundle(first)] == ["m.onnx", "m.onnx.data"]


def test_a_data_file_outside_the_model_folder_is_not_packed(
    model_path: Path, tmp_path: Path
) -> None:
    (tmp_path / "elsewhere.data").write_bytes(b"secret")

    with pytest.raises(InvalidModel, match="points outside the bundle"):
        pack_bundle(model_path, ["../elsewhere.data"], tmp_path / "out.tar")
    assert not (tmp_path / "out.tar").exists()
