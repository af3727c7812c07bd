"""Scoring a tabular model under its feature schema: constrained attacks, repair, check, count.

Every attack (:mod:`workers.engine.tabular.attacks`) runs on every sample classified correctly
on the clean input, and returns one candidate per sample. The suite judges it with code of its
own: it checks the raw candidate against the schema, constraint by constraint
(:func:`violations_by_kind`: what the attack respected), repairs it onto the schema, checks the
repaired point again (:func:`violations`, written apart from the repair) and classifies it. A
candidate counts as adversarial only when its repair is misclassified and breaks nothing; a
candidate that fooled the model only before repair is dropped, and the report says how many
were. The headline is the per-sample worst case over the attacks.

The suite's last member is not an attack but an enumeration
(:mod:`workers.engine.tabular.exhaustive`): where the attacker's set is finite (no continuous
feature moves) it tries every valid point of each sample the attacks left robust, within a
point budget, so the headline is exact for every sample it covers. A sample it breaks is one the
attacks missed (``missed_by_attacks``), which the report flags beside the masking checks.

Beside it, the sanity line: the image suite (:func:`workers.engine.evaluation.suite.evaluate`,
AutoAttack's cascade) on the same model with the constraints dropped, an L-inf ball of each
column's budget inside the schema's box. It searches a superset, so its worst case should not
be above the constrained one; its gradient-masking checks are the report's, beside one of the
constrained suite's own (the black-box search beating both gradient attacks).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import Tensor, nn

from workers.engine.evaluation.masking import MaskingCheck
from workers.engine.evaluation.stats import Accuracy
from workers.engine.evaluation.suite import (
    AttackScore,
    CurvePoint,
    EvaluationTarget,
    ModelScores,
    evaluate,
)
from workers.engine.geometry import Box
from workers.engine.progress import ProgressEvent, Reporter
from workers.engine.spec import EvaluationSuite
from workers.engine.tabular import attacks
from workers.engine.tabular.constraints import (
    CONSTRAINT_KINDS,
    FeatureConstraints,
    constraint_kinds,
    violations,
    violations_by_kind,
)
from workers.engine.tabular.exhaustive import ExhaustiveSearch, exhaustive_search
from workers.engine.tabular.threat import ScaledInput, TabularThreat

AttackRun = Callable[[nn.Module, Tensor, Tensor, FeatureConstraints, torch.Generator], Tensor]

HEADLINE = (
    "per-sample worst case over the constrained attacks: a sample counts as robust only if no"
    " attack produced a schema-valid input (repaired and checked) that the model misclassifies"
    " and, where the attacker's set is finite, no valid point of it tried by the exhaustive step"
    " is misclassified (exact for the samples it settles)"
)


@dataclass(frozen=True)
class TabularAttack:
    name: str
    run: AttackRun
    description: str
    white_box: bool
    respects: str
    """How the attack keeps to the schema, in words; the report also counts what it broke."""
    on_survivors: bool = False
    """Run only on the samples every member before it left robust (the enumeration), not on
    every clean-correct one; its per-attack figure is then the worst case after it."""


def tabular_attacks(
    suite: EvaluationSuite, threat: TabularThreat, check: Callable[[], None] = lambda: None
) -> list[TabularAttack]:
    """The suite; ``check`` raises to stop it (a cancelled job) between the enumeration's
    chunks, which can run long on one batch."""
    full = suite is EvaluationSuite.STANDARD
    steps, targets, queries = (100, 9, 1000) if full else (20, 3, 200)
    relaxed = (
        "ranges, budgets and immutable features in every iterate (per-sample intervals);"
        " integers, binaries and one-hot groups relaxed, each iterate repaired and judged"
        + (
            "; linear constraints kept after every step (equalities' dependents recomputed)"
            if threat.schema.constraints
            else ""
        )
    )
    return [
        TabularAttack(
            "capgd-ce",
            lambda m, x, y, c, g: attacks.capgd(m, x, y, constraints=c, steps=steps, generator=g),
            "constrained APGD on cross-entropy",
            True,
            relaxed,
        ),
        TabularAttack(
            "capgd-t",
            lambda m, x, y, c, g: attacks.capgd_targeted(
                m, x, y, constraints=c, n_target_classes=targets, steps=steps, generator=g
            ),
            "constrained APGD on the targeted DLR loss",
            True,
            relaxed,
        ),
        TabularAttack(
            "evolution",
            lambda m, x, y, c, g: attacks.evolution_search(
                m, x, y, schema=threat.schema, constraints=c, queries=queries, generator=g
            ),
            f"black-box evolution search over valid points ({queries} queries)",
            False,
            "every constraint by construction: mutations are integer steps, flips and category"
            " switches inside each feature's interval"
            + (", repaired onto the linear constraints" if threat.schema.constraints else ""),
        ),
        TabularAttack(
            "exhaustive",
            exhaustive_search(suite, threat.schema, threat.constraints, check),
            "every valid point of the attacker's finite set, tried on the samples the attacks"
            " left robust (its figure is the worst case after it)",
            False,
            "every constraint by construction: only valid points are tried (checked as every"
            " candidate is)"
            + (
                "; equalities' dependents solved, inequalities checked"
                if threat.schema.constraints
                else ""
            ),
            on_survivors=True,
        ),
    ]


def _curve_attacks(suite: EvaluationSuite) -> list[TabularAttack]:
    steps = 20 if suite is EvaluationSuite.STANDARD else 10
    return [
        TabularAttack(
            "capgd-ce",
            lambda m, x, y, c, g: attacks.capgd(m, x, y, constraints=c, steps=steps, generator=g),
            "",
            True,
            "",
        ),
        TabularAttack(
            "capgd-t",
            lambda m, x, y, c, g: attacks.capgd_targeted(
                m, x, y, constraints=c, n_target_classes=3, steps=steps, generator=g
            ),
            "",
            True,
            "",
        ),
    ]


@dataclass
class AttackAudit:
    """What the suite found when it judged one attack's candidates."""

    name: str
    respects: str
    candidates: int = 0
    invalid_before_repair: int = 0
    broken: dict[str, int] | None = None
    """Per kind of constraint, how many raw candidates broke it."""
    fooled_before_repair: int = 0
    dropped_after_repair: int = 0
    """Candidates that fooled the model as returned but not once repaired (or still invalid)."""
    counted: int = 0

    def to_dict(self) -> dict[str, Any]:
        broken = self.broken or dict.fromkeys(CONSTRAINT_KINDS, 0)
        return {
            "name": self.name,
            "respects": self.respects,
            "candidates": self.candidates,
            "invalid_before_repair": self.invalid_before_repair,
            "broken_before_repair": broken,
            "respected": [kind for kind, count in broken.items() if count == 0],
            "fooled_before_repair": self.fooled_before_repair,
            "dropped_after_repair": self.dropped_after_repair,
            "counted": self.counted,
        }


