"""The client sends an ONNX model with external data as one bundle: it finds the data files the
model references without the onnx package, and packs the model and exactly those files into an
uncompressed tar, generated again for each pass instead of written to disk."""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import sys
import tarfile
import textwrap
import zipfile
from pathlib import Path

import pytest

from client.bundle import model_upload
from client.domain import ModelFormat, format_from_suffix
from client.errors import InvalidInput
from client.onnx_wire import external_data_locations
from tests.bundle_support import linear_with_external_data

onnx = pytest.importorskip("onnx")

REPO_ROOT = Path(__file__).resolve().parents[2]


def members_of(data: bytes) -> dict[str, bytes]:
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
        return {m.name: tar.extractfile(m).read() for m in tar if m.isfile()}  # type: ignore[union-attr]


def streamed(upload_chunks: object) -> bytes:
    return b"".join(upload_chunks)  # type: ignore[arg-type]


def test_the_wire_reader_uses_the_field_numbers_of_onnx_proto() -> None:
    from client import onnx_wire as wire

    numbers = {
        (onnx.ModelProto, "graph"): wire._MODEL_GRAPH,
        (onnx.ModelProto, "functions"): wire._MODEL_FUNCTIONS,
        (onnx.GraphProto, "node"): wire._GRAPH_NODE,
        (onnx.GraphProto, "initializer"): wire._GRAPH_INITIALIZER,
        (onnx.GraphProto, "sparse_initializer"): wire._GRAPH_SPARSE,
        (onnx.FunctionProto, "node"): wire._FUNCTION_NODE,
        (onnx.NodeProto, "attribute"): wire._NODE_ATTRIBUTE,
        (onnx.AttributeProto, "t"): wire._ATTR_T,
        (onnx.AttributeProto, "g"): wire._ATTR_G,
        (onnx.AttributeProto, "tensors"): wire._ATTR_TENSORS,
        (onnx.AttributeProto, "graphs"): wire._ATTR_GRAPHS,
        (onnx.AttributeProto, "sparse_tensor"): wire._ATTR_SPARSE,
        (onnx.AttributeProto, "sparse_tensors"): wire._ATTR_SPARSES,
        (onnx.SparseTensorProto, "values"): wire._SPARSE_VALUES,
        (onnx.SparseTensorProto, "indices"): wire._SPARSE_INDICES,
        (onnx.TensorProto, "external_data"): wire._TENSOR_EXTERNAL_DATA,
        (onnx.TensorProto, "data_location"): wire._TENSOR_DATA_LOCATION,
    }

    for (message, field), number in numbers.items():
        assert message.DESCRIPTOR.fields_by_name[field].number == number, (message, field)
    assert onnx.TensorProto.EXTERNAL == wire._EXTERNAL


def test_external_data_locations_are_read_without_onnx(tmp_path: Path) -> None:
    path = linear_with_external_data(tmp_path, location="weights/all.bin")

    assert external_data_locations(path) == ["weights/all.bin"]


def test_a_tensor_inside_a_node_attribute_is_found_too(tmp_path: Path) -> None:
    from onnx import helper, numpy_helper

    value = numpy_helper.from_array(__import__("numpy").ones(64, "f4"), "c")
    node = helper.make_node("Constant", [], ["y"], value=value)
    graph = helper.make_graph([node], "g", [], [helper.make_tensor_value_info("y", 1, [64])])
    path = tmp_path / "c.onnx"
    onnx.save(
        helper.make_model(graph),
        path,
        save_as_external_data=True,
        size_threshold=0,
        location="c.onnx.data",
        convert_attribute=True,
    )

    assert external_data_locations(path) == ["c.onnx.data"]


def test_a_self_contained_model_references_nothing(tmp_path: Path) -> None:
    path = linear_with_external_data(tmp_path)
    onnx.save(onnx.load(path), tmp_path / "whole.onnx")

    assert external_data_locations(tmp_path / "whole.onnx") == []


def test_a_model_with_external_data_goes_as_a_bundle_of_exactly_its_files(tmp_path: Path) -> None:
    path = linear_with_external_data(tmp_path)
    (tmp_path / "unrelated.bin").write_bytes(b"not referenced")

    upload = model_upload(path, ModelFormat.ONNX)
    data = streamed(upload.chunks())

    assert upload.format is ModelFormat.ONNX_BUNDLE
    assert members_of(data) == {
        "m.onnx": path.read_bytes(),
        "m.onnx.data": (tmp_path / "m.onnx.data").read_bytes(),
    }
    assert (upload.digest.size_bytes, upload.digest.sha256) == (
        len(data),
        hashlib.sha256(data).hexdigest(),
    )


