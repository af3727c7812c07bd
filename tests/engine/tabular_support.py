"""A small generated fraud-like tabular set with a schema that has every kind of feature, an MLP
plainly trained on it (standardising inside the model, so it reads raw units), and a validator
written from the schema's JSON alone, sharing no code with the engine's checks."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

SCHEMA: dict[str, Any] = {
    "features": [
        {"name": "amount", "lower": 0, "upper": 1000, "budget": {"range_share": 0.05}},
        {"name": "account_age", "kind": "integer", "lower": 0, "upper": 5000, "mutable": False},
        {"name": "tx_24h", "kind": "integer", "lower": 0, "upper": 50, "budget": {"absolute": 2}},
        {"name": "foreign", "kind": "binary"},
        {"name": "merchant", "kind": "categorical", "columns": ["food", "travel", "online"]},
        {"name": "country", "kind": "categorical", "columns": ["c1", "c2"], "mutable": False},
    ]
}
COLUMNS = 9


def fraud_rows(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    amount = rng.uniform(0, 1000, n)
    age = rng.integers(0, 5001, n)
    tx = rng.integers(0, 51, n)
    foreign = rng.integers(0, 2, n)
    merchant = np.eye(3)[rng.integers(0, 3, n)]
    country = np.eye(2)[rng.integers(0, 2, n)]
    score = (
        amount / 250
        - age / 1500
        + tx / 10
        + 1.5 * foreign
        + 1.5 * merchant[:, 2]
        - 3.0
        + rng.normal(0, 0.5, n)
    )
    x = np.column_stack([amount, age, tx, foreign, merchant, country]).astype(np.float32)
    return x, (score > 0).astype(np.int64)


class StandardisedMlp(nn.Module):
    def __init__(self, mean: np.ndarray, std: np.ndarray, hidden: int = 32) -> None:
        super().__init__()
        self.register_buffer("mean", torch.from_numpy(mean.astype(np.float32)))
        self.register_buffer("std", torch.from_numpy(std.astype(np.float32)))
        self.net = nn.Sequential(
            nn.Linear(len(mean), hidden),
            nn.ReLU(),
            nn.Linear(hidden, hidden),
            nn.ReLU(),
            nn.Linear(hidden, 2),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.net((x - self.mean) / self.std)
        return out


def train_mlp(x: np.ndarray, y: np.ndarray, epochs: int = 30, seed: int = 0) -> StandardisedMlp:
    torch.manual_seed(seed)
    model = StandardisedMlp(x.mean(0), x.std(0) + 1e-6)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    generator = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        for index in torch.randperm(len(yt), generator=generator).split(64):
            optimizer.zero_grad()
            F.cross_entropy(model(xt[index]), yt[index]).backward()
            optimizer.step()
    return model.eval()


def write_case(
    directory: Path,
    n: int = 600,
    seed: int = 0,
    rows: Callable[[int, int], tuple[np.ndarray, np.ndarray]] = fraud_rows,
    schema: dict[str, Any] | None = None,
) -> tuple[Path, Path, Path]:
    """The model (ONNX), the data (.npz) and the schema (JSON) in ``directory``: by default the
    fraud-like set and :data:`SCHEMA`, else ``rows`` and ``schema``."""
    x, y = rows(n, seed)
    model = train_mlp(x, y, seed=seed)
    model_path, data_path, schema_path = (
        directory / "fraud.onnx",
        directory / "fraud.npz",
        directory / "schema.json",
    )
    torch.onnx.export(
        model,
        (torch.from_numpy(x[:2]),),
        str(model_path),
        dynamo=False,
        opset_version=17,
        input_names=["features"],
        output_names=["logits"],
        dynamic_axes={"features": {0: "batch"}, "logits": {0: "batch"}},
    )
    np.savez(data_path, x=x, y=y)
    schema_path.write_text(json.dumps(SCHEMA if schema is None else schema))
    return model_path, data_path, schema_path


def valid_rows(
    schema: dict[str, Any], point: np.ndarray, clean: np.ndarray, eps: float, train_x: np.ndarray
) -> np.ndarray:
    """Per row, whether ``point`` is a schema-valid move from ``clean``: ranges, budgets (an
    absolute one, a share of the range or of the standard deviation, else ``eps``), immutable
    features, integers, binaries and one-hot groups, from the schema's JSON alone."""
    ok = np.ones(len(point), dtype=bool)
    column = 0
    for feature in schema["features"]:
        kind = feature.get("kind", "continuous")
        width = len(feature["columns"]) if kind == "categorical" else 1
        block, before = point[:, column : column + width], clean[:, column : column + width]
        if not feature.get("mutable", True):
            ok &= (block == before).all(axis=1)
        elif kind == "categorical":
            ok &= np.isin(block, (0.0, 1.0)).all(axis=1) & (block.sum(axis=1) == 1)
        elif kind == "binary":
            ok &= np.isin(block[:, 0], (0.0, 1.0))
        else:
            value, start = block[:, 0], before[:, 0]
            low, high = feature.get("lower", -np.inf), feature.get("upper", np.inf)
            ok &= (value >= low - 1e-5) & (value <= high + 1e-5)
            if kind == "integer":
                ok &= value == np.round(value)
            budget = feature.get("budget")
            if budget is None:
                radius = eps
            elif "absolute" in budget:
                radius = budget["absolute"]
            elif "range_share" in budget:
                radius = budget["range_share"] * (high - low)
            else:
                radius = budget["std_share"] * float(np.std(train_x[:, column]))
            ok &= np.abs(value - start) <= radius * (1 + 1e-5) + 1e-5
        column += width
    return ok