@dataclass(frozen=True)
class TabularScores:
    scores: ModelScores
    """Constrained: the headline, per attack, the curve over budget multiples, masking."""
    audits: list[AttackAudit]
    unconstrained: ModelScores
    exhaustive: dict[str, Any]
    """The enumeration's counts (:class:`ExhaustiveTally`), ``missed_by_attacks`` and whether
    the headline is exact."""
    adversarial: Tensor
    """Per sample, the first counted adversarial example (repaired, valid), else the clean x."""
    broken: Tensor
    """Per sample, whether a counted adversarial example was found."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "attacks": [audit.to_dict() for audit in self.audits],
            "exhaustive": self.exhaustive,
            "unconstrained": {
                "label": "UNCONSTRAINED SANITY LINE (not the headline): the same model, the"
                " schema's constraints dropped, an L-inf ball of each column's budget inside the"
                " schema's box, scored by the image suite",
                "clean_accuracy": self.unconstrained.clean.to_dict(),
                "robust_accuracy": self.unconstrained.robust.to_dict(),
                "attacks": [
                    {"name": a.name, "robust_accuracy": a.robust.to_dict()}
                    for a in self.unconstrained.attacks
                ],
                "at_most_constrained": (
                    self.unconstrained.robust.correct <= self.scores.robust.correct
                ),
            },
        }


def evaluate_tabular(
    model: nn.Module,
    target: EvaluationTarget,
    threat: TabularThreat,
    reporter: Reporter,
    label: str,
) -> TabularScores:
    """Score ``model`` on ``target`` (raw feature rows, the constrained threat of ``threat``)."""
    model.eval()
    device = next(iter(model.parameters()), torch.empty(0)).device
    started = time.monotonic()
    suite = tabular_attacks(target.suite, threat, reporter.check)
    clean_correct = _correct(model, target, device)
    standing = clean_correct.clone()
    adversarial = target.x.clone()
    audits = []
    per_attack = []
    exhaustive: dict[str, Any] = {}
    for attack in suite:
        kinds = constraint_kinds(threat.schema)
        audit = AttackAudit(attack.name, attack.respects, broken=dict.fromkeys(kinds, 0))
        survived = _judge(
            model,
            attack,
            target,
            threat,
            threat.constraints,
            standing.clone() if attack.on_survivors else clean_correct,
            audit,
            adversarial,
            standing,
            reporter.check,
        )
        standing &= survived
        audits.append(audit)
        per_attack.append(
            AttackScore(
                attack.name,
                attack.description,
                attack.white_box,
                Accuracy(int(survived.sum()), len(target.y)),
            )
        )
        if isinstance(attack.run, ExhaustiveSearch):
            exhaustive = _exhaustive_block(attack.run, audit.counted)
        _say(
            reporter,
            f"{label}: {attack.name}: {int(standing.sum())}/{len(target.y)} still"
            f" robust, {time.monotonic() - started:.0f} s"
            + (f" ({exhaustive['summary']})" if attack.on_survivors and exhaustive else ""),
        )
    curve = _curve(model, target, threat, clean_correct, standing)
    unconstrained = evaluate(
        ScaledInput(model, threat.unconstrained_scale.to(device)),
        _unconstrained_target(target, threat),
        reporter,
        f"{label} (unconstrained sanity line)",
    )
    masking = [
        _search_stronger(per_attack, int(clean_correct.sum())),
        *([_missed_by_attacks(exhaustive)] if exhaustive else []),
        *unconstrained.masking,
    ]
    scores = ModelScores(
        Accuracy(int(clean_correct.sum()), len(target.y)),
        Accuracy(int(standing.sum()), len(target.y)),
        per_attack,
        curve,
        masking,
    )
    broken = clean_correct & ~standing
    return TabularScores(scores, audits, unconstrained, exhaustive, adversarial, broken)


def _exhaustive_block(search: ExhaustiveSearch, counted: int) -> dict[str, Any]:
    """The report's ``exhaustive`` block: the tally, the samples it broke that every attack
    left robust (what the suite counted for it, after repair and check), and whether every
    sample the attacks left was settled exactly and every example it found was counted (then
    the headline is the exact figure)."""
    tally = search.tally
    return {
        **tally.to_dict(),
        "missed_by_attacks": counted,
        "headline_exact": tally.exact == tally.samples and counted == tally.found,
    }


def _missed_by_attacks(exhaustive: dict[str, Any]) -> MaskingCheck:
    missed = int(exhaustive["missed_by_attacks"])
    return MaskingCheck(
        "exhaustive-found-what-the-attacks-missed (constrained)",
        missed > 0,
        f"trying every valid point broke {missed} of the {exhaustive['samples']} samples the"
        " attacks left robust",
        "The attacks alone would have overstated robustness: valid adversarial inputs exist"
        " that neither the gradient attacks nor the search found (flat or misleading gradients"
        " around them, or integer steps and category switches a relaxation rounds away). The"
        " headline counts these samples as broken.",
    )


def _judge(
    model: nn.Module,
    attack: TabularAttack,
    target: EvaluationTarget,
    threat: TabularThreat,
    constraints: FeatureConstraints,
    run_on: Tensor,
    audit: AttackAudit | None,
    adversarial: Tensor | None,
    first_broken: Tensor | None,
    check: Callable[[], None] = lambda: None,
) -> Tensor:
    """Run ``attack`` on the samples ``run_on``; returns which of them survived (others False).
    Records the audit's counts and, for samples ``first_broken`` still marks, the example."""
    device = next(iter(model.parameters()), torch.empty(0)).device
    survived = torch.zeros_like(run_on)
    candidates = torch.nonzero(run_on).flatten()
    for start in range(0, len(candidates), target.batch_size):
        check()
        index = candidates[start : start + target.batch_size]
        x = target.x[index].to(device)
        y = target.y[index].to(device)
        generator = torch.Generator().manual_seed(_batch_seed(target.seed, int(index[0])))
        constraints_here = constraints.to(device)
        raw = attack.run(model, x, y, constraints_here, generator).detach()
        kinds = violations_by_kind(threat.schema, constraints_here, raw, x)
        repaired = constraints_here.repair(raw, x)
        still_bad = violations(threat.schema, constraints_here, repaired, x)
        with torch.no_grad():
            fooled_raw = model(raw).argmax(1) != y
            fooled = model(repaired).argmax(1) != y
        counted = fooled & ~still_bad
        survived[index] = ~counted.cpu()
        if audit is not None and audit.broken is not None:
            invalid = torch.zeros_like(counted)
            for kind, mask in kinds.items():
                if kind in audit.broken:
                    audit.broken[kind] += int(mask.sum())
                invalid |= mask
            audit.candidates += len(index)
            audit.invalid_before_repair += int(invalid.sum())
            audit.fooled_before_repair += int(fooled_raw.sum())
            audit.dropped_after_repair += int((fooled_raw & ~counted).sum())
            audit.counted += int(counted.sum())
        if adversarial is not None and first_broken is not None:
            new = counted.cpu() & first_broken[index]
            adversarial[index[new]] = repaired[new.to(device)].cpu()
    return survived


