"""``temper harden --local`` on a model with external data: read in place beside its data files,
or from a bundle (.tar, or .zip re-packed as one), with the same checks as on a server."""

from __future__ import annotations

import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from client_helpers import CliResult, CliRunner

from tests.bundle_support import file_member, tar_bytes

pytestmark = pytest.mark.slow

onnx = pytest.importorskip("onnx")


@pytest.fixture(autouse=True)
def one_torch_thread() -> Iterator[None]:
    torch = pytest.importorskip("torch")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def split_model(digits_model: Path, tmp_path: Path) -> Path:
    """The digits CNN with its weights in ``cnn.onnx.data``, as the dynamo exporter writes."""
    path = tmp_path / "export" / "cnn.onnx"
    path.parent.mkdir()
    onnx.save(
        onnx.load(digits_model),
        path,
        save_as_external_data=True,
        location="cnn.onnx.data",
        size_threshold=0,
    )
    return path


def harden(temper: CliRunner, model: Path, train: Path, output: Path) -> CliResult:
    return temper(
        "harden", model, "--data", train, "--method", "fgsm", "--eps", "0.1", "--epochs", "1",
        "--suite", "fast", "--eval-samples", "32", "--local", "-o", output,
    )  # fmt: skip


def test_local_harden_reads_external_data_beside_the_model(
    temper: CliRunner, split_model: Path, digits_train: Path, tmp_path: Path
) -> None:
    output = tmp_path / "out" / "hardened.onnx"

    result = harden(temper, split_model, digits_train, output)

    assert result.code == 0, result.err
    assert not output.with_name("hardened.onnx.data").exists()
    onnx.checker.check_model(onnx.load(output))


def test_local_harden_takes_a_zip_bundle(
    temper: CliRunner, split_model: Path, digits_train: Path, tmp_path: Path
) -> None:
    bundle = tmp_path / "cnn.zip"
    with zipfile.ZipFile(bundle, "w") as archive:
        archive.write(split_model, "cnn.onnx")
        archive.write(split_model.with_name("cnn.onnx.data"), "cnn.onnx.data")
    output = tmp_path / "out" / "hardened.onnx"

    result = harden(temper, bundle, digits_train, output)

    assert result.code == 0, result.err
    assert [p.name for p in output.parent.iterdir() if p.name.startswith(".temper")] == []


def test_local_harden_refuses_a_bundle_member_outside_it_with_exit_4(
    temper: CliRunner, split_model: Path, digits_train: Path, tmp_path: Path
) -> None:
    bundle = tmp_path / "cnn.tar"
    bundle.write_bytes(
        tar_bytes(
            [
                file_member("cnn.onnx", split_model.read_bytes()),
                file_member(
                    "../cnn.onnx.data", split_model.with_name("cnn.onnx.data").read_bytes()
                ),
            ]
        )
    )

    result = harden(temper, bundle, digits_train, tmp_path / "h.onnx")

    assert result.code == 4
    assert "bundle member '../cnn.onnx.data' points outside the bundle" in result.err


def test_local_harden_over_the_inline_limit_returns_the_model_unpacked_in_a_folder(
    temper: CliRunner,
    split_model: Path,
    digits_train: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import dataclasses

    from workers.engine import pipeline

    real_harden = pipeline.harden

    def over_the_limit(request: object, *args: object, **kwargs: object) -> object:
        lowered = dataclasses.replace(request, inline_weight_limit=100_000)  # type: ignore[type-var]
        return real_harden(lowered, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(pipeline, "harden", over_the_limit)
    output = tmp_path / "out" / "hardened.onnx"

    result = harden(temper, split_model, digits_train, output)

    folder = tmp_path / "out" / "hardened"
    assert result.code == 0, result.err
    assert sorted(p.name for p in folder.iterdir()) == ["hardened.onnx", "hardened.onnx.data"]
    assert f"hardened model: {folder / 'hardened.onnx'}" in result.out
    assert "tempering.report" in {
        p.key for p in onnx.load(folder / "hardened.onnx", load_external_data=False).metadata_props
    }
    assert output.with_name("hardened.report.json").is_file()
    assert [p.name for p in output.parent.iterdir() if p.name.startswith(".")] == []
