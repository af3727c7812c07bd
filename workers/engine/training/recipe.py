"""The default recipe: what a job with no training flags runs, derived from the data it gets.

Users do not tune, so every training parameter a user leaves unset is chosen here from the
number of training rows, the method and whether the upload is fine-tuned or trained from
scratch; a parameter the user set is kept as it is. :func:`resolve` returns a concrete
:class:`~workers.engine.spec.TrainingConfig` together with one plain sentence per choice, which
the report records, so a user can see (and pin with flags) what ran.

The numbers come from the panel in ``bench/recipes.py`` (docs/benchmarks.md):

- **Validation**: a tenth of the training rows, at most 1,000, for checkpoint selection; none
  under 200 rows, where a 20-row validation set would pick checkpoints by noise.
- **Batch size**: 128 (Wong et al. 2020), smaller on small sets so an epoch has at least about
  50 optimiser steps (never below 32).
- **Epochs**: enough for about 5,000 optimiser steps, between 8 and 60 epochs: 11 on MNIST.
- **Attack steps**: PGD-10 with step 2.5 eps / 10 (Madry et al. 2018; Rice et al. 2020), and
  PGD-5 with step 2.5 eps / 5 for PGD-AT from 20,000 training rows. With that many rows the
  recipe's ~5,000 optimiser steps already see a fresh attack on every row at every epoch, and
  the attack is most of the cost: on all of MNIST PGD-5 halved the time of an epoch and scored
  at least as well under the `standard` suite as PGD-10 (docs/benchmarks.md). TRADES keeps the
  10 steps of its paper; FGSM takes one.
- **Epsilon warm-up**: the first fifth of the epochs (adversarial methods). Without it,
  fine-tuning a plainly trained MNIST model at eps 0.3 fell into a constant prediction in its
  first epoch and never recovered.
- **Learning rate**: Adam, one-cycle, peaking at 5e-3 whether the upload is fine-tuned or
  trained from scratch. Fine-tuning at a gentler 1e-3 left the MNIST CNN 7 points of
  validation robust accuracy behind after 10 epochs and lost every small case of the panel
  by 1 to 10 points; behind the warm-up, the upload comes to no harm at the higher rate.
- **Early stopping**: only with a derived epoch count and an adversarial method, after the
  learning rate has peaked, when validation robust accuracy has not improved for a quarter of
  the epochs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from workers.engine.spec import Method, TrainingConfig

VALIDATION_SHARE = 0.1
VALIDATION_MAX = 1000
VALIDATION_MIN_ROWS = 200
TARGET_STEPS = 5000
MIN_EPOCHS, MAX_EPOCHS = 8, 60
MIN_STEPS_PER_EPOCH = 50
BATCH_MAX, BATCH_MIN = 128, 32
WARMUP_SHARE = 0.2
PEAK_LR = 5e-3
ATTACK_STEPS = 10
LARGE_SET_ROWS, LARGE_SET_PGD_STEPS = 20_000, 5
PGD_STEP_SHARE = 2.5
"""PGD and TRADES step 2.5 * eps / steps (Madry et al. 2018)."""
FGSM_STEP_SHARE = 1.25
"""FGSM steps 1.25 * eps from its random start (Wong et al. 2020)."""


@dataclass(frozen=True)
class Recipe:
    config: TrainingConfig
    """Every field concrete but ``step_size``, which stays None when the request left it out:
    the step is then a share of the epsilon in force at each batch (``PGD_STEP_SHARE``,
    ``FGSM_STEP_SHARE``), and the warm-up ramps that epsilon, so no one number stands for it."""
    early_stopping_patience: int | None
    """Epochs without a better validation score before stopping; None = run every epoch."""
    choices: tuple[str, ...]
    """One sentence per parameter the recipe chose, for the report."""


def validation_size(config: TrainingConfig, rows: int) -> int:
    """Rows held out of ``rows`` training rows to select checkpoints on."""
    if config.validation_size is not None:
        return config.validation_size
    if rows < VALIDATION_MIN_ROWS:
        return 0
    return min(VALIDATION_MAX, round(rows * VALIDATION_SHARE))


def resolve(config: TrainingConfig, train_rows: int, validation_rows: int) -> Recipe:
    """The concrete configuration for ``train_rows`` rows to train on (after the validation
    split of ``validation_rows``)."""
    choices: list[str] = []
    if config.validation_size is None:
        choices.append(
            f"validation: {validation_rows} rows held out of the training data"
            f" ({VALIDATION_SHARE:.0%}, at most {VALIDATION_MAX}; none under"
            f" {VALIDATION_MIN_ROWS} rows) to select the best epoch"
        )
    batch_size = config.batch_size
    if batch_size is None:
        batch_size = _batch_size(train_rows)
        choices.append(
            f"batch size {batch_size} for {train_rows} training rows"
            f" (at least {MIN_STEPS_PER_EPOCH} steps an epoch, at most {BATCH_MAX})"
        )
    epochs = config.epochs
    if epochs is None:
        steps = math.ceil(train_rows / batch_size)
        epochs = min(MAX_EPOCHS, max(MIN_EPOCHS, math.ceil(TARGET_STEPS / steps)))
        choices.append(
            f"{epochs} epochs: about {TARGET_STEPS} optimiser steps of {steps} an epoch"
            f" (between {MIN_EPOCHS} and {MAX_EPOCHS})"
        )
    warmup = config.eps_warmup_epochs
    if warmup is None:
        adversarial = config.method is not Method.DISTILLATION
        warmup = round(WARMUP_SHARE * epochs, 2) if adversarial and epochs >= 3 else 0.0
        if warmup:
            choices.append(f"epsilon ramped up from 0 over the first {warmup:g} epochs")
    elif warmup > epochs:
        choices.append(f"epsilon warm-up shortened from {warmup:g} to the {epochs} epochs chosen")
        warmup = float(epochs)
    attack_steps = config.attack_steps
    if attack_steps is None:
        attack_steps = _attack_steps(config.method, train_rows)
        if config.method in (Method.PGD, Method.TRADES):
            large = attack_steps == LARGE_SET_PGD_STEPS
            choices.append(
                f"{attack_steps} attack steps a batch"
                + (f" ({LARGE_SET_ROWS} training rows or more)" if large else "")
            )
    learning_rate = config.learning_rate
    if learning_rate is None:
        learning_rate = PEAK_LR
        choices.append(
            f"Adam with a one-cycle rate peaking at {learning_rate:g}"
            f" ({'training from scratch' if config.from_scratch else 'fine-tuning the upload'})"
        )
    if config.step_size is None and config.method is not Method.DISTILLATION:
        share = (
            f"{FGSM_STEP_SHARE:g} * epsilon"
            if config.method is Method.FGSM
            else f"{PGD_STEP_SHARE:g} * epsilon / {attack_steps}"
        )
        choices.append(f"attack step {share}" + (", following the warm-up" if warmup else ""))
    teacher_epochs = config.teacher_epochs
    if config.method is Method.DISTILLATION and teacher_epochs is None:
        teacher_epochs = epochs
        choices.append(f"teacher trained as many epochs as the student ({epochs})")
    patience = None
    if config.epochs is None and validation_rows > 0 and config.method is not Method.DISTILLATION:
        patience = max(2, epochs // 4)
        choices.append(
            f"early stopping once the rate has peaked, after {patience} epochs without a better"
            " validation score"
        )
    resolved = replace(
        config,
        epochs=epochs,
        batch_size=batch_size,
        attack_steps=attack_steps,
        eps_warmup_epochs=warmup,
        learning_rate=learning_rate,
        teacher_epochs=teacher_epochs,
        validation_size=validation_rows,
    )
    return Recipe(resolved, patience, tuple(choices))


def _batch_size(rows: int) -> int:
    target = max(1, rows // MIN_STEPS_PER_EPOCH)
    power = 2 ** max(0, math.floor(math.log2(target)))
    return max(BATCH_MIN, min(BATCH_MAX, power))


def _attack_steps(method: Method, train_rows: int) -> int:
    if method is Method.PGD and train_rows >= LARGE_SET_ROWS:
        return LARGE_SET_PGD_STEPS
    return ATTACK_STEPS
