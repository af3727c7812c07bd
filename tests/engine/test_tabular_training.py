"""The training attack under a feature schema: small pieces beside the norm-ball steps."""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from tests.engine.tabular_support import SCHEMA, fraud_rows, train_mlp, valid_rows
from workers.engine.attacks.region import FeatureRegion, perturb_in_region
from workers.engine.geometry import Box
from workers.engine.tabular.constraints import build_constraints
from workers.engine.tabular.schema import parse_schema
from workers.engine.training.steps import AdversarialSetting, PgdStep, TradesStep

EPS = 0.5


def _region(x: np.ndarray) -> FeatureRegion:
    return FeatureRegion(build_constraints(parse_schema(SCHEMA), EPS, x), EPS)


def test_the_training_attack_returns_points_inside_the_schema() -> None:
    torch.manual_seed(0)
    x, y = fraud_rows(200)
    model = train_mlp(x, y, epochs=3)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)

    found = perturb_in_region(
        model,
        xt,
        lambda logits: F.cross_entropy(logits, yt),
        region=_region(x),
        eps=EPS,
        step=0.25,
        steps=10,
        generator=torch.Generator().manual_seed(0),
    )

    assert valid_rows(SCHEMA, found.numpy(), x, EPS, x).all()
    assert (found != xt).any(dim=1).float().mean() > 0.5


def test_epsilon_warm_up_scales_every_budget_but_leaves_flips_and_immutables() -> None:
    x, _ = fraud_rows(50)
    region = _region(x)

    half = region.at(EPS / 2).radius
    full = region.constraints.radius

    finite = torch.isfinite(full)
    assert torch.allclose(half[finite], full[finite] / 2)
    assert torch.isinf(half[~finite]).all()
    assert half[1] == 0


def test_pgd_and_trades_steps_with_a_region_train_on_valid_inputs() -> None:
    torch.manual_seed(0)
    x, y = fraud_rows(64)
    model = train_mlp(x, y, epochs=1)
    setting = AdversarialSetting(
        "linf",
        Box(torch.tensor(-math.inf), torch.tensor(math.inf)),
        torch.Generator().manual_seed(0),
        region=_region(x),
    )
    seen: list[torch.Tensor] = []
    model.register_forward_pre_hook(lambda _, args: seen.append(args[0].detach()))
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)

    for step in (PgdStep(setting, steps=3), TradesStep(setting, steps=3, beta=6.0)):
        seen.clear()
        loss, _ = step(model, xt, yt, EPS)
        assert torch.isfinite(loss)
        trained_on = seen[-1].numpy()
        assert valid_rows(SCHEMA, trained_on, x, EPS, x).all()
        assert not np.array_equal(trained_on, x)