def _batch_seed(seed: int, first_sample: int) -> int:
    return (seed * 1_000_003 + first_sample) % (2**63)


def _curve(
    model: nn.Module,
    target: EvaluationTarget,
    threat: TabularThreat,
    clean_correct: Tensor,
    worst: Tensor,
) -> list[CurvePoint]:
    """Robust accuracy with every budget scaled by evenly spaced factors from 0 to 2 (flips and
    immutables as they are), under a cheap CAPGD cascade; the point at 1 is the headline. As in
    the image suite, below 1 only the samples the headline broke are attacked, above 1 only its
    survivors, so the curve never rises."""
    total = len(target.y)
    points = []
    robust = clean_correct.clone()
    for i in range(target.curve_points):
        factor = 2 * i / (target.curve_points - 1)
        below = factor < 1 - 1e-12
        attacked = robust & ~worst if below else robust & worst
        robust &= worst
        if abs(factor - 1) >= 1e-12:
            survivors = attacked
            for attack in _curve_attacks(target.suite):
                survivors = survivors & _judge(
                    model,
                    attack,
                    target,
                    threat,
                    threat.constraints.scaled(factor),
                    survivors,
                    None,
                    None,
                    None,
                )
            robust = robust | survivors if below else survivors
        points.append(CurvePoint(round(factor, 8), Accuracy(int(robust.sum()), total)))
    return points