def test_the_bundle_stream_is_the_same_bytes_each_time(tmp_path: Path) -> None:
    path = linear_with_external_data(tmp_path)
    upload = model_upload(path, ModelFormat.ONNX)
    first = streamed(upload.chunks())
    os.utime(tmp_path / "m.onnx.data", (1, 1))

    assert streamed(model_upload(path, ModelFormat.ONNX).chunks()) == first


def test_the_engine_accepts_the_bundle_the_client_makes(tmp_path: Path) -> None:
    from workers.engine.models.bundle import list_bundle

    upload = model_upload(linear_with_external_data(tmp_path / "export"), ModelFormat.ONNX)
    bundle = tmp_path / "bundle.tar"
    bundle.write_bytes(streamed(upload.chunks()))

    assert [e.name for e in list_bundle(bundle)] == ["m.onnx", "m.onnx.data"]


def test_a_self_contained_model_goes_as_the_file_itself(tmp_path: Path) -> None:
    path = linear_with_external_data(tmp_path)
    onnx.save(onnx.load(path), tmp_path / "whole.onnx")

    upload = model_upload(tmp_path / "whole.onnx", ModelFormat.ONNX)

    assert upload.format is ModelFormat.ONNX
    assert streamed(upload.chunks()) == (tmp_path / "whole.onnx").read_bytes()


def test_a_zip_bundle_is_repacked_as_a_tar(tmp_path: Path) -> None:
    path = linear_with_external_data(tmp_path / "export")
    with zipfile.ZipFile(tmp_path / "model.zip", "w", zipfile.ZIP_DEFLATED) as archive:
        archive.write(path, "m.onnx")
        archive.write(path.parent / "m.onnx.data", "m.onnx.data")

    upload = model_upload(tmp_path / "model.zip", format_from_suffix(tmp_path / "model.zip"))  # type: ignore[arg-type]

    assert upload.format is ModelFormat.ONNX_BUNDLE
    assert set(members_of(streamed(upload.chunks()))) == {"m.onnx", "m.onnx.data"}


def test_a_ready_tar_bundle_goes_as_it_is(tmp_path: Path) -> None:
    tar = tmp_path / "model.tar"
    tar.write_bytes(b"any bytes: the server judges them")

    upload = model_upload(tar, format_from_suffix(tar))  # type: ignore[arg-type]

    assert upload.format is ModelFormat.ONNX_BUNDLE
    assert streamed(upload.chunks()) == tar.read_bytes()


def test_a_referenced_data_file_that_is_missing_is_named_before_uploading(tmp_path: Path) -> None:
    path = linear_with_external_data(tmp_path)
    (tmp_path / "m.onnx.data").unlink()

    with pytest.raises(InvalidInput, match=r"external data file 'm\.onnx\.data', which is not"):
        model_upload(path, ModelFormat.ONNX)


@pytest.mark.parametrize("location", ["../outside.bin", "/etc/passwd"])
def test_a_location_outside_the_models_folder_is_refused_before_uploading(
    tmp_path: Path, location: str
) -> None:
    path = linear_with_external_data(tmp_path / "export")
    model = onnx.load(path, load_external_data=False)
    for tensor in model.graph.initializer:
        for entry in tensor.external_data:
            if entry.key == "location":
                entry.value = location
    onnx.save(model, path)

    with pytest.raises(InvalidInput, match="outside its folder"):
        model_upload(path, ModelFormat.ONNX)


def test_the_light_client_makes_a_bundle_with_onnx_blocked(tmp_path: Path) -> None:
    path = linear_with_external_data(tmp_path)
    script = textwrap.dedent(
        f"""
        import sys
        class Block:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in ("onnx", "numpy", "torch", "workers"):
                    raise ImportError(name)
        sys.meta_path.insert(0, Block())
        from pathlib import Path
        from client.bundle import model_upload
        from client.domain import ModelFormat
        upload = model_upload(Path({str(path)!r}), ModelFormat.ONNX)
        print(upload.format.value, upload.digest.size_bytes)
        """
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), str(REPO_ROOT / "proto")])}

    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120
    )

    assert result.returncode == 0, result.stderr
    fmt, size = result.stdout.split()
    assert fmt == "onnx_bundle"
    assert int(size) == model_upload(path, ModelFormat.ONNX).digest.size_bytes
