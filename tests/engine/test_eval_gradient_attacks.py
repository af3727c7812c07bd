"""Specification of the FGSM and PGD evaluation attacks and of the shared projection."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import Tensor

from workers.engine.evaluation.gradient_attacks import fgsm, margin_loss, pgd
from workers.engine.geometry import Box, NormName, project

WIDE_BOX = Box(torch.tensor(-1e3), torch.tensor(1e3))
NORMS: tuple[NormName, ...] = ("linf", "l2")


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@dataclass
class Problem:
    """A random attack problem: inputs inside a (scalar, per-feature or per-channel) box."""

    model: Callable[[Tensor], Tensor]
    x: Tensor
    y: Tensor
    box: Box
    norm: NormName
    eps: float


@st.composite
def problems(draw: st.DrawFn) -> Problem:
    seed = draw(st.integers(0, 2**31 - 1))
    images = draw(st.booleans())
    n_classes = draw(st.integers(2, 5))
    norm: NormName = draw(st.sampled_from(NORMS))
    eps = draw(st.floats(0.01, 3.0))
    dtype = draw(st.sampled_from([torch.float32, torch.float64]))
    g = _generator(seed)
    n = draw(st.integers(1, 4))
    shape: tuple[int, ...] = (n, 2, 3, 3) if images else (n, 5)
    bound_shape: tuple[int, ...] = (1, 2, 1, 1) if images else (1, 5)
    if draw(st.booleans()):
        bound_shape = ()
    lower = -torch.rand(bound_shape, generator=g, dtype=dtype)
    upper = lower + 0.1 + torch.rand(bound_shape, generator=g, dtype=dtype)
    x = lower + (upper - lower) * torch.rand(shape, generator=g, dtype=dtype)
    features = x[0].numel()
    w1 = 3 * torch.randn(features, 8, generator=g, dtype=dtype)
    w2 = torch.randn(8, n_classes, generator=g, dtype=dtype)

    def model(z: Tensor) -> Tensor:
        return torch.tanh(z.flatten(1) @ w1) @ w2

    y = model(x).argmax(dim=1)
    return Problem(model, x, y, Box(lower, upper), norm, eps)


def assert_inside_ball_and_box(x_adv: Tensor, p: Problem) -> None:
    assert x_adv.shape == p.x.shape
    assert x_adv.dtype == p.x.dtype
    delta = (x_adv - p.x).double()
    if p.norm == "linf":
        assert bool((delta.abs() <= p.eps).all())
    else:
        assert bool((torch.linalg.vector_norm(delta.flatten(1), dim=1) <= p.eps).all())
    assert bool((x_adv >= p.box.lower).all())
    assert bool((x_adv <= p.box.upper).all())


def two_class_linear(seed: int, features: int = 10, n: int = 400) -> tuple:
    """A 2-class linear model ``z = Wx + b`` with points labelled by its own prediction."""
    g = _generator(seed)
    weight = torch.randn(2, features, generator=g, dtype=torch.float64)
    bias = torch.randn(2, generator=g, dtype=torch.float64)

    def model(z: Tensor) -> Tensor:
        return z @ weight.T + bias

    x = torch.randn(n, features, generator=g, dtype=torch.float64)
    logits = model(x)
    y = logits.argmax(dim=1)
    margin = (logits[:, 0] - logits[:, 1]).abs()
    return model, x, y, margin, (weight[1] - weight[0])


def _dual_norm(w: Tensor, norm: NormName) -> float:
    return float(w.abs().sum() if norm == "linf" else w.norm())


def assert_matches_linear_optimum(attack: Callable[..., Tensor], norm: NormName) -> None:
    """Fooled exactly when eps * ||w_1 - w_0||_dual exceeds the margin, judged away from the
    threshold (more than 10% off) so that the answer is not decided by convergence tolerance."""
    model, x, y, margin, w_diff = two_class_linear(seed=3)
    reach_per_eps = _dual_norm(w_diff, norm)
    eps = float((margin / reach_per_eps).median())
    reach = eps * reach_per_eps
    clear = (reach - margin).abs() > 0.1 * reach
    x_adv = attack(model, x, y, norm=norm, eps=eps, box=WIDE_BOX, generator=_generator(0))
    fooled = model(x_adv).argmax(dim=1) != y
    expected = reach > margin
    assert 0 < int(expected[clear].sum()) < int(clear.sum())
    assert torch.equal(fooled[clear], expected[clear])


ATTACKS: dict[str, Callable[..., Tensor]] = {
    "fgsm": fgsm,
    "fgsm-cw": lambda *a, **k: fgsm(*a, loss="cw", **k),
    "pgd-ce": lambda *a, **k: pgd(*a, steps=5, **k),
    "pgd-cw": lambda *a, **k: pgd(*a, loss="cw", steps=5, restarts=2, **k),
}


@pytest.mark.parametrize("name", ATTACKS)
@settings(max_examples=15, deadline=None)
@given(p=problems())
def test_attack_stays_inside_eps_ball_and_box(name: str, p: Problem) -> None:
    x_adv = ATTACKS[name](p.model, p.x, p.y, norm=p.norm, eps=p.eps, box=p.box)
    assert_inside_ball_and_box(x_adv, p)


@settings(max_examples=25, deadline=None)
@given(p=problems(), scale=st.floats(0.5, 50.0))
def test_project_lands_inside_eps_ball_and_box_exactly(p: Problem, scale: float) -> None:
    g = _generator(1)
    far = p.x + scale * torch.randn(p.x.shape, generator=g, dtype=p.x.dtype)
    assert_inside_ball_and_box(project(far, p.x, norm=p.norm, eps=p.eps, box=p.box), p)


def test_project_keeps_float32_linf_ball_when_eps_rounds_up_in_float32() -> None:
    x = torch.full((1, 1000), 0.3, dtype=torch.float32)
    far = x + torch.linspace(-1, 1, 1000)
    box = Box(torch.tensor(-10.0), torch.tensor(10.0))
    x_adv = project(far, x, norm="linf", eps=0.1, box=box)
    assert ((x_adv.double() - x.double()).abs() <= 0.1).all()


@pytest.mark.parametrize("norm", ["linf", "l2"])
@pytest.mark.parametrize("loss", ["ce", "cw"])
def test_pgd_fools_linear_model_exactly_when_budget_exceeds_margin(norm: NormName, loss) -> None:
    assert_matches_linear_optimum(lambda *a, **k: pgd(*a, loss=loss, **k), norm)


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_fgsm_fools_linear_model_exactly_when_budget_exceeds_margin(norm: NormName) -> None:
    assert_matches_linear_optimum(fgsm, norm)


def test_fgsm_linf_steps_eps_along_the_gradient_sign() -> None:
    model, x, y, _, w_diff = two_class_linear(seed=4, n=20)
    x_adv = fgsm(model, x, y, norm="linf", eps=0.01, box=WIDE_BOX)
    towards_other_class = torch.where(y[:, None] == 0, w_diff.sign(), -w_diff.sign())
    torch.testing.assert_close(x_adv - x, 0.01 * towards_other_class)


def test_pgd_returns_highest_loss_point_for_samples_it_cannot_fool() -> None:
    model, x, y, margin, w_diff = two_class_linear(seed=5)
    eps = 0.5 * float(margin.min()) / _dual_norm(w_diff, "linf")
    x_adv = pgd(model, x, y, norm="linf", eps=eps, box=WIDE_BOX, loss="cw")
    optimum = -margin + eps * _dual_norm(w_diff, "linf")
    torch.testing.assert_close(margin_loss(model(x_adv), y), optimum)


@pytest.mark.parametrize("attack", [fgsm, pgd], ids=["fgsm", "pgd"])
def test_misclassified_samples_come_back_unchanged(attack: Callable[..., Tensor]) -> None:
    model, x, y, _, _ = two_class_linear(seed=6, n=50)
    wrong = torch.arange(50) % 3 == 0
    labels = torch.where(wrong, 1 - y, y)
    x_adv = attack(model, x, labels, norm="linf", eps=5.0, box=WIDE_BOX)
    assert torch.equal(x_adv[wrong], x[wrong])
    assert not torch.equal(x_adv[~wrong], x[~wrong])


@settings(max_examples=5, deadline=None)
@given(p=problems())
def test_pgd_is_bit_identical_for_the_same_generator_seed(p: Problem) -> None:
    def run() -> Tensor:
        return pgd(
            p.model,
            p.x,
            p.y,
            norm=p.norm,
            eps=p.eps,
            box=p.box,
            steps=4,
            restarts=2,
            generator=_generator(7),
        )

    assert torch.equal(run(), run())


def test_pgd_draws_randomness_only_from_the_passed_generator() -> None:
    model, x, y, _, _ = two_class_linear(seed=8, n=30)
    before = torch.get_rng_state()
    first = pgd(model, x, y, norm="l2", eps=0.3, box=WIDE_BOX, steps=3, generator=_generator(1))
    assert torch.equal(torch.get_rng_state(), before)
    other = pgd(model, x, y, norm="l2", eps=0.3, box=WIDE_BOX, steps=3, generator=_generator(2))
    assert not torch.equal(first, other)


def test_pgd_later_restarts_attack_only_samples_still_correct() -> None:
    model, x, y, margin, w_diff = two_class_linear(seed=9, n=40)
    needed = (margin / _dual_norm(w_diff, "linf")).sort().values
    eps = float(needed[14] + needed[15]) / 2
    reachable = 15
    batch_sizes: list[int] = []

    def counting_model(z: Tensor) -> Tensor:
        batch_sizes.append(z.shape[0])
        return model(z)

    pgd(counting_model, x, y, norm="linf", eps=eps, box=WIDE_BOX, steps=4, restarts=3)
    per_restart = 4 + 1
    assert batch_sizes == [40] + [40] * per_restart + [40 - reachable] * 2 * per_restart


def test_attacks_touch_neither_parameter_gradients_nor_train_mode() -> None:
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
    net.eval()
    x = torch.rand(6, 4)
    y = net(x).argmax(dim=1).detach()
    box = Box(torch.tensor(0.0), torch.tensor(1.0))
    pgd(net, x, y, norm="linf", eps=0.1, box=box, steps=3)
    fgsm(net, x, y, norm="l2", eps=0.1, box=box)
    assert all(p.grad is None for p in net.parameters())
    assert not net.training


def test_pgd_works_under_no_grad_and_with_inputs_requiring_grad() -> None:
    model, x, y, _, _ = two_class_linear(seed=10, n=10)
    x = x.clone().requires_grad_(True)
    with torch.no_grad():
        x_adv = pgd(model, x, y, norm="linf", eps=0.1, box=WIDE_BOX, steps=2)
    assert not x_adv.requires_grad


def test_pgd_rejects_unknown_loss() -> None:
    model, x, y, _, _ = two_class_linear(seed=11, n=4)
    with pytest.raises(ValueError, match="loss"):
        pgd(model, x, y, norm="linf", eps=0.1, box=WIDE_BOX, loss="dlr")  # type: ignore[arg-type]


def test_margin_loss_is_best_wrong_logit_minus_true_logit() -> None:
    logits = torch.tensor([[1.0, 4.0, 2.0], [3.0, -1.0, 0.5]])
    torch.testing.assert_close(
        margin_loss(logits, torch.tensor([1, 0])), torch.tensor([-2.0, -2.5])
    )
