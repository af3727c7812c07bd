"""Specification of Auto-PGD (Croce & Hein, ICML 2020): APGD-CE, APGD-DLR and APGD-T."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.datasets import load_digits
from torch import Tensor

from workers.engine.evaluation.apgd import (
    _Ascent,
    _Settings,
    apgd,
    apgd_checkpoints,
    apgd_targeted,
    dlr_loss,
    targeted_dlr_loss,
)
from workers.engine.evaluation.gradient_attacks import fgsm
from workers.engine.geometry import Box, NormName

WIDE_BOX = Box(torch.tensor(-1e3), torch.tensor(1e3))
NORMS: tuple[NormName, ...] = ("linf", "l2")
UNIT_BOX = Box(torch.tensor(0.0), torch.tensor(1.0))


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@dataclass
class Problem:
    model: Callable[[Tensor], Tensor]
    x: Tensor
    y: Tensor
    box: Box
    norm: NormName
    eps: float


@st.composite
def problems(draw: st.DrawFn) -> Problem:
    """Inputs inside a scalar, per-feature or per-channel box, for a small random tanh network."""
    seed = draw(st.integers(0, 2**31 - 1))
    images = draw(st.booleans())
    n_classes = draw(st.integers(2, 6))
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
    w1 = 3 * torch.randn(x[0].numel(), 8, generator=g, dtype=dtype)
    w2 = torch.randn(8, n_classes, generator=g, dtype=dtype)

    def model(z: Tensor) -> Tensor:
        return torch.tanh(z.flatten(1) @ w1) @ w2

    return Problem(model, x, model(x).argmax(dim=1), Box(lower, upper), norm, eps)


ATTACKS: dict[str, Callable[..., Tensor]] = {
    "apgd-ce": lambda *a, **k: apgd(*a, steps=10, **k),
    "apgd-dlr": lambda *a, **k: apgd(*a, loss="dlr", steps=10, restarts=2, **k),
    "apgd-t": lambda *a, **k: apgd_targeted(*a, steps=6, n_target_classes=3, **k),
}


@pytest.mark.parametrize("name", ATTACKS)
@settings(max_examples=15, deadline=None)
@given(p=problems())
def test_apgd_stays_inside_eps_ball_and_box(name: str, p: Problem) -> None:
    x_adv = ATTACKS[name](p.model, p.x, p.y, norm=p.norm, eps=p.eps, box=p.box)
    assert x_adv.shape == p.x.shape
    assert x_adv.dtype == p.x.dtype
    delta = (x_adv - p.x).double()
    if p.norm == "linf":
        assert bool((delta.abs() <= p.eps).all())
    else:
        assert bool((torch.linalg.vector_norm(delta.flatten(1), dim=1) <= p.eps).all())
    assert bool((x_adv >= p.box.lower).all())
    assert bool((x_adv <= p.box.upper).all())


def linear_problem(seed: int, n_classes: int, features: int = 10, n: int = 400) -> tuple:
    """A linear model ``z = Wx + b`` with points labelled by its own prediction."""
    g = _generator(seed)
    weight = torch.randn(n_classes, features, generator=g, dtype=torch.float64)
    bias = torch.randn(n_classes, generator=g, dtype=torch.float64)

    def model(z: Tensor) -> Tensor:
        return z @ weight.T + bias

    x = torch.randn(n, features, generator=g, dtype=torch.float64)
    return model, x, model(x).argmax(dim=1), weight


def pairwise_reach(x: Tensor, y: Tensor, weight: Tensor, norm: NormName) -> Tensor:
    """``||w_t - w_y||_dual`` per sample and class t: how far ``z_t - z_y`` can rise per unit of
    eps, the best perturbation against class t being eps times its dual-norm maximiser."""
    w_diff = weight[None, :, :] - weight[y][:, None, :]
    return w_diff.abs().sum(-1) if norm == "linf" else w_diff.norm(dim=-1)


def assert_matches_linear_optimum(attack: Callable[..., Tensor], norm: NormName, classes: int):
    """In a box that does not bind, a linear model can be fooled exactly when for some wrong class
    t, ``eps * ||w_t - w_y||_dual > z_y - z_t``. Checked with eps at the median of the needed
    budgets, on points whose slack exceeds 10% of the attainable logit change, so that
    convergence tolerance cannot decide."""
    model, x, y, weight = linear_problem(seed=21, n_classes=classes)
    logits = model(x)
    gaps = logits.gather(1, y[:, None]) - logits
    reach = pairwise_reach(x, y, weight, norm)
    is_true = torch.nn.functional.one_hot(y, classes).bool()
    eps = float((gaps / reach).masked_fill(is_true, torch.inf).amin(dim=1).median())
    slack = (eps * reach - gaps).masked_fill(is_true, -torch.inf).amax(dim=1)
    clear = slack.abs() > 0.1 * eps * reach.amax(dim=1)
    x_adv = attack(model, x, y, norm=norm, eps=eps, box=WIDE_BOX, generator=_generator(0))
    fooled = model(x_adv).argmax(dim=1) != y
    expected = slack > 0
    assert 0.2 < float(expected[clear].float().mean()) < 0.8
    assert torch.equal(fooled[clear], expected[clear])


@pytest.mark.parametrize("norm", ["linf", "l2"])
@pytest.mark.parametrize("loss", ["ce", "dlr"])
def test_apgd_fools_two_class_linear_model_exactly_when_budget_exceeds_margin(
    norm: NormName, loss
) -> None:
    assert_matches_linear_optimum(lambda *a, **k: apgd(*a, loss=loss, **k), norm, classes=2)


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_apgd_targeted_fools_four_class_linear_model_exactly_when_some_target_is_reachable(
    norm: NormName,
) -> None:
    assert_matches_linear_optimum(apgd_targeted, norm, classes=4)


@pytest.mark.parametrize("attack", [apgd, apgd_targeted], ids=["apgd", "apgd-t"])
def test_misclassified_samples_come_back_unchanged(attack: Callable[..., Tensor]) -> None:
    model, x, y, _ = linear_problem(seed=22, n_classes=4, n=30)
    wrong = torch.arange(30) % 3 == 0
    labels = torch.where(wrong, (y + 1) % 4, y)
    x_adv = attack(model, x, labels, norm="linf", eps=5.0, box=WIDE_BOX, steps=5)
    assert torch.equal(x_adv[wrong], x[wrong])
    assert not torch.equal(x_adv[~wrong], x[~wrong])


@pytest.mark.parametrize("name", ATTACKS)
@settings(max_examples=4, deadline=None)
@given(p=problems())
def test_apgd_is_bit_identical_for_the_same_generator_seed(name: str, p: Problem) -> None:
    def run() -> Tensor:
        kwargs = {"norm": p.norm, "eps": p.eps, "box": p.box}
        return ATTACKS[name](p.model, p.x, p.y, generator=_generator(5), **kwargs)

    assert torch.equal(run(), run())


def test_apgd_draws_randomness_only_from_the_passed_generator() -> None:
    model, x, y, _ = linear_problem(seed=23, n_classes=3, n=20)
    before = torch.get_rng_state()
    first = apgd(model, x, y, norm="l2", eps=0.3, box=WIDE_BOX, steps=3, generator=_generator(1))
    apgd_targeted(model, x, y, norm="linf", eps=0.3, box=WIDE_BOX, steps=3)
    assert torch.equal(torch.get_rng_state(), before)
    other = apgd(model, x, y, norm="l2", eps=0.3, box=WIDE_BOX, steps=3, generator=_generator(2))
    assert not torch.equal(first, other)


def _counting(model: Callable[[Tensor], Tensor], sizes: list[int]) -> Callable[[Tensor], Tensor]:
    def counted(z: Tensor) -> Tensor:
        sizes.append(z.shape[0])
        return model(z)

    return counted


def _split_two_class_problem() -> tuple:
    """40 points of a 2-class linear model with an eps at which exactly 15 can be fooled."""
    model, x, y, weight = linear_problem(seed=24, n_classes=2, n=40)
    logits = model(x)
    needed = ((logits[:, 0] - logits[:, 1]).abs() / (weight[1] - weight[0]).abs().sum()).sort()
    return model, x, y, float(needed.values[14] + needed.values[15]) / 2


def test_apgd_later_restarts_attack_only_samples_still_correct() -> None:
    model, x, y, eps = _split_two_class_problem()
    sizes: list[int] = []
    apgd(_counting(model, sizes), x, y, norm="linf", eps=eps, box=WIDE_BOX, steps=5, restarts=3)
    per_run = 5 + 1
    assert sizes == [40] + [40] * per_run + [25] * 2 * per_run


def test_apgd_targeted_next_targets_attack_only_samples_still_correct() -> None:
    model, x, y, eps = _split_two_class_problem()
    sizes: list[int] = []
    apgd_targeted(_counting(model, sizes), x, y, norm="linf", eps=eps, box=WIDE_BOX, steps=5)
    assert sizes == [40] + [40] * (5 + 1), "two classes leave a single target class"
    sizes.clear()
    model4, x4, y4, _ = linear_problem(seed=25, n_classes=4, n=30)
    apgd_targeted(_counting(model4, sizes), x4, y4, norm="linf", eps=0.2, box=WIDE_BOX, steps=5)
    runs = [sizes[i : i + 6] for i in range(1, len(sizes), 6)]
    assert len(runs) == 3
    assert all(len(set(run)) == 1 for run in runs)
    assert runs[0][0] == 30
    assert runs[0][0] >= runs[1][0] >= runs[2][0]


def test_apgd_targeted_with_many_targets_caps_them_at_classes_minus_one() -> None:
    model, x, y, _ = linear_problem(seed=26, n_classes=3, n=10)
    sizes: list[int] = []
    apgd_targeted(_counting(model, sizes), x, y, norm="l2", eps=1e-6, box=WIDE_BOX, steps=2)
    assert sizes == [10] + [10] * 3 * 2


def test_apgd_checkpoints_follow_the_paper_schedule_for_100_steps() -> None:
    assert apgd_checkpoints(100) == (22, 41, 57, 70, 80, 87, 93, 99)


@pytest.mark.parametrize("steps", [1, 2, 5, 10, 37, 250])
def test_apgd_checkpoints_are_increasing_iterations_before_the_last(steps: int) -> None:
    points = apgd_checkpoints(steps)
    assert list(points) == sorted(set(points))
    assert all(0 < w < steps for w in points)


def _ascent_after(losses: list[float], steps: int = 5) -> _Ascent:
    """A one-sample APGD state that has seen the given loss sequence at iterates 0, 1, 2, ..."""
    points = [torch.full((1, 2), float(i)) for i in range(len(losses))]
    grads = [torch.full((1, 2), 10.0 + i) for i in range(len(losses))]
    ascent = _Ascent(points[0], torch.tensor([losses[0]]), grads[0], eps=1.0)
    for point, loss, grad in zip(points[1:], losses[1:], grads[1:], strict=True):
        ascent.accept(point, torch.tensor([loss]), grad)
    return ascent


def test_apgd_halves_step_and_resumes_from_best_point_when_loss_rarely_increased() -> None:
    ascent = _ascent_after([0.0, 3.0, 1.0, 0.5, 0.2, 2.0])
    ascent.checkpoint(5, rho=0.75)
    assert float(ascent.step) == 1.0
    assert torch.equal(ascent.current, torch.full((1, 2), 1.0))
    assert torch.equal(ascent.grad, torch.full((1, 2), 11.0))


def test_apgd_keeps_step_when_loss_increased_often_enough() -> None:
    ascent = _ascent_after([0.0, 1.0, 2.0, 3.0, 2.5, 4.0])
    ascent.checkpoint(5, rho=0.75)
    assert float(ascent.step) == 2.0
    assert torch.equal(ascent.current, torch.full((1, 2), 5.0))


def test_apgd_halves_step_when_best_loss_and_step_stalled_since_last_checkpoint() -> None:
    ascent = _ascent_after([0.0, 1.0, 2.0, 3.0, 4.0])
    ascent.checkpoint(4, rho=0.75)
    assert float(ascent.step) == 2.0
    for i, loss in enumerate([1.0, 2.0, 3.0, 3.5, 3.8], start=5):
        ascent.accept(torch.full((1, 2), float(i)), torch.tensor([loss]), torch.ones(1, 2))
    ascent.checkpoint(9, rho=0.75)
    assert float(ascent.step) == 1.0, "80% increases, yet the best loss did not move"


def test_apgd_momentum_step_matches_algorithm_1() -> None:
    x = torch.zeros(1, 2)
    ascent = _Ascent(
        torch.tensor([[0.1, 0.1]]), torch.tensor([0.0]), torch.tensor([[1.0, -1.0]]), 1.0
    )
    ascent.previous = torch.tensor([[0.0, 0.3]])
    setting = _Settings(norm="linf", eps=1.0, box=WIDE_BOX, steps=10, rho=0.75)
    z = torch.tensor([[1.0, -1.0]])
    expected = 0.1 + 0.75 * (z - 0.1) + 0.25 * torch.tensor([[0.1, -0.2]])
    torch.testing.assert_close(ascent.propose(x, first=False, settings=setting), expected)
    torch.testing.assert_close(ascent.propose(x, first=True, settings=setting), z)


def test_dlr_loss_is_invariant_to_shifting_and_scaling_logits() -> None:
    g = _generator(27)
    logits = torch.randn(8, 5, generator=g)
    y = torch.randint(0, 5, (8,), generator=g)
    torch.testing.assert_close(dlr_loss(3.0 * logits + 7.0, y), dlr_loss(logits, y))
    target = (y + 1) % 5
    torch.testing.assert_close(
        targeted_dlr_loss(3.0 * logits + 7.0, y, target), targeted_dlr_loss(logits, y, target)
    )


def test_dlr_loss_is_positive_exactly_when_misclassified() -> None:
    logits = torch.tensor([[3.0, 1.0, 0.0], [1.0, 3.0, 0.0]])
    y = torch.tensor([0, 0])
    torch.testing.assert_close(dlr_loss(logits, y), torch.tensor([-2.0 / 3.0, 2.0 / 3.0]))


def test_targeted_dlr_loss_matches_the_paper_formula() -> None:
    logits = torch.tensor([[4.0, 2.0, 1.0, 0.0, -5.0]])
    value = targeted_dlr_loss(logits, torch.tensor([0]), torch.tensor([2]))
    torch.testing.assert_close(value, torch.tensor([-(4.0 - 1.0) / (4.0 - (1.0 + 0.0) / 2)]))


def test_dlr_losses_fall_back_with_too_few_classes() -> None:
    two = torch.tensor([[2.0, 0.5]])
    three = torch.tensor([[2.0, 0.5, -1.0]])
    y, t = torch.tensor([0]), torch.tensor([1])
    torch.testing.assert_close(dlr_loss(two, y), torch.tensor([-1.5]))
    torch.testing.assert_close(targeted_dlr_loss(two, y, t), torch.tensor([-1.5]))
    torch.testing.assert_close(targeted_dlr_loss(three, y, t), torch.tensor([-1.5 / 3.0]))


def test_apgd_rejects_unknown_loss() -> None:
    model, x, y, _ = linear_problem(seed=28, n_classes=3, n=4)
    with pytest.raises(ValueError, match="loss"):
        apgd(model, x, y, norm="linf", eps=0.1, box=WIDE_BOX, loss="cw")  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def digits_mlp() -> tuple[torch.nn.Module, Tensor, Tensor]:
    """An MLP trained for a fraction of a second on scikit-learn's digits, inputs in [0, 1]."""
    digits = load_digits()
    x_all = torch.tensor(digits.data / 16.0, dtype=torch.float32)
    y_all = torch.tensor(digits.target)
    order = torch.randperm(len(x_all), generator=_generator(0))
    train, test = order[:1400], order[1400:1550]
    with torch.random.fork_rng():
        torch.manual_seed(0)
        net = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.ReLU(), torch.nn.Linear(64, 10))
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-2)
    for _ in range(150):
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(net(x_all[train]), y_all[train]).backward()
        optimizer.step()
    net.eval().requires_grad_(False)
    return net, x_all[test], y_all[test]


@pytest.mark.slow
@pytest.mark.parametrize(("norm", "eps"), [("linf", 0.08), ("l2", 0.6)])
def test_apgd_ce_and_apgd_t_are_at_least_as_strong_as_fgsm_on_digits(
    digits_mlp: tuple[torch.nn.Module, Tensor, Tensor], norm: NormName, eps: float
) -> None:
    net, x, y = digits_mlp

    def robust_accuracy(attack: Callable[..., Tensor]) -> float:
        x_adv = attack(net, x, y, norm=norm, eps=eps, box=UNIT_BOX)
        return float((net(x_adv).argmax(dim=1) == y).float().mean())

    clean = float((net(x).argmax(dim=1) == y).float().mean())
    baseline = robust_accuracy(fgsm)
    assert clean > 0.9
    assert 0.1 < baseline < clean
    assert robust_accuracy(apgd) <= baseline
    assert robust_accuracy(apgd_targeted) <= baseline
