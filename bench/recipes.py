"""The default recipe against a plain loop, with defaults only (issue 12).

For each case the "upload" is a model trained plainly and exported to ONNX, as a user sends it.
The engine hardens it with **no training flags** (method, epsilon and bounds only), and a plain
reference loop written below (PGD-10, Adam at 1e-3, batch 64, every training row, as many epochs
as the engine's recipe chose) fine-tunes the same upload. Both are graded by the engine's
``standard`` suite on the same held-out samples with the same seed, in this one process, so the
two columns share the machine's noise. Distillation cases compare clean accuracy with the
original's.

    python bench/recipes.py                      # the whole panel
    python bench/recipes.py --cases digits-mlp cancer-mlp
    python bench/recipes.py --cases mnist --skip-reference   # the job's wall time alone

MNIST is read from IDX files (``../shared/data/mnist``); the other sets ship with scikit-learn.
Nothing is downloaded.
"""

from __future__ import annotations

import workers  # noqa: F401  first: sets the OpenMP wait policy before torch loads

# isort: split
import argparse
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from workers.engine import data as datasets
from workers.engine import samples
from workers.engine.evaluation.suite import EvaluationTarget, evaluate
from workers.engine.geometry import Box
from workers.engine.models.loading import load_model
from workers.engine.models.registry import small_cnn
from workers.engine.pipeline import harden, prepare_data
from workers.engine.progress import ProgressEvent, Reporter
from workers.engine.spec import (
    EvaluationConfig,
    HardeningRequest,
    Method,
    ModelFormat,
    ModelSource,
    ThreatModel,
    TrainingConfig,
)

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_MNIST = ROOT / ".." / "shared" / "data" / "mnist"
DEMO_ASSETS = ROOT / "client" / "demo_assets"


@dataclass(frozen=True)
class Inputs:
    model: Path
    train: Path
    test: Path
    lower: tuple[float, ...] = (0.0,)
    upper: tuple[float, ...] = (1.0,)


@dataclass(frozen=True)
class Case:
    name: str
    description: str
    method: Method
    eps: float
    make: Callable[[Path, argparse.Namespace], Inputs]


@dataclass
class Row:
    case: Case
    original: dict[str, Any]
    defaults: dict[str, Any]
    defaults_seconds: float
    epochs: int
    recipe: list[str]
    notes: list[str]
    reference: dict[str, Any] | None = None
    reference_seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)


# --- uploads ------------------------------------------------------------------------------------


def _mlp(inputs: int, classes: int) -> nn.Module:
    return nn.Sequential(
        nn.Linear(inputs, 128), nn.ReLU(), nn.Linear(128, 64), nn.ReLU(), nn.Linear(64, classes)
    )


def _train_plainly(model: nn.Module, x: Tensor, y: Tensor, epochs: int, batch: int) -> nn.Module:
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    generator = torch.Generator().manual_seed(0)
    model.train()
    for _ in range(epochs):
        for index in torch.randperm(len(y), generator=generator).split(batch):
            optimizer.zero_grad()
            F.cross_entropy(model(x[index]), y[index]).backward()
            optimizer.step()
    return model.eval()


def _export(model: nn.Module, example: Tensor, path: Path) -> None:
    torch.onnx.export(
        model,
        (example[:2],),
        str(path),
        dynamo=True,
        opset_version=18,
        dynamic_shapes=({0: torch.export.Dim("batch")},),
        external_data=False,
    )


def _write(path: Path, x: np.ndarray, y: np.ndarray) -> Path:
    np.savez(path, x=x.astype(np.float32), y=y.astype(np.int64))
    return path


def _split(n: int, test: int) -> tuple[np.ndarray, np.ndarray]:
    order = np.random.default_rng(0).permutation(n)
    return np.sort(order[test:]), np.sort(order[:test])


def make_mnist(work: Path, args: argparse.Namespace) -> Inputs:
    train = samples.mnist(args.mnist, split="train")
    test = samples.mnist(args.mnist, split="test")
    model = small_cnn((1, 28, 28), 10)
    x, y = torch.from_numpy(train.x), torch.from_numpy(train.y)
    _train_plainly(model, x, y, epochs=3, batch=128)
    _export(model, x, work / "model.onnx")
    return Inputs(
        work / "model.onnx",
        _write(work / "train.npz", train.x, train.y),
        _write(work / "test.npz", test.x, test.y),
    )


def make_digits_cnn(work: Path, args: argparse.Namespace) -> Inputs:
    return Inputs(
        DEMO_ASSETS / "digits_cnn.onnx",
        DEMO_ASSETS / "digits_train.npz",
        DEMO_ASSETS / "digits_test.npz",
    )


