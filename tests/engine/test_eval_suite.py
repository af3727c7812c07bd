"""Specification of the evaluation suite: a cascade for the headline, every attack on a fixed
subset for the per-attack figures, progress with counts."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import pytest
import torch
from torch import Tensor

from tests.engine.conftest import train_digits_cnn
from workers.engine import samples
from workers.engine.evaluation import suite
from workers.engine.evaluation.suite import (
    Attack,
    AttackFn,
    EvaluationTarget,
    ModelScores,
    attacks_for,
    evaluate,
)
from workers.engine.geometry import Box
from workers.engine.progress import ProgressEvent, Reporter
from workers.engine.spec import EvaluationSuite


@pytest.fixture(scope="module")
def model() -> Iterator[torch.nn.Module]:
    """Trained and attacked on one thread: the tests below count flipped samples, and a model
    trained on two threads differs in its last digits, enough to change which samples flip."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield train_digits_cnn(epochs=8)
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def scored(model: torch.nn.Module) -> tuple[ModelScores, list[ProgressEvent]]:
    """The fast suite on 24 samples, all of them in the per-attack subset."""
    events: list[ProgressEvent] = []
    scores = evaluate(
        model, _target(per_attack_samples=24), Reporter(callback=events.append), "hardened"
    )
    return scores, events


def _target(n: int = 24, *, batch_size: int = 16, per_attack_samples: int = 0) -> EvaluationTarget:
    digits = samples.digits()
    return EvaluationTarget(
        x=torch.from_numpy(digits.x[:n]),
        y=torch.from_numpy(digits.y[:n]).long(),
        norm="linf",
        eps=0.12,
        box=Box(torch.tensor(0.0), torch.tensor(1.0)),
        suite=EvaluationSuite.FAST,
        curve_points=3,
        batch_size=batch_size,
        seed=7,
        num_classes=10,
        per_attack_samples=per_attack_samples,
    )


class _Recorded:
    """An attack that remembers how many samples each call was given."""

    def __init__(self, run: AttackFn) -> None:
        self.run = run
        self.sizes: list[int] = []

    def __call__(self, model: torch.nn.Module, x: Tensor, y: Tensor, **kwargs: object) -> Tensor:
        self.sizes.append(len(y))
        return self.run(model, x, y, **kwargs)


def _recorded(attacks: list[Attack]) -> tuple[list[Attack], dict[str, _Recorded]]:
    recorders = {a.name: _Recorded(a.run) for a in attacks}
    return [replace(a, run=recorders[a.name]) for a in attacks], recorders


def _all_in_cascade() -> list[Attack]:
    return [replace(a, in_cascade=True) for a in attacks_for(EvaluationSuite.FAST)]


def test_cascade_worst_case_equals_every_attack_on_every_sample(model: torch.nn.Module) -> None:
    """Same attacks, same seeds: at batch size 1 each sample's attack is independent of which
    others were attacked, so any difference would be the cascade's own doing."""
    target = _target(n=16, batch_size=1)
    attacks = _all_in_cascade()
    box = target.box
    clean_correct = model(target.x).argmax(1) == target.y
    full = clean_correct.clone()
    for attack in attacks:
        full &= suite._survives(model, attack, target, target.eps, box, clean_correct)
    scores = evaluate(model, target, Reporter(), "model", attacks)
    assert 0 < int(full.sum()) < int(clean_correct.sum())
    assert scores.robust.correct == int(full.sum())


def test_each_cascade_attack_sees_only_the_samples_still_standing(model: torch.nn.Module) -> None:
    attacks, recorders = _recorded(_all_in_cascade())
    events: list[ProgressEvent] = []
    evaluate(model, _target(batch_size=1000), Reporter(callback=events.append), "model", attacks)
    standing = [_still_robust(events, a.name) for a in attacks]
    for before, attack in zip(standing, attacks[1:], strict=False):
        assert recorders[attack.name].sizes[0] == before
    assert standing[-1] < standing[0]


def _still_robust(events: list[ProgressEvent], name: str) -> int:
    (line,) = [e.message for e in events if f": {name}: " in e.message]
    return int(line.split(": ")[2].split("/")[0])


def test_every_attack_runs_on_every_correct_sample_of_the_per_attack_subset(
    model: torch.nn.Module,
) -> None:
    target = _target(per_attack_samples=12, batch_size=1000)
    attacks, recorders = _recorded(attacks_for(EvaluationSuite.FAST))
    scores = evaluate(model, target, Reporter(), "model", attacks)
    correct_in_subset = int((model(target.x[:12]).argmax(1) == target.y[:12]).sum())
    for attack in attacks:
        if not attack.in_cascade:
            assert recorders[attack.name].sizes == [correct_in_subset]
    assert {a.robust.total for a in scores.attacks} == {12}


def test_headline_never_exceeds_any_attack_on_the_per_attack_subset(
    scored: tuple[ModelScores, list[ProgressEvent]],
) -> None:
    scores, _ = scored
    assert all(scores.robust.correct <= a.robust.correct for a in scores.attacks)


def test_standard_headline_cascade_is_fgsm_then_autoattack() -> None:
    cascade = [a.name for a in attacks_for(EvaluationSuite.STANDARD) if a.in_cascade]
    assert cascade == ["fgsm", "apgd-ce", "apgd-t", "fab-t", "square"]


def test_progress_gives_an_estimate_then_a_line_per_attack_with_counts(
    scored: tuple[ModelScores, list[ProgressEvent]],
) -> None:
    _, events = scored
    messages = [e.message for e in events]
    assert "estimated at most" in messages[0]
    assert events[0].eta_seconds is not None
    for attack in attacks_for(EvaluationSuite.FAST):
        assert any(m.startswith(f"hardened: {attack.name}: ") and "/24 " in m for m in messages)


def test_a_long_attack_reports_progress_while_it_runs(
    model: torch.nn.Module, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(suite, "HEARTBEAT_SECONDS", 0.0)
    events: list[ProgressEvent] = []
    evaluate(model, _target(n=6), Reporter(callback=events.append), "hardened")
    assert any("square on" in e.message and "s so far" in e.message for e in events)


def test_curve_point_at_the_requested_eps_is_the_headline(
    scored: tuple[ModelScores, list[ProgressEvent]],
) -> None:
    scores, _ = scored
    (at_eps,) = [p for p in scores.curve if p.eps == pytest.approx(0.12)]
    assert at_eps.robust == scores.robust


def test_curve_never_rises_with_epsilon(scored: tuple[ModelScores, list[ProgressEvent]]) -> None:
    scores, _ = scored
    values = [p.robust.correct for p in scores.curve]
    assert values == sorted(values, reverse=True)
