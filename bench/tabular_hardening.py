"""Issue 14's figure: a tabular model hardened under its feature schema, with the defaults.

The data (``--data``, both shipped as CSV files inside the statsmodels package, in the dev extra,
so nothing is downloaded):

- ``anes96`` (the default): the American National Election Studies 1996 subset
  (``statsmodels.datasets.anes96``; public domain, electionstudies.org), 944 respondents. Label:
  the expected vote (Dole 41.6%, Clinton 58.4%). Chosen because its signal is strong (a logistic
  regression on the nine answers reaches about 90% in 5-fold cross-validation, against 58% for
  the constant answer), so a hardened model that gives up a class shows at once, and because its
  columns have every kind the issue asks for:

  - immutable: ``age`` (an integer, 19-91) and ``popul`` (the census place's population in
    thousands, continuous);
  - integer: party identification ``PID`` (0-6) and the left-right placements of the respondent,
    Clinton and Dole (``selfLR``, ``ClinLR``, ``DoleLR``, 1-7), budget one step each; ``TVnews``
    (days a week, 0-7) and ``income`` (24 brackets), budget two steps;
  - categorical: education (``educ``, 7 levels) as a one-hot group, switchable.

  The threat: a respondent (or whoever fills the form) may shade each answer by a step but not
  change age or place.
- ``fair``: the affairs survey (Fair 1978, Redbook 1974; 6,366 married women,
  ``statsmodels.datasets.fair``). Label: any affair (32% of rows). Kept because it documents a
  failure: its signal is weak (a model barely beats the constant answer), and hardening can
  "gain" robustness by answering the majority class; ``--balanced`` and ``--immutable-rating``
  are its variants.

The plain reference is written here: an MLP (two hidden layers of 64, standardising its raw input
inside the graph) trained with Adam on cross-entropy, exported with torch.onnx.export.
``pipeline.harden`` gets that model, the training split, the test split as evaluation data and
the schema, and nothing else: method, epochs, rates and the number of scored samples are the
engine's defaults. The script prints the report's clean and constrained worst-case accuracy of
both models, the unconstrained worst case (the schema's constraints dropped; it must not be
above the constrained one), and then scores both models again with the engine's constrained
suite to check every counted adversarial example with a validator written here, from the
schema's JSON alone (the share that passes must be 100%).

Where every mutable feature is an integer or a category (ANES 1996; not fair, whose ``children``
is continuous), the set of points an attacker can reach is finite (at most 14,175 per
respondent). The engine's suite then ends by trying every valid point of the samples its
attacks left robust (``workers/engine/tabular/exhaustive.py``), so its worst case is exact; the
script prints what that step settled and what it found that the attacks missed, and keeps a
brute force of its own (:func:`neighbourhood`, written from the schema's JSON alone) as an
independent check: it prints whether the engine's figure equals the brute force's, and the count
of samples the engine called robust that are not (0 when they agree).

A robust accuracy means little if the model has stopped answering one class (a constant answer
cannot be moved by any attack). So the script also prints the constant answer's accuracy on the
same samples, each model's clean and constrained robust accuracy per class and their balanced
means (balanced accuracy), and flags a model as COLLAPSED when it does not beat the constant
answer or has lost more than half of the plain model's balanced margin over 50%. Issue 14's
target counts as met only when the hardened model is not collapsed.

    python bench/tabular_hardening.py
    python bench/tabular_hardening.py --json /tmp/tabular.json
    python bench/tabular_hardening.py --method trades
    python bench/tabular_hardening.py --data fair    # or with --balanced, --immutable-rating
"""

from __future__ import annotations

import argparse
import itertools
import json
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from workers.engine.evaluation.suite import EvaluationTarget
from workers.engine.models.loading import load_model
from workers.engine.pipeline import harden
from workers.engine.progress import ProgressEvent, Reporter
from workers.engine.spec import (
    IMAGE_EVAL_SAMPLES,
    EvaluationSuite,
    HardeningRequest,
    Method,
    ModelFormat,
    ModelSource,
    ThreatModel,
    TrainingConfig,
)
from workers.engine.tabular.evaluation import evaluate_tabular
from workers.engine.tabular.threat import load_threat

