"""Is the engine's training loop as fast as a plain PyTorch loop of the same algorithm?

Runs one epoch of FGSM-with-random-start and of PGD adversarial training on the same MNIST
batches, from the same initial weights, twice: through the engine (``train_epoch`` with its
step objects, schedules, progress reporting and cancellation checks) and through a plain loop
written out inline as in locuslab/fast_adversarial. Prints both times and their ratio; the runs
alternate so that machine noise hits both alike.

    python bench/training_overhead.py --samples 20000 --repeats 3
"""

from __future__ import annotations

import argparse
import copy
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from workers.engine import samples
from workers.engine.geometry import Box
from workers.engine.models.registry import small_cnn
from workers.engine.progress import Reporter
from workers.engine.training.loop import Batches, train_epoch
from workers.engine.training.steps import AdversarialSetting, FgsmStep, PgdStep

DEFAULT_MNIST = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "mnist"
EPS, LR = 0.3, 1e-3


def plain_epoch(
    model: nn.Module,
    batches: list[tuple[Tensor, Tensor]],
    optimizer: torch.optim.Optimizer,
    steps: int,
    alpha: float,
) -> None:
    model.train()
    for x, y in batches:
        delta = (torch.rand_like(x) * 2 - 1) * EPS
        delta = (x + delta).clamp(0, 1) - x
        for _ in range(steps):
            delta.requires_grad_(True)
            loss = F.cross_entropy(model(x + delta), y)
            (grad,) = torch.autograd.grad(loss, delta)
            delta = (delta.detach() + alpha * grad.sign()).clamp(-EPS, EPS)
            delta = (x + delta).clamp(0, 1) - x
        loss = F.cross_entropy(model(x + delta), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()


class _FixedBatches(Batches):
    """The engine's batch iterator, replaying a fixed list so both loops see the same batches."""

    def __init__(self, batches: list[tuple[Tensor, Tensor]]) -> None:
        x = torch.cat([b[0] for b in batches])
        y = torch.cat([b[1] for b in batches])
        super().__init__(x, y, len(batches[0][1]), torch.device("cpu"), torch.Generator())
        object.__setattr__(self, "_batches", batches)

    def __iter__(self):
        return iter(self._batches)  # type: ignore[attr-defined]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mnist", type=Path, default=DEFAULT_MNIST)
    parser.add_argument("--samples", type=int, default=20_000)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    data = samples.mnist(args.mnist, split="train")
    x = torch.from_numpy(data.x[: args.samples])
    y = torch.from_numpy(data.y[: args.samples])
    batches = list(zip(x.split(args.batch_size), y.split(args.batch_size), strict=True))
    torch.manual_seed(0)
    initial = small_cnn((1, 28, 28), 10)
    setting = AdversarialSetting(
        "linf", Box(torch.tensor(0.0), torch.tensor(1.0)), torch.Generator().manual_seed(0)
    )
    for name, steps, alpha, engine_step in (
        ("fgsm-rs", 1, 1.25 * EPS, FgsmStep(setting, 1.25)),
        ("pgd-10", 10, 2.5 * EPS / 10, PgdStep(setting, 10)),
    ):
        engine_times, plain_times = [], []
        for _ in range(args.repeats):
            model = copy.deepcopy(initial)
            optimizer = torch.optim.Adam(model.parameters(), lr=LR)
            started = time.perf_counter()
            plain_epoch(model, batches, optimizer, steps, alpha)
            plain_times.append(time.perf_counter() - started)

            model = copy.deepcopy(initial)
            optimizer = torch.optim.Adam(model.parameters(), lr=LR)
            started = time.perf_counter()
            train_epoch(
                model,
                _FixedBatches(batches),
                engine_step,
                optimizer,
                epoch=0,
                epochs=1,
                lr=lambda t: LR,
                eps=lambda t: EPS,
                reporter=Reporter(min_interval_seconds=0.5),
            )
            engine_times.append(time.perf_counter() - started)
        plain, engine = min(plain_times), min(engine_times)
        print(
            f"{name}: plain loop {plain:.2f} s, engine {engine:.2f} s per epoch of"
            f" {len(batches)} batches (best of {args.repeats}); engine/plain = {engine / plain:.3f}"
        )


if __name__ == "__main__":
    main()