def make_digits_mlp(work: Path, args: argparse.Namespace) -> Inputs:
    """The issue's small-data case: a 3-layer MLP on 1,400 rows of 64 features."""
    digits = samples.digits(image=False)
    train, test = _split(len(digits), len(digits) - 1400)
    model = _train_plainly(
        _mlp(64, 10),
        torch.from_numpy(digits.x[train]),
        torch.from_numpy(digits.y[train]),
        epochs=30,
        batch=64,
    )
    _export(model, torch.from_numpy(digits.x[train]), work / "model.onnx")
    return Inputs(
        work / "model.onnx",
        _write(work / "train.npz", digits.x[train], digits.y[train]),
        _write(work / "test.npz", digits.x[test], digits.y[test]),
    )


def make_cancer_mlp(work: Path, args: argparse.Namespace) -> Inputs:
    """Breast cancer standardised on the training rows; each feature bounded by the range it
    takes over the whole set, in standardised units."""
    from sklearn.datasets import load_breast_cancer

    bunch = load_breast_cancer()
    raw = bunch.data.astype(np.float64)
    train, test = _split(len(raw), 169)
    mean, std = raw[train].mean(axis=0), raw[train].std(axis=0)
    x = ((raw - mean) / std).astype(np.float32)
    lower, upper = x.min(axis=0), x.max(axis=0)
    model = _train_plainly(
        _mlp(30, 2),
        torch.from_numpy(x[train]),
        torch.from_numpy(bunch.target[train]),
        epochs=30,
        batch=32,
    )
    _export(model, torch.from_numpy(x[train]), work / "model.onnx")
    return Inputs(
        work / "model.onnx",
        _write(work / "train.npz", x[train], bunch.target[train]),
        _write(work / "test.npz", x[test], bunch.target[test]),
        tuple(float(v) for v in lower),
        tuple(float(v) for v in upper),
    )


CASES = [
    Case("mnist", "Wong CNN, MNIST 60k, linf 0.3", Method.PGD, 0.3, make_mnist),
    Case("digits-cnn", "bundled digits CNN, linf 0.1", Method.PGD, 0.1, make_digits_cnn),
    Case("digits-mlp", "MLP, 1,400 digits rows, linf 0.1", Method.PGD, 0.1, make_digits_mlp),
    Case("cancer-mlp", "MLP, breast cancer std., linf 0.25", Method.PGD, 0.25, make_cancer_mlp),
    Case(
        "digits-mlp-distill",
        "MLP, 1,400 digits rows, T=100",
        Method.DISTILLATION,
        0.1,
        make_digits_mlp,
    ),
    Case(
        "cancer-mlp-distill",
        "MLP, breast cancer std., T=100",
        Method.DISTILLATION,
        0.25,
        make_cancer_mlp,
    ),
]


# --- the reference loop -------------------------------------------------------------------------


def reference_loop(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    eps: float,
    lower: Tensor,
    upper: Tensor,
    epochs: int,
) -> nn.Module:
    """What a practitioner writes in 30 lines: PGD-10 adversarial training, Adam 1e-3,
    batch 64, every row, no schedule, no warm-up, the last epoch kept."""
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    generator = torch.Generator().manual_seed(1)
    alpha = 2.5 * eps / 10
    for _ in range(epochs):
        for index in torch.randperm(len(y), generator=generator).split(64):
            xb, yb = x[index], y[index]
            delta = (torch.rand(xb.shape, generator=generator) * 2 - 1) * eps
            model.eval()
            for _ in range(10):
                delta.requires_grad_(True)
                adv = torch.max(torch.min(xb + delta, upper), lower)
                (grad,) = torch.autograd.grad(F.cross_entropy(model(adv), yb), delta)
                delta = (delta.detach() + alpha * grad.sign()).clamp(-eps, eps)
            adv = torch.max(torch.min(xb + delta, upper), lower).detach()
            model.train()
            optimizer.zero_grad()
            F.cross_entropy(model(adv), yb).backward()
            optimizer.step()
    return model.eval()


# --- one case -----------------------------------------------------------------------------------


def run_case(case: Case, args: argparse.Namespace, work: Path) -> Row:
    inputs = case.make(work, args)
    threat = ThreatModel(eps=case.eps, lower=inputs.lower, upper=inputs.upper)
    request = HardeningRequest(
        model=ModelSource(inputs.model, ModelFormat.ONNX),
        train_data=inputs.train,
        eval_data=inputs.test,
        threat=threat,
        training=TrainingConfig(method=case.method),
        evaluation=EvaluationConfig(samples=args.eval_samples or EvaluationConfig().samples),
        seed=args.seed,
    )
    print(f"\n== {case.name}: {case.description}, {case.method.value}, defaults only", flush=True)
    started = time.monotonic()
    result = harden(request, work / "out", Reporter(callback=_printer(case.name)))
    seconds = time.monotonic() - started
    report = result.report
    row = Row(
        case,
        report["original"],
        report["hardened"],
        seconds,
        int(report["training"]["config"]["epochs"]),
        report["training"]["recipe"],
        report["training"]["notes"],
    )
    if case.method is not Method.DISTILLATION and not args.skip_reference:
        row.reference, row.reference_seconds = _reference(request, row.epochs)
    return row


