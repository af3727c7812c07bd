"""Checkpoints: a run killed after any epoch, or in the middle of one, and resumed from its last
checkpoint ends with exactly the weights of a run that was never interrupted (CPU, same
process settings), for every method; checkpoints hold plain data only and are read with
``weights_only=True``."""

from __future__ import annotations

import dataclasses
import pickle
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from workers.engine import samples
from workers.engine.checkpoint import FileCheckpointer, MemoryCheckpointer, State
from workers.engine.device import Device, seed_everything
from workers.engine.geometry import Box
from workers.engine.progress import ProgressEvent, Reporter
from workers.engine.spec import Method, ThreatModel, TrainingConfig
from workers.engine.training.methods import TrainingData, TrainingOutcome, train
from workers.engine.training.recipe import PEAK_LR

SAMPLES = 480
CPU = Device(torch.device("cpu"))


class Killed(Exception):
    """Stands in for SIGKILL: the run stops here and nothing after it happens."""


class KilledAfterSaves:
    """A checkpointer that persists ``saves`` states and then dies right after the next one
    is written (an interruption at an epoch boundary)."""

    def __init__(self, inner: Any, saves: int) -> None:
        self.inner = inner
        self.left = saves

    def load(self) -> State | None:
        return self.inner.load()

    def save(self, state: State) -> None:
        self.inner.save(state)
        self.left -= 1
        if self.left <= 0:
            raise Killed


def _data() -> TrainingData:
    digits = samples.digits()
    x, y = torch.from_numpy(digits.x[:SAMPLES]), torch.from_numpy(digits.y[:SAMPLES])
    return TrainingData(x[:400], y[:400], x[400:], y[400:])


def _model() -> nn.Module:
    torch.manual_seed(11)
    return nn.Sequential(
        nn.Flatten(), nn.Linear(64, 48), nn.ReLU(), nn.Dropout(0.2), nn.Linear(48, 10)
    )


def _config(method: Method, **overrides: Any) -> TrainingConfig:
    values: dict[str, Any] = {
        "method": method,
        "epochs": 3,
        "batch_size": 64,
        "attack_steps": 2,
        "validation_size": 80,
        "temperature": 20.0,
        "teacher_epochs": 2,
        "learning_rate": PEAK_LR,
        "eps_warmup_epochs": 0.0,
    }
    values.update(overrides)
    return TrainingConfig(**values)


def _train(
    config: TrainingConfig,
    checkpointer: Any = None,
    reporter: Reporter | None = None,
) -> TrainingOutcome:
    """One run from the same starting point: same seed, same model, same data."""
    model = _model()
    generator = seed_everything(5)
    return train(
        model,
        _data(),
        threat=ThreatModel(eps=0.1),
        box=Box(torch.zeros(1), torch.ones(1)),
        config=config,
        device=CPU,
        reporter=reporter or Reporter(),
        generator=generator,
        checkpointer=checkpointer,
    )


def _assert_same_weights(a: nn.Module, b: nn.Module) -> None:
    left, right = a.state_dict(), b.state_dict()
    assert left.keys() == right.keys()
    for name in left:
        assert torch.equal(left[name], right[name]), f"{name} differs after resuming"


def _records(outcome: TrainingOutcome) -> list[dict[str, Any]]:
    return [dataclasses.asdict(r) for r in outcome.history]


CASES = [
    pytest.param(Method.PGD, {}, id="pgd"),
    pytest.param(Method.FGSM, {}, id="fgsm"),
    pytest.param(Method.TRADES, {}, id="trades"),
    pytest.param(Method.DISTILLATION, {}, id="distillation"),
    pytest.param(Method.PGD, {"from_scratch": True, "select_best_robust": False}, id="scratch"),
]


@pytest.fixture(scope="module")
def uninterrupted() -> dict[str, TrainingOutcome]:
    return {}


def _reference(cache: dict[str, TrainingOutcome], config: TrainingConfig) -> TrainingOutcome:
    key = repr(config)
    if key not in cache:
        cache[key] = _train(config)
    return cache[key]


@pytest.mark.parametrize(("method", "overrides"), CASES)
@pytest.mark.parametrize("killed_after", [1, 2])
def test_resuming_after_an_epoch_gives_the_uninterrupted_weights(
    method: Method,
    overrides: dict[str, Any],
    killed_after: int,
    uninterrupted: dict[str, TrainingOutcome],
    tmp_path: Path,
) -> None:
    config = _config(method, **overrides)
    reference = _reference(uninterrupted, config)
    store = FileCheckpointer(tmp_path / "checkpoint.pt")

    with pytest.raises(Killed):
        _train(config, KilledAfterSaves(store, killed_after))
    resumed = _train(config, store)

    _assert_same_weights(resumed.model, reference.model)
    assert _records(resumed) == _records(reference)
    assert resumed.selected_epoch == reference.selected_epoch
    assert resumed.resumed_from_epoch == killed_after
    assert reference.resumed_from_epoch is None
    assert any("resumed from a checkpoint" in note for note in resumed.notes)


