"""MNIST benchmark of the hardening engine (issue: engine benchmarks).

The "upload" is the small CNN of Wong et al. (2 strided convolutions with 16 and 32 channels,
a 100-unit layer) trained plainly on MNIST and exported to ONNX, as a user would send it. The
engine's public entry point then hardens it with the chosen method (fine-tuning the upload, or
from scratch with --from-scratch), printing the time and the validation robust accuracy of every
epoch, scores original and hardened model with the full evaluation suite on 1,000 test images,
and the script prints the headline figures.

    python bench/mnist_hardening.py --method pgd --epochs 12 --eps-warmup 2 --from-scratch
    python bench/mnist_hardening.py --method distillation --temperature 100 --epochs 3

MNIST is read from IDX files (``../shared/data/mnist`` by default); nothing is downloaded.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from workers.engine import samples
from workers.engine.models.registry import small_cnn
from workers.engine.pipeline import harden
from workers.engine.progress import ProgressEvent, Reporter
from workers.engine.spec import (
    EvaluationConfig,
    EvaluationSuite,
    HardeningRequest,
    Method,
    ModelFormat,
    ModelSource,
    Norm,
    ThreatModel,
    TrainingConfig,
)

DEFAULT_MNIST = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "mnist"


def main() -> None:
    args = _parse()
    torch.manual_seed(args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        train_path, test_path = _write_data(args, work)
        model_path = work / "small_cnn.onnx"
        _plain_model(args, train_path, model_path)
        request = HardeningRequest(
            model=ModelSource(model_path, ModelFormat.ONNX),
            train_data=train_path,
            eval_data=test_path,
            threat=ThreatModel(Norm(args.norm), args.eps),
            training=TrainingConfig(
                method=Method(args.method),
                epochs=args.epochs,
                batch_size=args.batch_size,
                learning_rate=args.lr,
                from_scratch=args.from_scratch,
                attack_steps=args.attack_steps,
                step_size=args.step_size,
                eps_warmup_epochs=args.eps_warmup,
                trades_beta=args.trades_beta,
                temperature=args.temperature,
                validation_size=args.validation_size,
            ),
            evaluation=EvaluationConfig(
                suite=EvaluationSuite(args.suite), samples=args.eval_samples, batch_size=500
            ),
            seed=args.seed,
        )
        clock = _EpochClock()
        started = time.monotonic()
        result = harden(request, work / "out", Reporter(callback=clock.on_event))
        total = time.monotonic() - started
    _print_summary(result.report, clock, total)
    if args.json:
        Path(args.json).write_text(json.dumps(result.report, indent=2))


def _parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mnist", type=Path, default=DEFAULT_MNIST)
    parser.add_argument("--method", default="pgd", choices=[m.value for m in Method])
    parser.add_argument("--norm", default="linf", choices=["linf", "l2"])
    parser.add_argument("--eps", type=float, default=0.3)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, help="default: the recipe's")
    parser.add_argument("--attack-steps", type=int, default=10)
    parser.add_argument("--step-size", type=float, help="default: a share of eps")
    parser.add_argument("--eps-warmup", type=float, default=0.0)
    parser.add_argument("--trades-beta", type=float, default=TrainingConfig.trades_beta)
    parser.add_argument("--temperature", type=float, default=TrainingConfig.temperature)
    parser.add_argument("--train-samples", type=int, default=60_000)
    parser.add_argument("--validation-size", type=int, default=1000)
    parser.add_argument("--eval-samples", type=int, default=1000)
    parser.add_argument("--suite", default="standard", choices=["standard", "fast"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--pretrain-epochs", type=int, default=3, help="plain training epochs")
    parser.add_argument("--from-scratch", action="store_true", help="ignore the upload's weights")
    parser.add_argument("--json", help="also write the report here")
    return parser.parse_args()


def _write_data(args: argparse.Namespace, work: Path) -> tuple[Path, Path]:
    train = samples.mnist(args.mnist, split="train")
    test = samples.mnist(args.mnist, split="test")
    keep = np.random.default_rng(args.seed).permutation(len(train))[: args.train_samples]
    train_path, test_path = work / "train.npz", work / "test.npz"
    np.savez(train_path, x=train.x[np.sort(keep)], y=train.y[np.sort(keep)])
    np.savez(test_path, x=test.x, y=test.y)
    return train_path, test_path


def _plain_model(args: argparse.Namespace, train_path: Path, model_path: Path) -> None:
    """Train the small CNN plainly (cross-entropy, Adam) and export it to ONNX: the upload."""
    with np.load(train_path) as archive:
        x, y = torch.from_numpy(archive["x"]), torch.from_numpy(archive["y"])
    model = small_cnn((1, 28, 28), 10)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    generator = torch.Generator().manual_seed(args.seed)
    started = time.monotonic()
    for _ in range(args.pretrain_epochs):
        for index in torch.randperm(len(y), generator=generator).split(128):
            optimizer.zero_grad()
            torch.nn.functional.cross_entropy(model(x[index]), y[index]).backward()
            optimizer.step()
    print(f"plain training of the upload: {time.monotonic() - started:.0f} s", flush=True)
    torch.onnx.export(
        model.eval(),
        (x[:2],),
        str(model_path),
        dynamo=True,
        opset_version=18,
        dynamic_shapes=({0: torch.export.Dim("batch")},),
        external_data=False,
    )


class _EpochClock:
    """Prints one line per finished epoch and remembers training time."""

    def __init__(self) -> None:
        self.training_seconds = 0.0
        self._epoch_started = time.monotonic()
        self._stage = ""

    def on_event(self, event: ProgressEvent) -> None:
        if event.stage != self._stage:
            self._stage = event.stage
            self._epoch_started = time.monotonic()
            print(f"-- {event.stage}", flush=True)
        if event.stage in ("training", "teacher") and event.step == 0 and event.epoch:
            seconds = time.monotonic() - self._epoch_started
            self.training_seconds += seconds
            self._epoch_started = time.monotonic()
            robust = (
                ""
                if event.robust_accuracy is None
                else f", val robust (PGD-10) {event.robust_accuracy:.2%}"
            )
            print(
                f"{event.stage} epoch {event.epoch}/{event.epochs}: {seconds:.1f} s"
                f" (total {self.training_seconds:.0f} s), loss {event.loss:.4f},"
                f" val clean {event.clean_accuracy:.2%}{robust}",
                flush=True,
            )
        elif event.stage == "evaluating" and event.message:
            print(f"   {event.message}", flush=True)


def _print_summary(report: dict, clock: _EpochClock, total: float) -> None:
    print()
    print(f"training time: {clock.training_seconds:.0f} s; whole job: {total:.0f} s")
    print(f"{'':10} {'clean':>24} {'worst-case robust':>24}")
    for label in ("original", "hardened"):
        scores = report[label]
        print(
            f"{label:10} {_fmt(scores['clean_accuracy']):>24} {_fmt(scores['robust_accuracy']):>24}"
        )
    print("\nper attack (hardened):")
    for attack in report["hardened"]["attacks"]:
        print(f"  {attack['name']:8} {_fmt(attack['robust_accuracy'])}")
    fired = [c["check"] for c in report["hardened"]["masking"] if c["fired"]]
    print(f"\ngradient masking flags (hardened): {fired or 'none'}")
    for note in report["training"]["notes"]:
        print(f"note: {note}")


def _fmt(accuracy: dict) -> str:
    return f"{accuracy['value']:.2%} [{accuracy['low']:.1%}, {accuracy['high']:.1%}]"


if __name__ == "__main__":
    main()
