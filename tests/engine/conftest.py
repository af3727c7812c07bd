"""Shared fixtures for engine tests: scikit-learn's digits and a small CNN trained on them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from workers.engine import samples
from workers.engine.models.registry import small_cnn


@pytest.fixture(scope="session")
def digits_npz(tmp_path_factory: pytest.TempPathFactory) -> Path:
    dataset = samples.digits()
    path = tmp_path_factory.mktemp("data") / "digits.npz"
    np.savez(path, x=dataset.x, y=dataset.y)
    return path


def train_digits_cnn(epochs: int = 15, seed: int = 0) -> torch.nn.Module:
    """A plainly trained small CNN for 8x8 digits (about 97% clean accuracy, a few seconds)."""
    dataset = samples.digits()
    torch.manual_seed(seed)
    model = small_cnn((1, 8, 8), 10)
    x, y = torch.from_numpy(dataset.x), torch.from_numpy(dataset.y)
    optimizer = torch.optim.Adam(model.parameters(), lr=5e-3)
    generator = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        for index in torch.randperm(len(y), generator=generator).split(64):
            optimizer.zero_grad()
            F.cross_entropy(model(x[index]), y[index]).backward()
            optimizer.step()
    return model.eval()


@pytest.fixture(scope="session")
def digits_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    model = train_digits_cnn()
    path = tmp_path_factory.mktemp("model") / "digits_cnn.onnx"
    torch.onnx.export(
        model,
        (torch.rand(2, 1, 8, 8),),
        str(path),
        dynamo=False,
        opset_version=17,
        input_names=["image"],
        output_names=["logits"],
        dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}},
    )
    return path