@pytest.mark.parametrize("method", [Method.PGD, Method.DISTILLATION])
def test_a_kill_in_the_middle_of_an_epoch_repeats_only_that_epoch(
    method: Method, uninterrupted: dict[str, TrainingOutcome]
) -> None:
    config = _config(method)
    reference = _reference(uninterrupted, config)
    store = MemoryCheckpointer()
    stage_to_kill = "training"

    def die_in_second_epoch(event: ProgressEvent) -> None:
        if event.stage == stage_to_kill and event.epoch == 2 and event.step == 3:
            raise Killed

    with pytest.raises(Killed):
        _train(config, store, Reporter(callback=die_in_second_epoch))
    resumed = _train(config, store)

    _assert_same_weights(resumed.model, reference.model)
    assert _records(resumed) == _records(reference)
    teacher_epochs = config.teacher_epochs if method is Method.DISTILLATION else 0
    assert resumed.resumed_from_epoch == teacher_epochs + 1


def test_a_distillation_killed_in_its_teacher_phase_resumes_the_teacher(
    uninterrupted: dict[str, TrainingOutcome],
) -> None:
    config = _config(Method.DISTILLATION, teacher_epochs=3)
    reference = _reference(uninterrupted, config)
    store = MemoryCheckpointer()
    stages: list[str] = []

    with pytest.raises(Killed):
        _train(config, KilledAfterSaves(store, 1))
    resumed = _train(config, store, Reporter(callback=lambda e: stages.append(e.stage)))

    _assert_same_weights(resumed.model, reference.model)
    assert resumed.resumed_from_epoch == 1
    assert [r.stage for r in resumed.history] == ["teacher"] * 3 + ["training"] * 3
    assert "teacher" in stages


def test_a_finished_teacher_is_not_trained_again(
    uninterrupted: dict[str, TrainingOutcome],
) -> None:
    config = _config(Method.DISTILLATION)
    reference = _reference(uninterrupted, config)
    store = MemoryCheckpointer()
    stages: list[str] = []

    # two teacher epochs, then the save of the finished teacher: killed right after it
    with pytest.raises(Killed):
        _train(config, KilledAfterSaves(store, 3))
    resumed = _train(config, store, Reporter(callback=lambda e: stages.append(e.stage)))

    _assert_same_weights(resumed.model, reference.model)
    assert "teacher" not in stages
    assert resumed.resumed_from_epoch == 2
    assert _records(resumed) == _records(reference)


def test_a_finished_run_resumes_to_its_result_without_training(
    uninterrupted: dict[str, TrainingOutcome],
) -> None:
    config = _config(Method.PGD)
    reference = _reference(uninterrupted, config)
    store = MemoryCheckpointer()
    _train(config, store)
    stages: list[str] = []

    again = _train(config, store, Reporter(callback=lambda e: stages.append(e.stage)))

    _assert_same_weights(again.model, reference.model)
    assert again.resumed_from_epoch == config.epochs
    assert stages == []


def test_a_checkpoint_of_another_configuration_is_ignored() -> None:
    store = MemoryCheckpointer()
    with pytest.raises(Killed):
        _train(_config(Method.PGD, epochs=4), KilledAfterSaves(store, 1))

    other = _train(_config(Method.PGD, epochs=3, batch_size=32), store)

    assert other.resumed_from_epoch is None


def test_checkpoints_are_saved_every_epoch_atomically(tmp_path: Path) -> None:
    store = FileCheckpointer(tmp_path / "job" / "checkpoint.pt")
    saves: list[int] = []
    original = store.save

    def counting(state: State) -> None:
        original(state)
        saves.append(len(state["fit"]["history"]))

    store.save = counting  # type: ignore[method-assign]
    _train(_config(Method.PGD), store)

    assert saves == [1, 2, 3]
    assert [p.name for p in (tmp_path / "job").iterdir()] == ["checkpoint.pt"]


def test_checkpoint_files_are_read_weights_only(tmp_path: Path) -> None:
    path = tmp_path / "checkpoint.pt"
    store = FileCheckpointer(path)
    _train(_config(Method.FGSM, epochs=1), store)
    assert store.load() is not None

    # a file that would run code when unpickled is refused, not executed
    class Payload:
        def __reduce__(self) -> tuple[Any, ...]:
            return (Path.touch, (tmp_path / "pwned",))

    with path.open("wb") as handle:
        pickle.dump({"format": 1, "fit": Payload()}, handle, protocol=2)
    assert store.load() is None
    assert not (tmp_path / "pwned").exists()

    path.write_bytes(b"not a checkpoint")
    assert store.load() is None
