"""Specification of FAB-T (workers.engine.evaluation.fab)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import linprog, minimize
from sklearn.datasets import load_digits
from torch import Tensor, nn

from workers.engine.evaluation.fab import (
    fab_targeted,
    fab_targeted_min_norm,
    project_to_hyperplane_in_box,
)
from workers.engine.geometry import Box, NormName

NORMS: tuple[NormName, ...] = ("linf", "l2")
LOOSE_BOX = Box(torch.tensor(-10.0, dtype=torch.float64), torch.tensor(10.0, dtype=torch.float64))


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _dist(a: Tensor, b: Tensor, norm: NormName) -> Tensor:
    diff = (a - b).flatten(1)
    return diff.abs().amax(dim=1) if norm == "linf" else torch.linalg.vector_norm(diff, dim=1)


def _linear(weight: Tensor, bias: Tensor) -> Callable[[Tensor], Tensor]:
    return lambda x: x.flatten(1) @ weight.T + bias


def _two_class_problem(seed: int) -> tuple[Callable[[Tensor], Tensor], Tensor, Tensor, Tensor]:
    """A linear 2-class model on 1x3x4 inputs far inside LOOSE_BOX; returns the weight gap too."""
    gen = _gen(seed)
    weight = torch.randn(2, 12, generator=gen, dtype=torch.float64)
    bias = torch.randn(2, generator=gen, dtype=torch.float64)
    model = _linear(weight, bias)
    x = 2 * torch.rand(24, 1, 3, 4, generator=gen, dtype=torch.float64) - 1
    return model, x, model(x).argmax(dim=1), weight[1] - weight[0]


def _analytic_distance(model: Callable[[Tensor], Tensor], x: Tensor, gap: Tensor, norm: NormName):
    """Distance to the decision boundary of a 2-class linear model in the dual norm of ``gap``."""
    logits = model(x)
    dual = 1 if norm == "linf" else 2
    return (logits[:, 0] - logits[:, 1]).abs() / torch.linalg.vector_norm(gap, ord=dual)


def _projection_instances(seed: int, n: int = 30, dim: int = 6):
    gen = _gen(seed)
    t = torch.rand(n, dim, generator=gen, dtype=torch.float64)
    w = torch.randn(n, dim, generator=gen, dtype=torch.float64)
    w[w.abs() < 0.3] = 0.0
    delta = 0.8 * torch.randn(n, generator=gen, dtype=torch.float64)
    return t, w, delta, torch.zeros_like(t), torch.ones_like(t)


def _reference_projection(t: np.ndarray, w: np.ndarray, delta: float, norm: NormName):
    """Minimal norm of ``d`` with ``w.d = delta`` and ``0 <= t + d <= 1`` by a generic solver."""
    dim = t.size
    bounds = [(-t[i], 1 - t[i]) for i in range(dim)]
    if norm == "linf":
        eye, ones = np.eye(dim), np.ones((dim, 1))
        res = linprog(
            np.r_[np.zeros(dim), 1.0],
            A_ub=np.block([[eye, -ones], [-eye, -ones]]),
            b_ub=np.zeros(2 * dim),
            A_eq=np.r_[w, 0.0][None],
            b_eq=[delta],
            bounds=[*bounds, (0, None)],
        )
        return res.fun if res.status == 0 else None
    res = minimize(
        lambda z: z @ z,
        np.zeros(dim),
        jac=lambda z: 2 * z,
        constraints=[{"type": "eq", "fun": lambda z: w @ z - delta, "jac": lambda z: w}],
        bounds=bounds,
        method="SLSQP",
        options={"ftol": 1e-14, "maxiter": 500},
    )
    feasible = res.success and abs(w @ res.x - delta) < 1e-8
    return float(np.sqrt(res.x @ res.x)) if feasible else None


@pytest.mark.parametrize("norm", NORMS)
def test_projection_is_the_minimal_step_onto_hyperplane_within_box(norm: NormName) -> None:
    t, w, delta, lower, upper = _projection_instances(seed=3)
    step = project_to_hyperplane_in_box(t, w, delta, lower, upper, norm)
    checked = 0
    for i in range(t.shape[0]):
        best = _reference_projection(t[i].numpy(), w[i].numpy(), delta[i].item(), norm)
        if best is None:
            continue
        checked += 1
        assert (w[i] @ step[i]).item() == pytest.approx(delta[i].item(), abs=1e-9)
        assert _dist(step[i : i + 1], torch.zeros_like(step[i : i + 1]), norm).item() == (
            pytest.approx(best, abs=1e-6)
        )
    assert checked >= 10
    assert ((t + step >= lower) & (t + step <= upper)).all()


@pytest.mark.parametrize("norm", NORMS)
def test_projection_moves_to_nearest_box_corner_when_hyperplane_misses_box(norm: NormName) -> None:
    t = torch.tensor([[0.5, 0.5, 0.5]], dtype=torch.float64)
    w = torch.tensor([[1.0, -2.0, 0.0]], dtype=torch.float64)
    delta = torch.tensor([10.0], dtype=torch.float64)
    step = project_to_hyperplane_in_box(t, w, delta, torch.zeros_like(t), torch.ones_like(t), norm)
    assert torch.equal(step, torch.tensor([[0.5, -0.5, 0.0]], dtype=torch.float64))


@pytest.mark.parametrize("norm", NORMS)
def test_projection_handles_unbounded_coordinates(norm: NormName) -> None:
    t, w, delta, _, _ = _projection_instances(seed=4)
    unbounded = torch.full_like(t, float("inf"))
    step = project_to_hyperplane_in_box(t, w, delta, -unbounded, unbounded, norm)
    assert torch.isfinite(step).all()
    assert torch.allclose((w * step).sum(dim=1), delta, atol=1e-9)


@pytest.mark.parametrize("norm", NORMS)
def test_min_norm_search_gets_within_two_percent_of_analytic_distance(norm: NormName) -> None:
    model, x, y, gap = _two_class_problem(seed=0)
    x_min, dist = fab_targeted_min_norm(model, x, y, norm=norm, box=LOOSE_BOX)
    exact = _analytic_distance(model, x, gap, norm)
    assert (model(x_min).argmax(dim=1) != y).all()
    assert torch.allclose(_dist(x_min, x, norm), dist)
    assert (dist >= exact * (1 - 1e-9)).all()
    assert (dist <= exact * 1.02).all()


@pytest.mark.parametrize("norm", NORMS)
def test_breaks_a_sample_exactly_when_eps_exceeds_its_boundary_distance(norm: NormName) -> None:
    model, x, y, gap = _two_class_problem(seed=1)
    exact = _analytic_distance(model, x, gap, norm)
    eps = exact.median().item()
    x_adv = fab_targeted(model, x, y, norm=norm, eps=eps, box=LOOSE_BOX)
    broken = model(x_adv).argmax(dim=1) != y
    assert broken[exact < eps / 1.05].all()
    assert not broken[exact > eps].any()
    assert (exact < eps / 1.05).sum() >= 5


@pytest.mark.parametrize("norm", NORMS)
def test_targets_the_most_likely_wrong_classes_first(norm: NormName) -> None:
    # Class 1 is the runner-up at x but can never win (its logit gap is constant); class 2 is
    # less likely at x but wins beyond x_0 = 0.5.
    def model(x: Tensor) -> Tensor:
        zero = torch.zeros_like(x[:, 0])
        return torch.stack((zero, zero - 1.0, 10.0 * x[:, 0] - 5.0), dim=1)

    x = torch.zeros(1, 2, dtype=torch.float64)
    y = torch.zeros(1, dtype=torch.long)
    _, only_runner_up = fab_targeted_min_norm(
        model, x, y, norm=norm, box=LOOSE_BOX, n_target_classes=1
    )
    _, top_two = fab_targeted_min_norm(model, x, y, norm=norm, box=LOOSE_BOX, n_target_classes=2)
    assert torch.isinf(only_runner_up).all()
    assert top_two.item() == pytest.approx(0.5, rel=0.02)


@st.composite
def _problems(draw: st.DrawFn) -> tuple[Callable[[Tensor], Tensor], Tensor, Tensor, Box, float]:
    seed = draw(st.integers(0, 2**16))
    shape = draw(st.sampled_from([(3, 5), (2, 2, 3, 3), (3, 3, 2, 4)]))
    eps = draw(st.floats(0.01, 2.0))
    gen = _gen(seed)
    channels = shape[1]
    per = (1, channels) if len(shape) == 2 else (1, channels, 1, 1)
    lower = -torch.rand(per, generator=gen)
    upper = 0.1 + torch.rand(per, generator=gen)
    x = lower + (upper - lower) * torch.rand(shape, generator=gen)
    features = x[0].numel()
    w1 = torch.randn(features, 8, generator=gen)
    w2 = torch.randn(8, 3, generator=gen)

    def model(v: Tensor) -> Tensor:
        return torch.tanh(v.flatten(1) @ w1) @ w2

    return model, x, model(x).argmax(dim=1), Box(lower, upper), eps


@settings(max_examples=12, deadline=None)
@given(problem=_problems(), norm=st.sampled_from(NORMS))
def test_result_stays_in_eps_ball_and_box(problem, norm: NormName) -> None:
    model, x, y, box, eps = problem
    x_adv = fab_targeted(model, x, y, norm=norm, eps=eps, box=box, n_target_classes=2, steps=10)
    assert x_adv.shape == x.shape
    assert x_adv.dtype == x.dtype
    assert (_dist(x_adv, x, norm) <= eps).all()
    assert ((x_adv >= box.lower) & (x_adv <= box.upper)).all()


def test_misclassified_samples_come_back_unchanged() -> None:
    model, x, y, _ = _two_class_problem(seed=2)
    labels = torch.where(torch.arange(len(y)) % 2 == 0, 1 - y, y)
    x_adv = fab_targeted(model, x, labels, norm="linf", eps=5.0, box=LOOSE_BOX)
    misclassified = labels != y
    assert torch.equal(x_adv[misclassified], x[misclassified])
    assert (model(x_adv[~misclassified]).argmax(dim=1) != y[~misclassified]).all()


def test_same_generator_seed_gives_identical_results() -> None:
    model, x, y, _ = _two_class_problem(seed=3)

    def run() -> Tensor:
        return fab_targeted_min_norm(
            model,
            x,
            y,
            norm="l2",
            box=LOOSE_BOX,
            steps=5,
            restarts=3,
            start_radius=1.0,
            generator=_gen(7),
        )[0]

    assert torch.equal(run(), run())


class _TinyNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(6, 4))

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


def test_leaves_model_mode_and_parameter_gradients_untouched() -> None:
    torch.manual_seed(0)
    model = _TinyNet().train()
    x = torch.rand(5, 6)
    y = model(x).argmax(dim=1).detach()
    fab_targeted(
        model, x, y, norm="linf", eps=0.5, box=Box(torch.tensor(0.0), torch.tensor(1.0)), steps=5
    )
    assert model.training
    assert all(p.grad is None for p in model.parameters())


@pytest.fixture(scope="module")
def digits_cnn() -> tuple[nn.Module, Tensor, Tensor]:
    """A small CNN trained for about a second on 8x8 digits in [0, 1]; returns held-out data."""
    data = load_digits()
    x = torch.tensor(data.data / 16.0, dtype=torch.float32).reshape(-1, 1, 8, 8)
    y = torch.tensor(data.target)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        net = nn.Sequential(
            nn.Conv2d(1, 8, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(8, 16, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.Flatten(),
            nn.Linear(256, 10),
        )
        opt = torch.optim.Adam(net.parameters(), lr=1e-2)
        for _ in range(15):
            for batch in torch.randperm(1500).split(100):
                loss = nn.functional.cross_entropy(net(x[batch]), y[batch])
                opt.zero_grad()
                loss.backward()
                opt.step()
    return net.eval(), x[1500:1600], y[1500:1600]


@pytest.mark.parametrize(("norm", "eps"), [("linf", 0.1), ("l2", 0.5)])
def test_lowers_accuracy_of_a_digits_cnn_below_clean(
    digits_cnn, norm: NormName, eps: float
) -> None:
    net, x, y = digits_cnn
    box = Box(torch.tensor(0.0), torch.tensor(1.0))
    x_adv = fab_targeted(net, x, y, norm=norm, eps=eps, box=box, n_target_classes=3, steps=20)
    with torch.no_grad():
        clean = (net(x).argmax(dim=1) == y).float().mean().item()
        robust = (net(x_adv).argmax(dim=1) == y).float().mean().item()
    assert clean > 0.8
    assert robust < clean - 0.2
    assert (_dist(x_adv, x, norm) <= eps).all()
