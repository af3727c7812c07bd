"""Training pieces: perturbations, method steps, the loop, schedules."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from workers.engine.attacks.perturb import perturb
from workers.engine.errors import Cancelled, TrainingDiverged
from workers.engine.geometry import Box
from workers.engine.progress import ProgressEvent, Reporter
from workers.engine.training.loop import Batches, train_epoch
from workers.engine.training.methods import _collapsed
from workers.engine.training.schedules import eps_warmup, one_cycle
from workers.engine.training.steps import DistillationStep, TemperatureStep


def _linear(features: int = 6, classes: int = 3, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(features, classes))


@settings(max_examples=25, deadline=None)
@given(
    eps=st.floats(0.01, 2.0),
    steps=st.integers(1, 5),
    seed=st.integers(0, 2**16),
    norm=st.sampled_from(["linf", "l2"]),
)
def test_perturbation_stays_inside_the_ball_and_the_box(
    eps: float, steps: int, seed: int, norm: str
) -> None:
    generator = torch.Generator().manual_seed(seed)
    x = torch.rand((4, 6), generator=generator)
    y = torch.randint(0, 3, (4,), generator=generator)
    model = _linear()
    box = Box(torch.tensor([[0.0, 0.1, 0.0, 0.2, 0.0, 0.0]]), torch.ones(1, 6))
    x = box.clamp(x)
    x_adv = perturb(
        model,
        x,
        lambda z: F.cross_entropy(z, y),
        norm=norm,
        eps=eps,
        alpha=eps / 2,
        steps=steps,
        box=box,
        generator=generator,
    )
    delta = (x_adv - x).flatten(1)
    size = delta.abs().amax(1) if norm == "linf" else delta.norm(dim=1)
    assert bool((size <= eps + 1e-5).all())
    assert bool((x_adv >= box.lower - 1e-7).all() and (x_adv <= box.upper + 1e-7).all())


def test_perturbation_increases_the_loss() -> None:
    generator = torch.Generator().manual_seed(0)
    x = torch.rand((32, 6), generator=generator)
    y = torch.randint(0, 3, (32,), generator=generator)
    model = _linear()
    x_adv = perturb(
        model,
        x,
        lambda z: F.cross_entropy(z, y),
        norm="linf",
        eps=0.1,
        alpha=0.025,
        steps=10,
        box=Box(torch.tensor(-10.0), torch.tensor(10.0)),
        generator=generator,
    )
    with torch.no_grad():
        assert F.cross_entropy(model(x_adv), y) > F.cross_entropy(model(x), y)


def test_perturbation_leaves_model_gradients_untouched() -> None:
    model = _linear()
    x, y = torch.rand(4, 6), torch.tensor([0, 1, 2, 0])
    perturb(
        model,
        x,
        lambda z: F.cross_entropy(z, y),
        norm="linf",
        eps=0.1,
        alpha=0.05,
        steps=2,
        box=Box(torch.tensor(0.0), torch.tensor(1.0)),
    )
    assert all(p.grad is None for p in model.parameters())


def test_distillation_loss_is_cross_entropy_against_soft_labels_at_temperature() -> None:
    teacher = _linear(seed=1)
    student = _linear(seed=2)
    x, y = torch.rand(5, 6), torch.tensor([0, 1, 2, 0, 1])
    temperature = 7.0
    loss, _ = DistillationStep(teacher, temperature)(student, x, y, 0.0)
    soft = F.softmax(teacher(x).detach() / temperature, dim=1)
    expected = -(soft * F.log_softmax(student(x) / temperature, dim=1)).sum(1).mean()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)


def test_distillation_loss_gradient_vanishes_when_student_matches_teacher() -> None:
    teacher = _linear(seed=1)
    student = _linear(seed=1)
    x, y = torch.rand(5, 6), torch.tensor([0, 1, 2, 0, 1])
    loss, _ = DistillationStep(teacher, 10.0)(student, x, y, 0.0)
    loss.backward()
    assert all(float(p.grad.abs().max()) < 1e-6 for p in student.parameters())  # type: ignore[union-attr]


def test_hard_label_weight_mixes_in_cross_entropy_on_labels() -> None:
    teacher, student = _linear(seed=1), _linear(seed=2)
    x, y = torch.rand(5, 6), torch.tensor([0, 1, 2, 0, 1])
    soft_only, _ = DistillationStep(teacher, 4.0, 0.0)(student, x, y, 0.0)
    hard_only, _ = DistillationStep(teacher, 4.0, 1.0)(student, x, y, 0.0)
    mixed, _ = DistillationStep(teacher, 4.0, 0.25)(student, x, y, 0.0)
    assert mixed.item() == pytest.approx(
        0.75 * soft_only.item() + 0.25 * hard_only.item(), rel=1e-5
    )


def test_teacher_step_divides_logits_by_temperature() -> None:
    model = _linear()
    x, y = torch.rand(5, 6), torch.tensor([0, 1, 2, 0, 1])
    loss, _ = TemperatureStep(3.0)(model, x, y, 0.0)
    assert loss.item() == pytest.approx(F.cross_entropy(model(x) / 3.0, y).item(), rel=1e-6)


def _batches(n: int = 40) -> Batches:
    generator = torch.Generator().manual_seed(0)
    return Batches(torch.rand(n, 6), torch.randint(0, 3, (n,)), 8, torch.device("cpu"), generator)


def test_training_stops_within_one_batch_when_cancelled() -> None:
    model = _linear()
    calls: list[int] = []

    def step(m: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float):
        calls.append(1)
        logits = m(x)
        return F.cross_entropy(logits, y), logits

    reporter = Reporter(should_stop=lambda: len(calls) >= 2)
    with pytest.raises(Cancelled):
        train_epoch(
            model,
            _batches(),
            step,
            torch.optim.SGD(model.parameters(), lr=0.1),
            epoch=0,
            epochs=1,
            lr=lambda t: 0.1,
            eps=lambda t: 0.0,
            reporter=reporter,
        )
    assert len(calls) == 2


def test_nan_loss_fails_the_job_with_a_reason() -> None:
    model = _linear()

    def step(m: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float):
        logits = m(x)
        return logits.sum() * math.nan, logits

    with pytest.raises(TrainingDiverged, match="loss became nan"):
        train_epoch(
            model,
            _batches(),
            step,
            torch.optim.SGD(model.parameters(), lr=0.1),
            epoch=0,
            epochs=1,
            lr=lambda t: 0.1,
            eps=lambda t: 0.0,
            reporter=Reporter(),
        )


def test_loop_reports_progress_with_an_eta() -> None:
    model = _linear()
    events: list[ProgressEvent] = []

    def step(m: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float):
        logits = m(x)
        return F.cross_entropy(logits, y), logits

    train_epoch(
        model,
        _batches(),
        step,
        torch.optim.SGD(model.parameters(), lr=0.1),
        epoch=0,
        epochs=2,
        lr=lambda t: 0.1,
        eps=lambda t: 0.0,
        reporter=Reporter(callback=events.append),
    )
    assert [e.step for e in events] == [1, 2, 3, 4, 5]
    assert all(e.eta_seconds is not None and e.eta_seconds >= 0 for e in events)


def test_an_epoch_counts_the_samples_it_trained_on() -> None:
    model = _linear()

    def step(m: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float):
        logits = m(x)
        return F.cross_entropy(logits, y), logits

    stats = train_epoch(
        model,
        _batches(n=43),
        step,
        torch.optim.SGD(model.parameters(), lr=0.1),
        epoch=0,
        epochs=1,
        lr=lambda t: 0.1,
        eps=lambda t: 0.0,
        reporter=Reporter(),
    )
    assert stats.samples == 43


def test_one_cycle_rate_peaks_then_returns_to_zero() -> None:
    rate = one_cycle(0.1, epochs=10)
    assert rate(0) == 0
    assert rate(4) == pytest.approx(0.1)
    assert rate(10) == pytest.approx(0.0)
    assert rate(2) < rate(4) > rate(7)


def test_epsilon_warms_up_linearly() -> None:
    radius = eps_warmup(0.3, warmup_epochs=2)
    assert radius(0) == 0
    assert radius(1) == pytest.approx(0.15)
    assert radius(5) == pytest.approx(0.3)


def test_collapse_is_a_large_absolute_and_relative_fall() -> None:
    assert _collapsed(robust=0.05, best=0.6)
    assert not _collapsed(robust=0.5, best=0.6)
    assert not _collapsed(robust=0.0, best=0.0)
