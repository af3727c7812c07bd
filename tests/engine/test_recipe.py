"""The default recipe: what a job with no training flags runs, and the run that watches itself."""

from __future__ import annotations

from dataclasses import replace

import torch
import torch.nn.functional as F
from torch import nn

from workers.engine.device import pick_device
from workers.engine.geometry import Box
from workers.engine.progress import Reporter
from workers.engine.spec import Method, ThreatModel, TrainingConfig
from workers.engine.training import recipe
from workers.engine.training.methods import TrainingData, _plateaued, train


def test_validation_is_a_tenth_of_the_training_rows() -> None:
    assert recipe.validation_size(TrainingConfig(), 1400) == 140


def test_validation_is_capped_at_a_thousand_rows() -> None:
    assert recipe.validation_size(TrainingConfig(), 60_000) == 1000


def test_sets_under_two_hundred_rows_keep_every_row_for_training() -> None:
    assert recipe.validation_size(TrainingConfig(), 199) == 0


def test_a_validation_size_the_user_gave_is_kept() -> None:
    assert recipe.validation_size(TrainingConfig(validation_size=7), 60_000) == 7


def test_large_sets_train_in_batches_of_128() -> None:
    assert recipe.resolve(TrainingConfig(), 59_000, 1000).config.batch_size == 128


def test_small_sets_get_smaller_batches_for_enough_steps_an_epoch() -> None:
    resolved = recipe.resolve(TrainingConfig(), 1260, 140).config
    assert resolved.batch_size == 32
    assert 1260 / resolved.batch_size >= 39


def test_epochs_aim_at_about_five_thousand_steps() -> None:
    mnist = recipe.resolve(TrainingConfig(), 59_000, 1000).config
    assert mnist.epochs == 11


def test_epoch_count_stays_within_its_bounds() -> None:
    assert recipe.resolve(TrainingConfig(), 1_000_000, 1000).config.epochs == recipe.MIN_EPOCHS
    assert recipe.resolve(TrainingConfig(), 300, 30).config.epochs == recipe.MAX_EPOCHS


def test_adversarial_methods_warm_epsilon_up_over_a_fifth_of_the_epochs() -> None:
    resolved = recipe.resolve(TrainingConfig(method=Method.PGD, epochs=10), 5000, 500).config
    assert resolved.eps_warmup_epochs == 2.0


def test_distillation_has_no_epsilon_to_warm_up() -> None:
    config = TrainingConfig(method=Method.DISTILLATION, epochs=10)
    assert recipe.resolve(config, 5000, 500).config.eps_warmup_epochs == 0.0


def test_fine_tuning_and_training_from_scratch_peak_at_the_same_rate() -> None:
    assert recipe.resolve(TrainingConfig(), 5000, 500).config.learning_rate == recipe.PEAK_LR
    scratch = recipe.resolve(TrainingConfig(from_scratch=True), 5000, 500).config
    assert scratch.learning_rate == recipe.PEAK_LR


def test_pgd_on_a_large_set_takes_five_attack_steps() -> None:
    assert recipe.resolve(TrainingConfig(method=Method.PGD), 54_000, 1000).config.attack_steps == 5


def test_pgd_on_a_small_set_takes_ten_attack_steps() -> None:
    assert recipe.resolve(TrainingConfig(method=Method.PGD), 1260, 140).config.attack_steps == 10


def test_trades_keeps_ten_attack_steps_on_a_large_set() -> None:
    config = TrainingConfig(method=Method.TRADES)
    assert recipe.resolve(config, 54_000, 1000).config.attack_steps == 10


def test_every_parameter_the_user_set_is_kept() -> None:
    given = TrainingConfig(
        epochs=3,
        batch_size=16,
        attack_steps=7,
        eps_warmup_epochs=0.0,
        learning_rate=0.1,
        step_size=0.01,
        validation_size=500,
    )
    resolved = recipe.resolve(given, 50_000, 500)
    assert (resolved.config.epochs, resolved.config.batch_size) == (3, 16)
    assert resolved.config.attack_steps == 7
    assert resolved.config.eps_warmup_epochs == 0.0
    assert resolved.config.learning_rate == 0.1
    assert resolved.config.step_size == 0.01
    assert resolved.choices == ()


def test_early_stopping_only_applies_to_a_derived_epoch_count() -> None:
    assert recipe.resolve(TrainingConfig(), 5000, 500).early_stopping_patience is not None
    assert recipe.resolve(TrainingConfig(epochs=20), 5000, 500).early_stopping_patience is None


def test_distillation_runs_every_epoch_it_was_given() -> None:
    config = TrainingConfig(method=Method.DISTILLATION)
    assert recipe.resolve(config, 5000, 500).early_stopping_patience is None


