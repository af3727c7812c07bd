"""Specification of the Square attack (workers.engine.evaluation.square)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.datasets import load_digits
from torch import Tensor, nn

from workers.engine.evaluation.square import square
from workers.engine.geometry import Box, NormName

NORMS: tuple[NormName, ...] = ("linf", "l2")
LOOSE_BOX = Box(torch.tensor(-10.0), torch.tensor(10.0))


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _dist(a: Tensor, b: Tensor, norm: NormName) -> Tensor:
    diff = (a - b).flatten(1)
    return diff.abs().amax(dim=1) if norm == "linf" else torch.linalg.vector_norm(diff, dim=1)


def _linear_problem(
    shape: tuple[int, ...], norm: NormName, seed: int = 0
) -> tuple[Callable[[Tensor], Tensor], Tensor, Tensor, Tensor]:
    """A linear 2-class model, inputs far inside LOOSE_BOX, and each input's boundary distance.

    For ``z = W x + b`` the smallest perturbation flipping the decision has norm
    ``|z_0 - z_1| / ||w_1 - w_0||_*`` (the dual norm: l1 for linf, l2 for l2).
    """
    gen = _gen(seed)
    features = torch.Size(shape[1:]).numel()
    weight = torch.randn(2, features, generator=gen)
    model = _linear(weight)
    x = 2 * torch.rand(shape, generator=gen) - 1
    logits = model(x)
    dual = 1 if norm == "linf" else 2
    dist = (logits[:, 0] - logits[:, 1]).abs() / torch.linalg.vector_norm(
        weight[1] - weight[0], ord=dual
    )
    return model, x, logits.argmax(dim=1), dist


def _linear(weight: Tensor) -> Callable[[Tensor], Tensor]:
    return lambda x: x.flatten(1) @ weight.T


@pytest.mark.parametrize("shape", [(60, 1, 8, 8), (60, 64)], ids=["image", "flat"])
@pytest.mark.parametrize("norm", NORMS)
def test_breaks_linear_model_points_at_half_the_budget_and_never_safe_ones(
    norm: NormName, shape: tuple[int, ...]
) -> None:
    model, x, y, dist = _linear_problem(shape, norm)
    eps = dist.median().item()
    x_adv = square(model, x, y, norm=norm, eps=eps, box=LOOSE_BOX, queries=400)
    broken = model(x_adv).argmax(dim=1) != y
    breakable = dist < eps / 2
    assert breakable.sum() >= 5
    assert broken[breakable].all()
    assert not broken[dist > eps].any()


@st.composite
def _problems(draw: st.DrawFn) -> tuple[Callable[[Tensor], Tensor], Tensor, Tensor, Box, float]:
    seed = draw(st.integers(0, 2**16))
    shape = draw(st.sampled_from([(3, 5), (2, 2, 6), (2, 2, 5, 5), (3, 3, 4, 6)]))
    eps = draw(st.floats(0.01, 2.0))
    gen = _gen(seed)
    per = (1, shape[1], *([1] * (len(shape) - 2)))
    lower = -torch.rand(per, generator=gen)
    upper = 0.1 + torch.rand(per, generator=gen)
    x = lower + (upper - lower) * torch.rand(shape, generator=gen)
    w1 = torch.randn(x[0].numel(), 8, generator=gen)
    w2 = torch.randn(8, 3, generator=gen)

    def model(v: Tensor) -> Tensor:
        return torch.tanh(v.flatten(1) @ w1) @ w2

    return model, x, model(x).argmax(dim=1), Box(lower, upper), eps


@settings(max_examples=15, deadline=None)
@given(problem=_problems(), norm=st.sampled_from(NORMS))
def test_result_stays_in_eps_ball_and_box(problem, norm: NormName) -> None:
    model, x, y, box, eps = problem
    x_adv = square(model, x, y, norm=norm, eps=eps, box=box, queries=40)
    assert x_adv.shape == x.shape
    assert x_adv.dtype == x.dtype
    assert (_dist(x_adv, x, norm) <= eps).all()
    assert ((x_adv >= box.lower) & (x_adv <= box.upper)).all()


def test_misclassified_samples_come_back_unchanged() -> None:
    model, x, y, dist = _linear_problem((40, 1, 8, 8), "linf")
    labels = torch.where(torch.arange(len(y)) % 2 == 0, 1 - y, y)
    eps = 2 * dist.max().item()
    x_adv = square(model, x, labels, norm="linf", eps=eps, box=LOOSE_BOX, queries=200)
    misclassified = labels != y
    assert torch.equal(x_adv[misclassified], x[misclassified])
    assert (model(x_adv[~misclassified]).argmax(dim=1) != y[~misclassified]).all()


@pytest.mark.parametrize("norm", NORMS)
def test_same_generator_seed_gives_identical_results(norm: NormName) -> None:
    model, x, y, dist = _linear_problem((30, 1, 8, 8), norm)
    eps = dist.median().item()

    def run(seed: int) -> Tensor:
        return square(
            model, x, y, norm=norm, eps=eps, box=LOOSE_BOX, queries=100, generator=_gen(seed)
        )

    assert torch.equal(run(5), run(5))
    assert not torch.equal(run(5), run(6))


def test_stops_querying_a_sample_once_it_is_broken() -> None:
    model, x, y, dist = _linear_problem((20, 1, 8, 8), "linf")
    rows_queried: list[int] = []

    def counting(v: Tensor) -> Tensor:
        rows_queried.append(v.shape[0])
        return model(v)

    eps = 10 * dist.max().item()
    x_adv = square(counting, x, y, norm="linf", eps=eps, box=LOOSE_BOX, queries=500)
    assert (model(x_adv).argmax(dim=1) != y).all()
    assert rows_queried == sorted(rows_queried, reverse=True)
    assert rows_queried[-1] < len(x)
    assert len(rows_queried) < 100


def test_returns_input_unchanged_at_zero_budget() -> None:
    model, x, y, _ = _linear_problem((10, 1, 8, 8), "l2")
    assert torch.equal(square(model, x, y, norm="l2", eps=0.0, box=LOOSE_BOX, queries=50), x)


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
    x_adv = square(net, x, y, norm=norm, eps=eps, box=box, queries=200)
    with torch.no_grad():
        clean = (net(x).argmax(dim=1) == y).float().mean().item()
        robust = (net(x_adv).argmax(dim=1) == y).float().mean().item()
    assert clean > 0.8
    assert robust < clean - 0.2
    assert (_dist(x_adv, x, norm) <= eps).all()
