"""Does the `standard` evaluation suite cost no more than AutoAttack's standard version?

On the first 500 MNIST test images and an adversarially trained small CNN (PGD-AT through the
engine's training loop, cached under ``--model``), times, interleaved:

- ``suite``: the engine's ``standard`` suite as a job runs it (cascade for the headline, every
  attack on the per-attack subset, robustness curve, masking checks);
- ``autoattack``: AutoAttack's standard cascade run by hand from the same attack functions
  (APGD-CE 100 steps, APGD-T 9 targets x 100, FAB-T 9 targets x 100, Square 5,000 queries, each
  on the samples the ones before left correct), nothing else;
- ``every-attack`` (with ``--every-attack``): the suite with the per-attack subset covering every
  sample, which is the old suite's per-sample worst case over all seven attacks on every sample
  (with the new, cheaper curve).

Prints one table: wall time, CPU time and headline robust accuracy for each (best of the
repeats). On one thread the CPU time is the work done, which a busy neighbour disturbs far
less than the wall time; on a quiet machine the two agree.

    python bench/evaluation_cost.py --model /tmp/tempering-mnist-pgd.pt --every-attack
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from dataclasses import replace
from functools import partial
from pathlib import Path

import torch
from torch import Tensor, nn

from workers.engine import samples
from workers.engine.evaluation import apgd, fab, square
from workers.engine.evaluation.suite import EvaluationTarget, evaluate
from workers.engine.geometry import Box
from workers.engine.models.registry import small_cnn
from workers.engine.progress import ProgressEvent, Reporter
from workers.engine.spec import EvaluationSuite
from workers.engine.training.loop import Batches, train_epoch
from workers.engine.training.steps import AdversarialSetting, PgdStep

DEFAULT_MNIST = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "mnist"


def main() -> None:
    args = _parse()
    torch.set_num_threads(args.threads)
    model = _robust_model(args)
    test = samples.mnist(args.mnist, split="test")
    x = torch.from_numpy(test.x[: args.samples])
    y = torch.from_numpy(test.y[: args.samples]).long()
    target = EvaluationTarget(
        x=x,
        y=y,
        norm="linf",
        eps=args.eps,
        box=Box(torch.tensor(0.0), torch.tensor(1.0)),
        suite=EvaluationSuite.STANDARD,
        curve_points=6,
        batch_size=500,
        seed=0,
        num_classes=10,
    )
    runs: dict[str, Callable[[], int]] = {
        "suite": lambda: _suite(model, target),
        "autoattack": lambda: _autoattack(model, target),
    }
    if args.every_attack:
        every = replace(target, per_attack_samples=len(y))
        runs["every-attack"] = lambda: _suite(model, every)
    results: dict[str, list[tuple[float, float, int]]] = {name: [] for name in runs}
    for _ in range(args.repeats):
        for name, run in runs.items():
            wall, cpu = time.perf_counter(), time.process_time()
            robust = run()
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            results[name].append((wall, cpu, robust))
            print(f"{name}: {wall:.0f} s, CPU {cpu:.0f} s, {robust}/{len(y)} robust", flush=True)
    print(f"\n{'run':14} {'wall time':>10} {'CPU time':>10} {'headline robust':>16}")
    for name, timings in results.items():
        wall = min(t[0] for t in timings)
        cpu = min(t[1] for t in timings)
        robust = timings[-1][2]
        print(f"{name:14} {wall:>9.0f}s {cpu:>9.0f}s {robust:>8}/{len(y)} ({robust / len(y):.1%})")


def _parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mnist", type=Path, default=DEFAULT_MNIST)
    parser.add_argument("--model", type=Path, required=True, help="cached weights (made if absent)")
    parser.add_argument("--epochs", type=int, default=4, help="PGD-AT epochs if training")
    parser.add_argument("--samples", type=int, default=500)
    parser.add_argument("--eps", type=float, default=0.3)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--every-attack", action="store_true", help="also the old worst case")
    return parser.parse_args()


def _suite(model: nn.Module, target: EvaluationTarget) -> int:
    def show(event: ProgressEvent) -> None:
        print(f"   {event.message}", flush=True)

    return evaluate(model, target, Reporter(callback=show), "suite").robust.correct


def _autoattack(model: nn.Module, target: EvaluationTarget) -> int:
    """AutoAttack's standard cascade: each attack on the samples still classified correctly."""
    cascade = [
        partial(apgd.apgd, loss="ce", steps=100),
        partial(apgd.apgd_targeted, n_target_classes=9, steps=100),
        partial(fab.fab_targeted, n_target_classes=9, steps=100),
        partial(square.square, queries=5000),
    ]
    with torch.no_grad():
        standing = model(target.x).argmax(1) == target.y
    generator = torch.Generator().manual_seed(target.seed)
    for attack in cascade:
        index = torch.nonzero(standing).flatten()
        if len(index) == 0:
            break
        x, y = target.x[index], target.y[index]
        x_adv = attack(
            model, x, y, norm="linf", eps=target.eps, box=target.box, generator=generator
        )
        _check_linf(x, x_adv, target.eps)
        with torch.no_grad():
            standing[index] = model(x_adv).argmax(1) == y
    return int(standing.sum())


def _check_linf(x: Tensor, x_adv: Tensor, eps: float) -> None:
    size = float((x_adv - x).abs().max()) if len(x) else 0.0
    if size > eps + 1e-5 or float(x_adv.min()) < -1e-6 or float(x_adv.max()) > 1 + 1e-6:
        raise RuntimeError("an attack left the eps ball or the input domain")


def _robust_model(args: argparse.Namespace) -> nn.Module:
    """The small CNN of Wong et al. after ``--epochs`` of PGD-7 adversarial training at eps 0.3
    (eps ramped up over the first epoch), through the engine's training loop."""
    model = small_cnn((1, 28, 28), 10)
    if args.model.exists():
        model.load_state_dict(torch.load(args.model))
        return model.eval()
    train = samples.mnist(args.mnist, split="train")
    x, y = torch.from_numpy(train.x), torch.from_numpy(train.y).long()
    torch.manual_seed(0)
    model = small_cnn((1, 28, 28), 10)
    box = Box(torch.tensor(0.0), torch.tensor(1.0))
    setting = AdversarialSetting("linf", box, torch.Generator().manual_seed(0))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    batches = Batches(x, y, 128, torch.device("cpu"), torch.Generator().manual_seed(0))
    for epoch in range(args.epochs):
        stats = train_epoch(
            model,
            batches,
            PgdStep(setting, 7),
            optimizer,
            epoch=epoch,
            epochs=args.epochs,
            lr=lambda t: 1e-3 if t < args.epochs - 1 else 3e-4,
            eps=lambda t: min(args.eps, args.eps * (t + 0.1)),
            reporter=Reporter(),
        )
        print(f"PGD-AT epoch {epoch + 1}: {stats.seconds:.0f} s, loss {stats.loss:.3f}", flush=True)
    args.model.parent.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), args.model)
    return model.eval()


if __name__ == "__main__":
    main()
