"""The text training loop: a plain function of model, data, step and optimiser.

Like the image loop (:mod:`workers.engine.training.loop`), method-specific work lives in the
step; the loop shuffles, steps the optimiser and the schedules, reports progress, honours
cancellation, and keeps the epoch with the best clean accuracy on the held-out split (the
discrete attacks that would judge robustness are scoring code and stay out of training).
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor, nn

from workers.engine.errors import TrainingDiverged
from workers.engine.progress import ProgressEvent, Reporter
from workers.engine.text.model import TextClassifier, as_module, metadata, model_device
from workers.engine.text.training.batches import EncodedSplit, Encoder
from workers.engine.text.training.steps import SoftLabelStep, TemperatureStep, TextStep
from workers.engine.training.schedules import Schedule


@dataclass(frozen=True)
class TextTrainingData:
    train: EncodedSplit
    validation: EncodedSplit


def split_validation(
    texts: Sequence[str],
    labels: Sequence[int] | np.ndarray,
    encoder: Encoder,
    *,
    share: float = 0.1,
    seed: int = 0,
) -> TextTrainingData:
    """Hold out a random ``share`` of the examples (at least one) for selecting the epoch."""
    if not 0.0 < share < 1.0:
        raise ValueError(f"the validation share must lie in (0, 1), got {share}")
    if len(texts) < 2:
        raise ValueError("at least two examples are needed to hold one out")
    order = np.random.default_rng(seed).permutation(len(texts))
    held = max(1, round(share * len(texts)))
    labels = np.asarray(labels, dtype=np.int64)

    def subset(rows: np.ndarray) -> EncodedSplit:
        return EncodedSplit.of([texts[int(r)] for r in rows], labels[rows], encoder)

    return TextTrainingData(train=subset(order[held:]), validation=subset(order[:held]))


@dataclass(frozen=True)
class TextEpoch:
    epoch: int
    loss: float
    train_accuracy: float
    val_accuracy: float
    seconds: float


@dataclass
class TextTrainingOutcome:
    model: TextClassifier
    history: list[TextEpoch]
    selected_epoch: int
    notes: list[str] = field(default_factory=list)


def train_text(
    model: TextClassifier,
    data: TextTrainingData,
    step: TextStep,
    optimiser: torch.optim.Optimizer,
    epochs: int,
    *,
    batch_size: int = 32,
    eps: float | Schedule = 0.0,
    lr: Schedule | None = None,
    generator: torch.Generator | None = None,
    reporter: Reporter | None = None,
    stage: str = "training",
    keep_last: bool = False,
) -> TextTrainingOutcome:
    """Train ``model`` in place for ``epochs`` and leave it at the epoch with the best
    validation accuracy (ties go to the later epoch), or at the last with ``keep_last``.
    Schedules see fractional epochs."""
    if epochs < 1:
        raise ValueError(f"epochs must be positive, got {epochs}")
    reporter = reporter or Reporter()
    generator = generator or torch.Generator().manual_seed(0)
    radius = eps if callable(eps) else _constant(eps)
    module = as_module(model)
    device = model_device(model)
    trim = metadata(model).max_length is None
    history: list[TextEpoch] = []
    best_accuracy, best_epoch, best_state = -math.inf, 0, _snapshot(module)
    steps = data.train.count(batch_size)
    for epoch in range(epochs):
        started = time.monotonic()
        module.train()
        loss_sum, correct, seen = 0.0, 0, 0
        for index, batch in enumerate(
            data.train.batches(batch_size, device, generator=generator, trim=trim)
        ):
            reporter.check()
            t = epoch + index / steps
            if lr is not None:
                for group in optimiser.param_groups:
                    group["lr"] = lr(t)
            loss, logits = step(model, batch, radius(t))
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            loss_sum += float(loss.detach()) * len(batch.labels)
            correct += int((logits.detach().argmax(1) == batch.labels).sum())
            seen += len(batch.labels)
        mean_loss = loss_sum / max(seen, 1)
        if not math.isfinite(mean_loss):
            raise TrainingDiverged(
                f"the training loss became {mean_loss} in epoch {epoch + 1}; lower the learning"
                " rate"
            )
        val_accuracy = accuracy(model, data.validation, batch_size=256)
        record = TextEpoch(
            epoch + 1, mean_loss, correct / max(seen, 1), val_accuracy, time.monotonic() - started
        )
        history.append(record)
        reporter.emit(
            ProgressEvent(
                stage=stage,
                epoch=epoch + 1,
                epochs=epochs,
                loss=mean_loss,
                clean_accuracy=val_accuracy,
                message=f"epoch {epoch + 1}/{epochs} done in {record.seconds:.1f} s",
                samples=seen,
            )
        )
        if keep_last or val_accuracy >= best_accuracy:
            best_accuracy, best_epoch, best_state = val_accuracy, epoch + 1, _snapshot(module)
    module.load_state_dict(best_state)
    module.eval()
    return TextTrainingOutcome(model, history, best_epoch)


def accuracy(model: TextClassifier, data: EncodedSplit, *, batch_size: int = 256) -> float:
    """Clean accuracy on ``data`` in eval mode (the model's mode is restored)."""
    if len(data) == 0:
        return math.nan
    module = as_module(model)
    was_training = module.training
    module.eval()
    correct = 0
    trim = metadata(model).max_length is None
    with torch.no_grad():
        for batch in data.batches(batch_size, model_device(model), trim=trim):
            logits = model.forward(batch.ids, batch.mask)
            correct += int((logits.argmax(1) == batch.labels).sum())
    module.train(was_training)
    return correct / len(data)


def distill_text(
    model: TextClassifier,
    data: TextTrainingData,
    optimiser_for: Callable[[nn.Module], torch.optim.Optimizer],
    epochs: int,
    *,
    temperature: float = 20.0,
    batch_size: int = 32,
    generator: torch.Generator | None = None,
    reporter: Reporter | None = None,
) -> tuple[TextTrainingOutcome, TextTrainingOutcome]:
    """Defensive distillation: a copy of ``model`` trained at temperature T is the teacher;
    ``model`` itself, trained on the teacher's soft labels at T, is the student (deployed at
    T = 1). Returns the student's outcome, then the teacher's."""
    teacher = copy.deepcopy(model)
    teacher_run = train_text(
        teacher,
        data,
        TemperatureStep(temperature),
        optimiser_for(as_module(teacher)),
        epochs,
        batch_size=batch_size,
        generator=generator,
        reporter=reporter,
        stage="teacher",
    )
    student_run = train_text(
        model,
        data,
        SoftLabelStep(teacher_run.model, temperature),
        optimiser_for(as_module(model)),
        epochs,
        batch_size=batch_size,
        generator=generator,
        reporter=reporter,
    )
    student_run.notes.append(
        f"teacher trained {epochs} epochs at T={temperature:g}; the student learned its soft"
        " labels at the same T and is deployed at T=1"
    )
    student_run.notes.append(
        "defensive distillation flattens gradients, which the scores here do not rely on: the"
        " character and synonym attacks search with the model's probabilities only, so the gain"
        " they show is real and usually small (Soll et al. 2019); adversarial training (pgd,"
        " trades) is what moves them"
    )
    return student_run, teacher_run


def _constant(value: float) -> Schedule:
    return lambda _: value


def _snapshot(module: nn.Module) -> dict[str, Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}
