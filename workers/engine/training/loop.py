"""The training loop: a plain function of model, data, training step and optimiser.

Method-specific work (crafting adversarial examples, soft labels, TRADES' KL term) lives in the
``Step`` passed in; the loop only iterates, steps the optimiser and the schedules, reports
progress and honours cancellation.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from workers.engine.errors import TrainingDiverged
from workers.engine.progress import ProgressEvent, Reporter
from workers.engine.training.schedules import Schedule

Step = Callable[[nn.Module, Tensor, Tensor, float], tuple[Tensor, Tensor]]
"""``(model, x, y, eps) -> (loss, logits)``; the logits are those the loss was computed on."""


@dataclass(frozen=True)
class Batches:
    """Shuffled mini-batches of an in-memory dataset, reshuffled by ``generator`` each epoch."""

    x: Tensor
    y: Tensor
    batch_size: int
    device: torch.device
    generator: torch.Generator

    def __len__(self) -> int:
        return math.ceil(len(self.y) / self.batch_size)

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        order = torch.randperm(len(self.y), generator=self.generator)
        for start in range(0, len(order), self.batch_size):
            index = order[start : start + self.batch_size]
            yield (
                self.x[index].to(self.device, non_blocking=True),
                self.y[index].to(self.device, non_blocking=True),
            )


@dataclass(frozen=True)
class EpochStats:
    epoch: int
    loss: float
    train_accuracy: float
    seconds: float
    samples: int


def train_epoch(
    model: nn.Module,
    batches: Batches,
    step: Step,
    optimizer: torch.optim.Optimizer,
    *,
    epoch: int,
    epochs: int,
    lr: Schedule,
    eps: Schedule,
    reporter: Reporter,
    stage: str = "training",
) -> EpochStats:
    """Run one epoch. ``epoch`` counts from 0; schedules see fractional epochs."""
    model.train()
    started = time.monotonic()
    total = len(batches)
    loss_sum = torch.zeros(())
    correct = torch.zeros((), dtype=torch.long)
    seen = 0
    for index, (x, y) in enumerate(batches):
        reporter.check()
        t = epoch + index / total
        for group in optimizer.param_groups:
            group["lr"] = lr(t)
        loss, logits = step(model, x, y, eps(t))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        loss_sum += loss.detach().float().cpu() * len(y)
        correct += (logits.detach().argmax(1) == y).sum().cpu()
        seen += len(y)
        if reporter.due():
            reporter.emit(
                ProgressEvent(
                    stage=stage,
                    epoch=epoch + 1,
                    epochs=epochs,
                    step=index + 1,
                    steps=total,
                    loss=float(loss_sum) / seen,
                    eta_seconds=_eta(started, epoch, epochs, index + 1, total),
                ),
                force=False,
            )
    mean_loss = float(loss_sum) / max(seen, 1)
    if not math.isfinite(mean_loss):
        raise TrainingDiverged(
            f"the training loss became {mean_loss} in epoch {epoch + 1}; lower the learning rate"
        )
    return EpochStats(
        epoch + 1, mean_loss, int(correct) / max(seen, 1), time.monotonic() - started, seen
    )


def _eta(epoch_started: float, epoch: int, epochs: int, done: int, total: int) -> float:
    per_batch = (time.monotonic() - epoch_started) / max(done, 1)
    return per_batch * ((epochs - epoch - 1) * total + (total - done))