def _reference(request: HardeningRequest, epochs: int) -> tuple[dict[str, Any], float]:
    train_set = datasets.load_npz(request.train_data)
    loaded = load_model(
        request.model, sample_shape=train_set.sample_shape, num_classes=int(train_set.y.max()) + 1
    )
    evaluation = prepare_data(request, loaded, train_set).evaluation
    lower, upper = datasets.bounds_arrays(
        request.threat.lower, request.threat.upper, train_set.sample_shape
    )
    low, high = torch.from_numpy(lower), torch.from_numpy(upper)
    print(f"-- reference loop: PGD-10, Adam 1e-3, batch 64, {epochs} epochs", flush=True)
    started = time.monotonic()
    model = reference_loop(
        loaded.module,
        torch.from_numpy(train_set.x),
        torch.from_numpy(train_set.y),
        request.threat.eps,
        low,
        high,
        epochs,
    )
    target = EvaluationTarget(
        x=torch.from_numpy(evaluation.x),
        y=torch.from_numpy(evaluation.y),
        norm=request.threat.norm.value,
        eps=request.threat.eps,
        box=Box(low, high),
        suite=request.evaluation.suite,
        curve_points=request.evaluation.curve_points,
        batch_size=request.evaluation.batch_size,
        seed=request.seed,
        num_classes=loaded.num_classes,
    )
    scores = evaluate(model, target, Reporter(), "reference")
    seconds = time.monotonic() - started
    return {
        "clean_accuracy": scores.clean.to_dict(),
        "robust_accuracy": scores.robust.to_dict(),
    }, seconds


def _printer(name: str) -> Callable[[ProgressEvent], None]:
    def show(event: ProgressEvent) -> None:
        if event.stage in ("training", "teacher") and event.step == 0 and event.epoch:
            robust = "" if event.robust_accuracy is None else f" robust {event.robust_accuracy:.1%}"
            print(
                f"   {name} {event.stage} epoch {event.epoch}/{event.epochs}: loss"
                f" {event.loss:.3f}, val clean {event.clean_accuracy:.1%}{robust}",
                flush=True,
            )
        elif event.message and event.stage in ("evaluating", "training"):
            print(f"   {name} {event.stage}: {event.message}", flush=True)

    return show


# --- the table ----------------------------------------------------------------------------------


def _pct(accuracy: dict[str, Any] | None) -> str:
    return "-" if accuracy is None else f"{accuracy['value']:.1%}"


def print_table(rows: list[Row]) -> None:
    print(
        "\n| case | method | epochs | original clean / worst | reference clean / worst / s |"
        " defaults clean / worst / s | defaults >= reference |"
    )
    print("|---|---|---|---|---|---|---|")
    for row in rows:
        ref = row.reference
        verdict = "-"
        if ref is not None:
            ahead = row.defaults["robust_accuracy"]["value"] >= ref["robust_accuracy"]["value"]
            verdict = "yes" if ahead else "**no**"
        else:
            drop = row.original["clean_accuracy"]["value"] - row.defaults["clean_accuracy"]["value"]
            verdict = f"clean drop {drop:+.1%} ({'ok' if drop <= 0.01 else '**over 1 point**'})"
        reference = (
            "-"
            if ref is None
            else f"{_pct(ref['clean_accuracy'])} / {_pct(ref['robust_accuracy'])} /"
            f" {row.reference_seconds:.0f}"
        )
        print(
            f"| {row.case.name} | {row.case.method.value} | {row.epochs} |"
            f" {_pct(row.original['clean_accuracy'])} / {_pct(row.original['robust_accuracy'])} |"
            f" {reference} |"
            f" {_pct(row.defaults['clean_accuracy'])} / {_pct(row.defaults['robust_accuracy'])} /"
            f" {row.defaults_seconds:.0f} | {verdict} |"
        )
    for row in rows:
        print(f"\n{row.case.name}: recipe: " + "; ".join(row.recipe))
        for note in row.notes:
            print(f"{row.case.name}: note: {note}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mnist", type=Path, default=DEFAULT_MNIST)
    parser.add_argument("--cases", nargs="*", default=[c.name for c in CASES])
    parser.add_argument(
        "--eval-samples", type=int, help="held-out samples graded (default: the engine's)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--skip-reference", action="store_true", help="time the engine's job alone (no plain loop)"
    )
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    rows = []
    for case in CASES:
        if case.name not in args.cases:
            continue
        with tempfile.TemporaryDirectory() as tmp:
            rows.append(run_case(case, args, Path(tmp)))
    print_table(rows)


if __name__ == "__main__":
    main()
