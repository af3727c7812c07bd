"""Scaling a classifier's logits through its output layer, for distillation's start."""

from __future__ import annotations

import torch
from torch import nn

from workers.engine.models.registry import small_cnn
from workers.engine.training.logit_scale import scale_logits


def test_an_mlp_gets_its_logits_multiplied_by_the_factor() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 8), nn.ReLU(), nn.Linear(8, 3))
    x = torch.randn(16, 5)
    before = model(x).detach()
    assert scale_logits(model, 100.0, x, 3)
    torch.testing.assert_close(model(x).detach(), 100 * before, rtol=1e-4, atol=1e-4)


def test_a_cnn_gets_its_logits_multiplied_by_the_factor() -> None:
    torch.manual_seed(0)
    model = small_cnn((1, 8, 8), 10).eval()
    x = torch.rand(16, 1, 8, 8)
    before = model(x).detach()
    assert scale_logits(model, 50.0, x, 10)
    torch.testing.assert_close(model(x).detach(), 50 * before, rtol=1e-4, atol=1e-3)


class _SquaredOutput(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.layer = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer(x) ** 2


def test_a_model_whose_logits_no_layer_scales_is_left_unchanged() -> None:
    torch.manual_seed(0)
    model = _SquaredOutput()
    x = torch.randn(8, 4)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    assert not scale_logits(model, 10.0, x, 2)
    for name, value in model.state_dict().items():
        assert torch.equal(value, state[name])
