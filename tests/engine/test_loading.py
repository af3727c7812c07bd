"""Model loading: safe formats load, programs need the operator's switch, pickles never load."""

from __future__ import annotations

import pathlib
import pickle
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from workers.engine.errors import InvalidModel, UntrustedFormat
from workers.engine.models.loading import load_model, sniff_format
from workers.engine.models.registry import mlp, small_cnn
from workers.engine.spec import ModelFormat, ModelSource


class _Trap:
    """Unpickling this creates ``marker``: proof that code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (pathlib.Path.touch, (self.marker,))


def test_torch_save_pickle_is_refused_and_its_code_does_not_run(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "model.pt"
    torch.save({"state": _Trap(marker)}, path)
    for declared in (ModelFormat.TORCHSCRIPT, ModelFormat.ONNX, ModelFormat.SAFETENSORS):
        with pytest.raises(InvalidModel, match="pickle"):
            load_model(
                ModelSource(path, declared),
                allow_trusted_formats=True,
                sample_shape=(4,),
                num_classes=2,
            )
    assert not marker.exists()


def test_raw_pickle_is_refused_and_its_code_does_not_run(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "model.pt"
    path.write_bytes(pickle.dumps(_Trap(marker)))
    with pytest.raises(InvalidModel, match="pickle"):
        load_model(
            ModelSource(path, ModelFormat.TORCHSCRIPT),
            allow_trusted_formats=True,
            sample_shape=(4,),
            num_classes=2,
        )
    assert not marker.exists()


def _torchscript(tmp_path: Path) -> Path:
    path = tmp_path / "model.pt"
    torch.jit.script(mlp((4,), 3)).save(str(path))
    return path


def test_torchscript_is_refused_while_trusted_formats_are_off(tmp_path: Path) -> None:
    with pytest.raises(UntrustedFormat, match="programs"):
        load_model(
            ModelSource(_torchscript(tmp_path), ModelFormat.TORCHSCRIPT),
            sample_shape=(4,),
            num_classes=3,
        )


def test_torchscript_loads_and_trains_when_trusted_formats_are_on(tmp_path: Path) -> None:
    loaded = load_model(
        ModelSource(_torchscript(tmp_path), ModelFormat.TORCHSCRIPT),
        allow_trusted_formats=True,
        sample_shape=(4,),
        num_classes=3,
    )
    out = loaded.module(torch.rand(5, 4))
    out.sum().backward()
    assert out.shape == (5, 3)
    assert any(p.grad is not None for p in loaded.module.parameters())


def test_torch_export_archive_needs_trusted_formats(tmp_path: Path) -> None:
    path = tmp_path / "model.pt2"
    program = torch.export.export(mlp((4,), 3).eval(), (torch.rand(2, 4),))
    torch.export.save(program, str(path))
    assert sniff_format(path) == "torch_export"
    source = ModelSource(path, ModelFormat.TORCH_EXPORT)
    with pytest.raises(UntrustedFormat):
        load_model(source, sample_shape=(4,), num_classes=3)
    loaded = load_model(source, allow_trusted_formats=True, sample_shape=(4,), num_classes=3)
    assert loaded.module(torch.rand(2, 4)).shape == (2, 3)


def test_safetensors_weights_load_into_the_named_architecture(tmp_path: Path) -> None:
    reference = small_cnn((1, 8, 8), 10)
    path = tmp_path / "w.safetensors"
    save_file(reference.state_dict(), str(path))
    source = ModelSource(path, ModelFormat.SAFETENSORS, architecture="small_cnn")
    loaded = load_model(source, sample_shape=(1, 8, 8), num_classes=10)
    x = torch.rand(3, 1, 8, 8)
    assert torch.equal(loaded.module(x), reference(x))


def test_safetensors_without_an_architecture_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "w.safetensors"
    save_file(mlp((4,), 2).state_dict(), str(path))
    with pytest.raises(InvalidModel, match="name the built-in architecture"):
        load_model(ModelSource(path, ModelFormat.SAFETENSORS), sample_shape=(4,), num_classes=2)


def test_safetensors_of_the_wrong_shape_say_so(tmp_path: Path) -> None:
    path = tmp_path / "w.safetensors"
    save_file(mlp((4,), 2).state_dict(), str(path))
    source = ModelSource(path, ModelFormat.SAFETENSORS, architecture="mlp")
    with pytest.raises(InvalidModel, match="do not fit architecture 'mlp'"):
        load_model(source, sample_shape=(5,), num_classes=2)


def test_bytes_that_are_not_what_the_declared_format_says_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "model.onnx"
    save_file(mlp((4,), 2).state_dict(), str(path))
    with pytest.raises(InvalidModel, match="declared as onnx but its bytes are safetensors"):
        load_model(ModelSource(path, ModelFormat.ONNX))


def test_random_bytes_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "model.onnx"
    path.write_bytes(bytes(range(256)) * 4)
    with pytest.raises(InvalidModel):
        load_model(ModelSource(path, ModelFormat.ONNX))


def test_onnx_upload_keeps_its_softmax_contract_and_trains_on_logits(tmp_path: Path) -> None:
    model = nn.Sequential(mlp((4,), 3), nn.Softmax(dim=1)).eval()
    path = tmp_path / "model.onnx"
    torch.onnx.export(
        model,
        (torch.rand(2, 4),),
        str(path),
        dynamo=False,
        opset_version=17,
        input_names=["x"],
        output_names=["p"],
        dynamic_axes={"x": {0: "b"}, "p": {0: "b"}},
    )
    loaded = load_model(ModelSource(path, ModelFormat.ONNX))
    x = torch.rand(6, 4)
    assert loaded.final_activation == "Softmax"
    assert torch.allclose(torch.softmax(loaded.module(x), 1), model(x), atol=1e-6)
