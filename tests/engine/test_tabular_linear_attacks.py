"""The attacks, the suite and the training perturbation under linear constraints between
features: nothing counted or trained on breaks one, by a validator written from the schema's
JSON alone (tests/engine/linear_support.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from tests.engine.linear_support import EPS, SCHEMA, payment_rows, valid_payment_rows
from tests.engine.tabular_support import train_mlp
from workers.engine.attacks.region import FeatureRegion, perturb_in_region
from workers.engine.evaluation.suite import EvaluationTarget
from workers.engine.geometry import Box
from workers.engine.progress import Reporter
from workers.engine.spec import EvaluationSuite
from workers.engine.tabular import attacks
from workers.engine.tabular.evaluation import TabularScores, evaluate_tabular, tabular_section
from workers.engine.tabular.schema import parse_schema
from workers.engine.tabular.threat import TabularThreat, build_threat
from workers.engine.training.steps import AdversarialSetting, PgdStep, TradesStep

pytestmark = pytest.mark.slow

Case = tuple[torch.nn.Module, np.ndarray, np.ndarray, np.ndarray, TabularThreat]


@pytest.fixture(scope="module")
def case() -> Case:
    torch.set_num_threads(1)
    x, y = payment_rows(500, seed=0)
    model = train_mlp(x, y, epochs=20)
    threat = build_threat(parse_schema(SCHEMA), EPS, x)
    test_x, test_y = payment_rows(150, seed=1)
    return model, x, test_x, test_y, threat


@pytest.fixture(scope="module")
def scored(case: Case) -> TabularScores:
    model, _, x, y, threat = case
    target = EvaluationTarget(
        x=torch.from_numpy(x),
        y=torch.from_numpy(y),
        norm="linf",
        eps=EPS,
        box=threat.box,
        suite=EvaluationSuite.FAST,
        curve_points=3,
        batch_size=500,
        seed=0,
        num_classes=2,
    )
    return evaluate_tabular(model, target, threat, Reporter(), "plain")


def test_every_counted_example_satisfies_the_linear_constraints(
    case: Case, scored: TabularScores
) -> None:
    _, train_x, x, _, _ = case
    broken = scored.broken.numpy()

    assert broken.sum() >= 10, "the plain model should be broken often enough to check"
    points = scored.adversarial.numpy()[broken]
    assert valid_payment_rows(SCHEMA, points, x[broken], EPS, train_x).all()


def test_counted_examples_move_the_parts_and_recompute_the_total(
    case: Case, scored: TabularScores
) -> None:
    _, _, x, _, _ = case
    broken = scored.broken.numpy()
    points = scored.adversarial.numpy()[broken]

    moved = (points[:, 0] != x[broken][:, 0]) | (points[:, 1] != x[broken][:, 1])
    assert moved.mean() > 0.5
    assert np.allclose(points[:, 2], points[:, 0] + points[:, 1], rtol=1e-5)


@pytest.mark.parametrize("name", ["capgd", "capgd_targeted", "evolution_search"])
def test_each_attack_repaired_breaks_no_constraint(case: Case, name: str) -> None:
    model, train_x, x, y, threat = case
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    run = getattr(attacks, name)
    extra = {"schema": threat.schema, "queries": 200} if name == "evolution_search" else {}

    found = run(model, xt, yt, constraints=threat.constraints, **extra)
    repaired = threat.constraints.repair(found, xt)

    assert valid_payment_rows(SCHEMA, repaired.numpy(), x, EPS, train_x).all()


def test_capgd_iterates_keep_the_equalities_before_repair(case: Case) -> None:
    model, _, x, y, threat = case

    found = attacks.capgd(
        model, torch.from_numpy(x), torch.from_numpy(y), constraints=threat.constraints, steps=20
    ).double()

    assert torch.allclose(found[:, 2], found[:, 0] + found[:, 1], rtol=1e-5)
    assert torch.allclose(found[:, 6], found[:, 4] + found[:, 5], rtol=1e-5)


def test_the_search_returns_valid_points_without_any_repair(case: Case) -> None:
    model, train_x, x, y, threat = case

    found = attacks.evolution_search(
        model,
        torch.from_numpy(x),
        torch.from_numpy(y),
        schema=threat.schema,
        constraints=threat.constraints,
        queries=200,
    )

    assert valid_payment_rows(SCHEMA, found.numpy(), x, EPS, train_x).all()


def test_the_report_lists_the_constraints_and_that_the_search_respected_them(
    case: Case, scored: TabularScores
) -> None:
    threat = case[4]

    section = tabular_section(threat, scored, scored)

    formulas = [c["formula"] for c in section["schema"]["constraints"]]
    assert formulas[0] == "total - card - cash == 0"
    assert section["schema"]["features"][2]["budget"].startswith(
        "recomputed by linear constraint 1"
    )
    by_name = {a["name"]: a for a in section["original"]["attacks"]}
    assert "linear" in by_name["evolution"]["respected"]
    assert by_name["evolution"]["broken_before_repair"]["linear"] == 0


def test_the_unconstrained_sanity_line_is_at_most_the_constrained_worst_case(
    scored: TabularScores,
) -> None:
    assert scored.unconstrained.robust.correct <= scored.scores.robust.correct


def test_the_training_attack_returns_points_inside_the_constraints(case: Case) -> None:
    model, train_x, _, _, threat = case
    x, y = torch.from_numpy(train_x[:200]), torch.from_numpy(payment_rows(500)[1][:200])

    found = perturb_in_region(
        model,
        x,
        lambda logits: F.cross_entropy(logits, y),
        region=FeatureRegion(threat.constraints, EPS),
        eps=EPS,
        step=0.25,
        steps=10,
        generator=torch.Generator().manual_seed(0),
    )

    assert valid_payment_rows(SCHEMA, found.numpy(), train_x[:200], EPS, train_x).all()
    assert (found != x).any(dim=1).float().mean() > 0.5


def test_pgd_and_trades_steps_train_on_inputs_that_keep_the_constraints(case: Case) -> None:
    model, train_x, _, _, threat = case
    x, y = torch.from_numpy(train_x[:64]), torch.from_numpy(payment_rows(500)[1][:64])
    setting = AdversarialSetting(
        "linf",
        Box(torch.tensor(-math.inf), torch.tensor(math.inf)),
        torch.Generator().manual_seed(0),
        region=FeatureRegion(threat.constraints, EPS),
    )
    seen: list[torch.Tensor] = []
    handle = model.register_forward_pre_hook(lambda _, args: seen.append(args[0].detach()))
    try:
        for step in (PgdStep(setting, steps=3), TradesStep(setting, steps=3, beta=6.0)):
            seen.clear()
            step(model, x, y, EPS / 2)
            trained_on = seen[-1].numpy()
            assert valid_payment_rows(SCHEMA, trained_on, train_x[:64], EPS, train_x).all()
    finally:
        handle.remove()