def _unconstrained_target(target: EvaluationTarget, threat: TabularThreat) -> EvaluationTarget:
    scale = threat.unconstrained_scale
    return replace(
        target,
        x=target.x / scale,
        norm="linf",
        eps=1.0,
        box=Box(threat.box.lower / scale, threat.box.upper / scale),
    )


def _search_stronger(per_attack: list[AttackScore], correct: int) -> MaskingCheck:
    by_name = {a.name: a.robust for a in per_attack}
    white = min(by_name["capgd-ce"].correct, by_name["capgd-t"].correct)
    black = by_name["evolution"]
    fired = white - black.correct > max(2, correct // 100)
    return MaskingCheck(
        "black-box-stronger-than-white-box (constrained)",
        fired,
        f"the evolution search leaves {black.value:.1%} robust, the best CAPGD"
        f" {white / max(1, black.total):.1%}",
        "A search that only queries outputs found valid adversarial inputs that the gradient "
        "attacks missed: either the gradients mislead (masking), or the discrete features "
        "(integer steps, category switches) matter more than a relaxation can see.",
    )


def _correct(model: nn.Module, target: EvaluationTarget, device: torch.device) -> Tensor:
    out = []
    with torch.no_grad():
        for start in range(0, len(target.y), target.batch_size):
            logits = model(target.x[start : start + target.batch_size].to(device))
            y = target.y[start : start + target.batch_size].to(device)
            out.append((logits.argmax(1) == y).cpu())
    return torch.cat(out)


def _say(reporter: Reporter, message: str) -> None:
    reporter.check()
    reporter.emit(ProgressEvent(stage="evaluating", message=message))


def tabular_section(
    threat: TabularThreat, original: TabularScores, hardened: TabularScores
) -> dict[str, Any]:
    """The report's ``tabular`` section: the schema, the headline's meaning, and per model what
    each attack respected, how many candidates were invalid before repair and dropped after it,
    and the unconstrained sanity line."""
    return {
        "schema": threat.to_dict(),
        "box": {
            "lower": [float(v) for v in threat.box.lower.flatten()],
            "upper": [float(v) for v in threat.box.upper.flatten()],
        },
        "headline": HEADLINE,
        "curve": "robust accuracy with every budget scaled by the factor on the axis (flips and"
        " immutable features as they are), under a cheap CAPGD cascade; a point at 1 is the"
        " headline",
        "original": original.to_dict(),
        "hardened": hardened.to_dict(),
    }