EDUCATION_LEVELS = 7
ANES96_SCHEMA: dict[str, Any] = {
    "features": [
        {"name": "popul", "lower": 0, "upper": 7300, "mutable": False},
        {"name": "TVnews", "kind": "integer", "lower": 0, "upper": 7, "budget": {"absolute": 2}},
        {"name": "selfLR", "kind": "integer", "lower": 1, "upper": 7, "budget": {"absolute": 1}},
        {"name": "ClinLR", "kind": "integer", "lower": 1, "upper": 7, "budget": {"absolute": 1}},
        {"name": "DoleLR", "kind": "integer", "lower": 1, "upper": 7, "budget": {"absolute": 1}},
        {"name": "PID", "kind": "integer", "lower": 0, "upper": 6, "budget": {"absolute": 1}},
        {"name": "age", "kind": "integer", "lower": 18, "upper": 100, "mutable": False},
        {
            "name": "educ",
            "kind": "categorical",
            "columns": [f"educ_{i}" for i in range(1, EDUCATION_LEVELS + 1)],
        },
        {"name": "income", "kind": "integer", "lower": 1, "upper": 24, "budget": {"absolute": 2}},
    ]
}
OCCUPATIONS = 6
FAIR_SCHEMA: dict[str, Any] = {
    "features": [
        {
            "name": "rate_marriage",
            "kind": "integer",
            "lower": 1,
            "upper": 5,
            "budget": {"absolute": 1},
        },
        {"name": "age", "lower": 17.5, "upper": 42, "mutable": False},
        {"name": "yrs_married", "lower": 0.5, "upper": 23, "mutable": False},
        {"name": "children", "lower": 0, "upper": 5.5, "budget": {"absolute": 1}},
        {"name": "religious", "kind": "integer", "lower": 1, "upper": 4, "budget": {"absolute": 1}},
        {"name": "educ", "kind": "integer", "lower": 9, "upper": 20, "budget": {"absolute": 2}},
        {
            "name": "occupation",
            "kind": "categorical",
            "columns": [f"occupation_{i}" for i in range(1, OCCUPATIONS + 1)],
        },
        {
            "name": "occupation_husb",
            "kind": "categorical",
            "mutable": False,
            "columns": [f"occupation_husb_{i}" for i in range(1, OCCUPATIONS + 1)],
        },
    ]
}


@dataclass(frozen=True)
class DataSet:
    load: Callable[[], tuple[np.ndarray, np.ndarray]]
    schema: dict[str, Any]
    source: str
    classes: tuple[str, str]
    """What labels 0 and 1 mean."""


TEST_SHARE = 0.3
PLAIN_EPOCHS = 10
PLAIN_LR = 1e-3


def load_anes96() -> tuple[np.ndarray, np.ndarray]:
    """The 1996 election survey as rows in :data:`ANES96_SCHEMA`'s column order, and the
    expected vote (1 = Dole)."""
    from statsmodels.datasets import anes96

    data = anes96.load_pandas().data
    numeric = data[["popul", "TVnews", "selfLR", "ClinLR", "DoleLR", "PID", "age"]].to_numpy()
    education = np.eye(EDUCATION_LEVELS)[data["educ"].astype(int) - 1]
    x = np.column_stack([numeric, education, data["income"].to_numpy()]).astype(np.float32)
    return x, data["vote"].to_numpy().astype(np.int64)


def load_fair() -> tuple[np.ndarray, np.ndarray]:
    """The survey as rows in the schema's column order, and the labels."""
    from statsmodels.datasets import fair

    data = fair.load_pandas().data
    numeric = data[["rate_marriage", "age", "yrs_married", "children", "religious", "educ"]]
    occupation = np.eye(OCCUPATIONS)[data["occupation"].astype(int) - 1]
    husband = np.eye(OCCUPATIONS)[data["occupation_husb"].astype(int) - 1]
    x = np.column_stack([numeric.to_numpy(), occupation, husband]).astype(np.float32)
    return x, (data["affairs"].to_numpy() > 0).astype(np.int64)


DATA_SETS = {
    "anes96": DataSet(
        load_anes96, ANES96_SCHEMA, "ANES 1996 (statsmodels.datasets.anes96)", ("Clinton", "Dole")
    ),
    "fair": DataSet(
        load_fair, FAIR_SCHEMA, "fair (statsmodels.datasets.fair)", ("no affair", "affair")
    ),
}