def test_no_early_stopping_without_validation_rows() -> None:
    assert recipe.resolve(TrainingConfig(), 150, 0).early_stopping_patience is None


def test_each_choice_is_explained_in_a_sentence() -> None:
    choices = recipe.resolve(TrainingConfig(), 1260, 140).choices
    text = " ".join(choices)
    for word in ("validation", "batch size 32", "epochs", "epsilon", "one-cycle", "early"):
        assert word in text


def test_the_resolved_configuration_leaves_nothing_to_interpret() -> None:
    resolved = recipe.resolve(TrainingConfig(), 1260, 140).config
    assert None not in (resolved.epochs, resolved.batch_size, resolved.eps_warmup_epochs)
    assert None not in (resolved.learning_rate, resolved.attack_steps)
    assert resolved.validation_size == 140
    resolved.validate()


# --- a run that watches itself -------------------------------------------------------------------


def _separable(n: int = 600, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 3, (n,), generator=generator)
    centres = torch.tensor([[0.2, 0.2, 0.5, 0.5], [0.8, 0.2, 0.5, 0.5], [0.5, 0.8, 0.5, 0.5]])
    x = (centres[y] + 0.05 * torch.randn(n, 4, generator=generator)).clamp(0, 1)
    return x, y


def _trained_upload(x: torch.Tensor, y: torch.Tensor) -> nn.Module:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 32), nn.ReLU(), nn.Linear(32, 3))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(200):
        optimizer.zero_grad()
        F.cross_entropy(model(x), y).backward()
        optimizer.step()
    return model.eval()


def _fine_tune(learning_rate: float) -> tuple[nn.Module, list[str], TrainingConfig | None]:
    x, y = _separable()
    upload = _trained_upload(x, y)
    outcome = train(
        upload,
        TrainingData(x[:500], y[:500], x[500:], y[500:]),
        threat=ThreatModel(eps=0.05),
        box=Box(torch.zeros(4), torch.ones(4)),
        config=recipe.resolve(
            TrainingConfig(method=Method.FGSM, epochs=3, learning_rate=learning_rate), 500, 100
        ).config,
        device=pick_device("cpu"),
        reporter=Reporter(),
        generator=torch.Generator().manual_seed(0),
    )
    accuracy = float((outcome.model(x[500:]).argmax(1) == y[500:]).float().mean())
    assert accuracy > 0.9, f"the recovered model has {accuracy:.1%} clean accuracy"
    return outcome.model, outcome.notes, outcome.config


def test_a_fine_tuning_run_that_destroys_the_upload_restarts_gentler_and_says_so() -> None:
    _, notes, config = _fine_tune(learning_rate=5.0)
    assert any("collapsed" in note and "Restarted" in note for note in notes)
    assert config is not None
    assert config.learning_rate < 5.0


def test_a_healthy_run_is_not_restarted() -> None:
    _, notes, config = _fine_tune(learning_rate=1e-3)
    assert not any("Restarted" in note for note in notes)
    assert config is not None
    assert config.learning_rate == 1e-3


def test_early_stopping_never_counts_the_epochs_before_the_rate_peaks() -> None:
    assert not _plateaued(patience=3, done=6, best_epoch=1, epochs=20)
    assert _plateaued(patience=3, done=11, best_epoch=1, epochs=20)


def test_early_stopping_waits_patience_epochs_after_the_best_one() -> None:
    assert not _plateaued(patience=3, done=14, best_epoch=12, epochs=20)
    assert _plateaued(patience=3, done=15, best_epoch=12, epochs=20)


def test_a_run_without_patience_never_stops_early() -> None:
    assert not _plateaued(patience=None, done=19, best_epoch=1, epochs=20)


def test_a_warm_up_longer_than_the_chosen_epochs_is_shortened_to_them() -> None:
    resolved = recipe.resolve(TrainingConfig(eps_warmup_epochs=100), 59_000, 1000).config
    assert resolved.eps_warmup_epochs == resolved.epochs


def test_a_step_size_left_out_stays_a_share_of_epsilon_and_is_said() -> None:
    resolved = recipe.resolve(TrainingConfig(attack_steps=10), 5000, 500)

    assert resolved.config.step_size is None
    assert "attack step 2.5 * epsilon / 10, following the warm-up" in resolved.choices


def test_the_teacher_trains_as_many_epochs_as_the_student_unless_told() -> None:
    distillation = TrainingConfig(method=Method.DISTILLATION, epochs=7)

    assert recipe.resolve(distillation, 5000, 500).config.teacher_epochs == 7
    told = recipe.resolve(replace(distillation, teacher_epochs=3), 5000, 500)
    assert told.config.teacher_epochs == 3