def split(
    x: np.ndarray, y: np.ndarray, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A stratified train/test split, fixed by ``seed``."""
    rng = np.random.default_rng(seed)
    test = np.zeros(len(y), dtype=bool)
    for label in (0, 1):
        rows = np.flatnonzero(y == label)
        test[rng.choice(rows, round(TEST_SHARE * len(rows)), replace=False)] = True
    return x[~test], y[~test], x[test], y[test]


def balance(x: np.ndarray, y: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """As many rows of the larger class as of the smaller, drawn by ``seed``: a constant answer
    then scores 50%, so a model that hardens by giving up the minority class shows."""
    rng = np.random.default_rng(seed + 1)
    minority = int(y.mean() > 0.5)
    small, large = np.flatnonzero(y == minority), np.flatnonzero(y != minority)
    keep = np.sort(np.concatenate([small, rng.choice(large, len(small), replace=False)]))
    return x[keep], y[keep]


class PlainMlp(nn.Module):
    """What a user would send: standardisation inside the graph, so the model reads raw units
    and integer constraints are stated in them."""

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, mean: np.ndarray, std: np.ndarray) -> None:
        super().__init__()
        self.register_buffer("mean", torch.from_numpy(mean))
        self.register_buffer("std", torch.from_numpy(std))
        self.net = nn.Sequential(
            nn.Linear(len(mean), 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 2)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.net((x - self.mean) / self.std)
        return out


def train_plain(x: np.ndarray, y: np.ndarray, seed: int) -> PlainMlp:
    torch.manual_seed(seed)
    model = PlainMlp(x.mean(0), (x.std(0) + 1e-6).astype(np.float32))
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    optimizer = torch.optim.Adam(model.parameters(), lr=PLAIN_LR)
    generator = torch.Generator().manual_seed(seed)
    for _ in range(PLAIN_EPOCHS):
        for index in torch.randperm(len(yt), generator=generator).split(64):
            optimizer.zero_grad()
            F.cross_entropy(model(xt[index]), yt[index]).backward()
            optimizer.step()
    return model.eval()


def valid_rows(schema: dict[str, Any], point: np.ndarray, clean: np.ndarray) -> np.ndarray:
    """Per row, whether ``point`` is a valid move from ``clean`` under ``schema``, from the
    schema's JSON alone: ranges, budgets, immutable features, integers, one-hot groups."""
    ok = np.ones(len(point), dtype=bool)
    column = 0
    for feature in schema["features"]:
        kind = feature.get("kind", "continuous")
        width = len(feature["columns"]) if kind == "categorical" else 1
        block, before = point[:, column : column + width], clean[:, column : column + width]
        column += width
        if not feature.get("mutable", True):
            ok &= (block == before).all(axis=1)
        elif kind == "categorical":
            ok &= np.isin(block, (0.0, 1.0)).all(axis=1) & (block.sum(axis=1) == 1)
        else:
            value = block[:, 0]
            ok &= (value >= feature["lower"]) & (value <= feature["upper"])
            ok &= np.abs(value - before[:, 0]) <= feature["budget"]["absolute"] + 1e-6
            if kind == "integer":
                ok &= value == np.round(value)
    return ok


def collapsed(model: dict[str, Any], plain: dict[str, Any]) -> bool:
    """Whether a model has given up on a class: its clean accuracy does not beat the constant
    answer's on the same samples, or its clean balanced accuracy keeps less than half of the
    plain model's margin over 50% (the engine's own collapse rule, with the balanced figure)."""
    if model["clean"] <= model["majority_share"]:
        return True
    floor = 0.5 + 0.5 * (plain["clean_balanced"] - 0.5)
    return bool(model["clean_balanced"] < floor)


def neighbourhood(schema: dict[str, Any], clean: np.ndarray) -> np.ndarray | None:
    """Every valid point the attacker can reach from the row ``clean`` under ``schema`` (the
    row itself included), or None when a mutable feature is continuous and the set is not
    finite. Written from the schema's JSON alone, like :func:`valid_rows`."""
    options: list[list[np.ndarray]] = []
    column = 0
    for feature in schema["features"]:
        kind = feature.get("kind", "continuous")
        width = len(feature["columns"]) if kind == "categorical" else 1
        before = clean[column : column + width]
        column += width
        if not feature.get("mutable", True):
            options.append([before])
        elif kind == "categorical":
            options.append(list(np.eye(width, dtype=clean.dtype)))
        elif kind == "integer":
            budget = feature["budget"]["absolute"]
            low = max(feature["lower"], before[0] - budget)
            high = min(feature["upper"], before[0] + budget)
            values = np.arange(np.ceil(low), np.floor(high) + 1, dtype=clean.dtype)
            options.append([value.reshape(1) for value in values])
        else:
            return None
    return np.array([np.concatenate(parts) for parts in itertools.product(*options)])


def exhaustive_robust(
    model: nn.Module, schema: dict[str, Any], x: np.ndarray, y: np.ndarray
) -> np.ndarray | None:
    """Per row, whether the model classifies every point of its :func:`neighbourhood` right:
    the exact constrained robust accuracy, which no attack can beat, where the attacker's set
    is finite (None where it is not)."""
    robust = np.zeros(len(y), dtype=bool)
    for row, (clean, label) in enumerate(zip(x, y, strict=True)):
        points = neighbourhood(schema, clean)
        if points is None:
            return None
        with torch.no_grad():
            robust[row] = bool((model(torch.from_numpy(points)).argmax(1) == label).all())
    return robust


def main() -> None:
    args = _parse()
    torch.set_num_threads(args.threads)
    data_set = DATA_SETS[args.data]
    schema = json.loads(json.dumps(data_set.schema))
    if args.immutable_rating:
        if args.data != "fair":
            raise SystemExit("--immutable-rating is a variant of --data fair")
        schema["features"][0] = {**schema["features"][0], "mutable": False}
        del schema["features"][0]["budget"]
    x, y = data_set.load()
    if args.balanced:
        x, y = balance(x, y, args.seed)
    train_x, train_y, test_x, test_y = split(x, y, args.seed)
    print(
        f"{data_set.source}: {len(y)} rows, {x.shape[1]} columns,"
        f" {y.mean():.1%} {data_set.classes[1]!r}; train {len(train_y)}, test {len(test_y)}"
    )
    started = time.monotonic()
    plain = train_plain(train_x, train_y, args.seed)
    with tempfile.TemporaryDirectory(prefix="tabular-") as folder:
        work = Path(folder)
        model_path = work / "plain.onnx"
        torch.onnx.export(
            plain,
            (torch.from_numpy(train_x[:2]),),
            str(model_path),
            dynamo=False,
            opset_version=17,
            input_names=["features"],
            output_names=["logits"],
            dynamic_axes={"features": {0: "batch"}, "logits": {0: "batch"}},
        )
        np.savez(work / "train.npz", x=train_x, y=train_y)
        np.savez(work / "test.npz", x=test_x, y=test_y)
        (work / "schema.json").write_text(json.dumps(schema))
        request = HardeningRequest(
            model=ModelSource(model_path, ModelFormat.ONNX),
            train_data=work / "train.npz",
            eval_data=work / "test.npz",
            feature_schema=work / "schema.json",
            training=TrainingConfig(method=Method(args.method)),
            seed=args.seed,
        )
        result = harden(request, work / "out", Reporter(callback=_progress))
        report = result.report
        seconds = time.monotonic() - started
        validation = _validate(request, schema, result.model_path, model_path, report)
    figures = _figures(args, data_set, report, validation, seconds)
    _print(figures)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")


def _validate(
    request: HardeningRequest,
    schema: dict[str, Any],
    hardened_path: Path,
    plain_path: Path,
    report: dict[str, Any],
) -> dict[str, Any]:
    """Score both models again with the engine's constrained suite on the report's samples and
    check every counted adversarial example with :func:`valid_rows`."""
    train = np.load(request.train_data)
    test = np.load(request.eval_data) if request.eval_data else train
    samples = report["original"]["clean_accuracy"]["total"]
    order = np.random.default_rng(request.seed).permutation(len(test["y"]))
    rows = np.sort(order[: min(samples, IMAGE_EVAL_SAMPLES)])
    x, y = test["x"][rows], test["y"][rows]
    assert request.feature_schema is not None
    threat = load_threat(request.feature_schema, ThreatModel().eps, train["x"], test["x"])
    target = EvaluationTarget(
        x=torch.from_numpy(x),
        y=torch.from_numpy(y),
        norm="linf",
        eps=ThreatModel().eps,
        box=threat.box,
        suite=EvaluationSuite.STANDARD,
        curve_points=2,
        batch_size=500,
        seed=request.seed,
        num_classes=2,
    )
    checked: dict[str, Any] = {}
    for label, path in (("original", plain_path), ("hardened", hardened_path)):
        model = load_model(ModelSource(path, ModelFormat.ONNX)).module.eval()
        scores = evaluate_tabular(model, target, threat, Reporter(), label)
        broken = scores.broken.numpy()
        examples = scores.adversarial.numpy()[broken]
        with torch.no_grad():
            still_wrong = model(torch.from_numpy(examples)).argmax(1).numpy() != y[broken]
            predicted = model(torch.from_numpy(x)).argmax(1).numpy()
        valid = valid_rows(schema, examples, x[broken])
        exact = exhaustive_robust(model, schema, x, y)
        right = predicted == y
        robust = right & ~broken
        clean_by_class = [float(right[y == c].mean()) for c in (0, 1)]
        robust_by_class = [float(robust[y == c].mean()) for c in (0, 1)]
        checked[label] = {
            "samples": len(y),
            "clean": float(right.mean()),
            "predicted_positive": float((predicted == 1).mean()),
            "clean_by_class": clean_by_class,
            "robust_by_class": robust_by_class,
            "clean_balanced": float(np.mean(clean_by_class)),
            "robust_balanced": float(np.mean(robust_by_class)),
            "majority_share": float(max(y.mean(), 1 - y.mean())),
            "counted": int(broken.sum()),
            "valid": int(valid.sum()),
            "misclassified": int(still_wrong.sum()),
            "exhaustive_robust": None if exact is None else float(exact.mean()),
            "exhaustive_correct": None if exact is None else int(exact.sum()),
            "engine_robust_but_not_exhaustively": None
            if exact is None
            else int((robust & ~exact).sum()),
            "robust_matches_report": scores.scores.robust.correct
            == report[label]["robust_accuracy"]["correct"],
            "engine_exhaustive": report["tabular"][label].get("exhaustive"),
            "engine_not_robust_but_exhaustively": None
            if exact is None
            else int((~robust & exact).sum()),
        }
    for label in ("original", "hardened"):
        checked[label]["collapsed"] = collapsed(checked[label], checked["original"])
    return checked


def _figures(
    args: argparse.Namespace,
    data_set: DataSet,
    report: dict[str, Any],
    validation: dict[str, Any],
    seconds: float,
) -> dict[str, Any]:
    figures: dict[str, Any] = {
        "data": args.data,
        "variant": {"balanced": args.balanced, "immutable_rating": args.immutable_rating},
        "classes": list(data_set.classes),
        "seconds": round(seconds, 1),
        "training": report["training"]["config"],
        "recipe": report["training"]["recipe"],
        "selected_epoch": report["training"]["selected_epoch"],
        "notes": report["training"]["notes"],
    }
    for label in ("original", "hardened"):
        scores = report[label]
        figures[label] = {
            "clean": scores["clean_accuracy"],
            "constrained_worst_case": scores["robust_accuracy"],
            "per_attack": {a["name"]: a["robust_accuracy"]["value"] for a in scores["attacks"]},
            "unconstrained_worst_case": report["tabular"][label]["unconstrained"][
                "robust_accuracy"
            ],
            "audit": report["tabular"][label]["attacks"],
            "validation": validation[label],
        }
    before, after = figures["original"], figures["hardened"]
    gain = after["constrained_worst_case"]["value"] - before["constrained_worst_case"]["value"]
    drop = before["clean"]["value"] - after["clean"]["value"]
    figures["target"] = {
        "constrained_gain_points": round(gain * 100, 1),
        "clean_change_points": round(-drop * 100, 1),
        "hardened_collapsed": after["validation"]["collapsed"],
        "met": gain >= 0.2 and drop <= 0.02 and not after["validation"]["collapsed"],
    }
    return figures


def _print(figures: dict[str, Any]) -> None:
    def pct(accuracy: dict[str, Any]) -> str:
        return f"{accuracy['value']:.1%} [{accuracy['low']:.1%}, {accuracy['high']:.1%}]"

    print(f"\n{'':10} {'clean':>22} {'constrained worst':>22} {'UNCONSTRAINED (sanity)':>24}")
    for label in ("original", "hardened"):
        f = figures[label]
        print(
            f"{label:10} {pct(f['clean']):>22} {pct(f['constrained_worst_case']):>22}"
            f" {pct(f['unconstrained_worst_case']):>24}"
        )
    negative, positive = figures["classes"]
    majority = figures["original"]["validation"]["majority_share"]
    print(
        f"{'constant':10} {majority:>22.1%} {majority:>22.1%}"
        f"   (the majority answer on the same samples: nothing can move it)"
    )
    print(
        f"\n{'balanced':10} {'clean':>10} {'constrained':>12}   per class ({negative} / {positive})"
    )
    for label in ("original", "hardened"):
        check = figures[label]["validation"]
        clean, robust = check["clean_by_class"], check["robust_by_class"]
        print(
            f"{label:10} {check['clean_balanced']:>10.1%} {check['robust_balanced']:>12.1%}"
            f"   clean {clean[0]:.1%} / {clean[1]:.1%}, constrained {robust[0]:.1%} /"
            f" {robust[1]:.1%}; predicts {positive!r} for {check['predicted_positive']:.1%}"
            + ("   COLLAPSED" if check["collapsed"] else "")
        )
    target = figures["target"]
    print(
        f"\nconstrained worst case: {target['constrained_gain_points']:+.1f} points (target >= +20)"
    )
    print(
        f"clean accuracy: {target['clean_change_points']:+.1f} points"
        " (target: at most 2 points lost)"
    )
    print(
        "hardened model collapsed (no better than the constant answer, or half its balanced"
        f" margin lost): {'YES' if target['hardened_collapsed'] else 'no'}"
    )
    print(f"issue 14's target met: {'yes' if target['met'] else 'NO'}")
    for label in ("original", "hardened"):
        f = figures[label]
        sane = f["unconstrained_worst_case"]["correct"] <= f["constrained_worst_case"]["correct"]
        check = f["validation"]
        share = check["valid"] / check["counted"] if check["counted"] else 1.0
        print(
            f"{label}: unconstrained <= constrained: {'yes' if sane else 'NO'};"
            f" per attack {f['per_attack']};"
            f" counted adversarial examples valid by the bench's validator: {check['valid']}/"
            f"{check['counted']} ({share:.0%}), misclassified {check['misclassified']}/"
            f"{check['counted']}, same robust count as the report:"
            f" {check['robust_matches_report']}"
        )
    print(
        f"\n{figures['seconds']:.0f} s; selected epoch {figures['selected_epoch']};"
        f" training ran with {figures['training']}"
    )
    for label in ("original", "hardened"):
        check = figures[label]["validation"]
        if check["exhaustive_robust"] is None:
            print(f"{label}: exact constrained robust accuracy: n/a (a continuous feature moves)")
            continue
        engine = figures[label]["constrained_worst_case"]
        exact = check["exhaustive_correct"]
        agree = (
            exact == engine["correct"]
            and check["engine_robust_but_not_exhaustively"] == 0
            and check["engine_not_robust_but_exhaustively"] == 0
        )
        print(
            f"{label}: exact constrained robust accuracy, every reachable point tried by the"
            f" bench: {check['exhaustive_robust']:.1%} ({exact}/{check['samples']}); engine's"
            f" worst case {engine['value']:.1%} ({engine['correct']}/{engine['total']});"
            f" engine = exact: {'yes' if agree else 'NO'} (samples the engine called robust"
            f" that are not: {check['engine_robust_but_not_exhaustively']}, broken that are"
            f" not: {check['engine_not_robust_but_exhaustively']})"
        )
    for label in ("original", "hardened"):
        block = figures[label]["validation"]["engine_exhaustive"]
        if block is None:
            continue
        print(
            f"{label}: engine's exhaustive step: {block['summary']}; missed by the attacks:"
            f" {block['missed_by_attacks']}; headline exact: {block['headline_exact']}"
        )
    for note in figures["notes"]:
        print(f"note: {note}")


def _progress(event: ProgressEvent) -> None:
    if event.stage == "training" and event.epoch and event.clean_accuracy is not None:
        print(
            f"  epoch {event.epoch}/{event.epochs}: clean {event.clean_accuracy:.3f},"
            f" robust {event.robust_accuracy}",
            flush=True,
        )


def _parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", choices=sorted(DATA_SETS), default="anes96")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--method", default=TrainingConfig().method.value, help="default: the engine's (pgd)"
    )
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--immutable-rating",
        action="store_true",
        help="with --data fair: the attacker cannot change rate_marriage (its strongest predictor)",
    )
    parser.add_argument(
        "--balanced",
        action="store_true",
        help="drop rows of the larger class at random until both classes are as many",
    )
    parser.add_argument("--json", type=Path)
    return parser.parse_args()


if __name__ == "__main__":
    main()
