"""One training step per method: given a batch, the loss to minimise (and the logits it used).

- PGD-AT (Madry et al. 2018): cross-entropy on PGD examples.
- FGSM with random start (Wong, Rice and Kolter 2020): one step of size alpha from a uniform
  random start in the ball.
- TRADES (Zhang et al. 2019): clean cross-entropy plus beta times the KL divergence between the
  predictions on clean and adversarial inputs, the adversary maximising that KL.
- Defensive distillation (Papernot et al. 2016): cross-entropy at temperature T against the
  teacher's soft labels at the same T, optionally mixed with the hard labels.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from workers.engine.attacks.perturb import Objective, perturb
from workers.engine.attacks.region import FeatureRegion, perturb_in_region
from workers.engine.geometry import Box, NormName
from workers.engine.training.recipe import FGSM_STEP_SHARE, PGD_STEP_SHARE

Autocast = Callable[[], AbstractContextManager[object]]


@dataclass
class AdversarialSetting:
    norm: NormName
    box: Box
    generator: torch.Generator
    autocast: Autocast = nullcontext
    region: FeatureRegion | None = None
    """A tabular model's feature schema: attacks move inside it instead of the norm ball."""

    def perturb(
        self,
        model: nn.Module,
        x: Tensor,
        objective: Objective,
        *,
        eps: float,
        alpha: float,
        steps: int,
    ) -> Tensor:
        """The training attack of this setting: PGD in the ball and the box, or, with a
        ``region``, in the schema (``alpha / eps`` is then the step as a share of each budget)."""
        if self.region is not None:
            return perturb_in_region(
                model,
                x,
                objective,
                region=self.region,
                eps=eps,
                step=alpha / eps if eps > 0 else 0.0,
                steps=steps,
                generator=self.generator,
                autocast=self.autocast,
            )
        return perturb(
            model,
            x,
            objective,
            norm=self.norm,
            eps=eps,
            alpha=alpha,
            steps=steps,
            box=self.box,
            generator=self.generator,
            autocast=self.autocast,
        )


@dataclass
class PgdStep:
    setting: AdversarialSetting
    steps: int
    step_size: float | None = None
    """None: 2.5 * eps / steps of the epsilon in force (Madry et al.)."""

    def __call__(self, model: nn.Module, x: Tensor, y: Tensor, eps: float) -> tuple[Tensor, Tensor]:
        alpha = _step(self.step_size, eps, self.steps)
        x_adv = self.setting.perturb(
            model,
            x,
            lambda logits: F.cross_entropy(logits.float(), y),
            eps=eps,
            alpha=alpha,
            steps=self.steps,
        )
        with self.setting.autocast():
            logits = model(x_adv)
        return F.cross_entropy(logits.float(), y), logits


@dataclass
class FgsmStep:
    """``alpha_factor`` times eps is the step; Wong et al. use 1.25. It is mutable because the
    catastrophic-overfitting guard lowers it after a collapse."""

    setting: AdversarialSetting
    alpha_factor: float = FGSM_STEP_SHARE

    def __call__(self, model: nn.Module, x: Tensor, y: Tensor, eps: float) -> tuple[Tensor, Tensor]:
        x_adv = self.setting.perturb(
            model,
            x,
            lambda logits: F.cross_entropy(logits.float(), y),
            eps=eps,
            alpha=self.alpha_factor * eps,
            steps=1,
        )
        with self.setting.autocast():
            logits = model(x_adv)
        return F.cross_entropy(logits.float(), y), logits


@dataclass
class TradesStep:
    setting: AdversarialSetting
    steps: int
    beta: float
    step_size: float | None = None
    """As :class:`PgdStep`'s."""

    def __call__(self, model: nn.Module, x: Tensor, y: Tensor, eps: float) -> tuple[Tensor, Tensor]:
        alpha = _step(self.step_size, eps, self.steps)
        model.eval()
        with torch.no_grad(), self.setting.autocast():
            clean_probs = F.softmax(model(x).float(), dim=1)
        x_adv = self.setting.perturb(
            model,
            x,
            lambda logits: F.kl_div(
                F.log_softmax(logits.float(), dim=1), clean_probs, reduction="sum"
            ),
            eps=eps,
            alpha=alpha,
            steps=self.steps,
        )
        model.train()
        with self.setting.autocast():
            logits = model(x)
            logits_adv = model(x_adv)
        natural = F.cross_entropy(logits.float(), y)
        robust = F.kl_div(
            F.log_softmax(logits_adv.float(), dim=1),
            F.softmax(logits.float(), dim=1),
            reduction="batchmean",
        )
        return natural + self.beta * robust, logits_adv


def _step(step_size: float | None, eps: float, steps: int) -> float:
    return PGD_STEP_SHARE * eps / steps if step_size is None else step_size


@dataclass
class TemperatureStep:
    """Cross-entropy on hard labels with the logits divided by T: how the teacher is trained."""

    temperature: float
    autocast: Autocast = nullcontext

    def __call__(self, model: nn.Module, x: Tensor, y: Tensor, eps: float) -> tuple[Tensor, Tensor]:
        with self.autocast():
            logits = model(x)
        return F.cross_entropy(logits.float() / self.temperature, y), logits


@dataclass
class DistillationStep:
    teacher: nn.Module
    temperature: float
    hard_label_weight: float = 0.0
    autocast: Autocast = nullcontext
    _frozen: bool = field(default=False, init=False)

    def __call__(self, model: nn.Module, x: Tensor, y: Tensor, eps: float) -> tuple[Tensor, Tensor]:
        if not self._frozen:
            self.teacher.eval()
            self.teacher.requires_grad_(False)
            self._frozen = True
        with torch.no_grad(), self.autocast():
            soft = F.softmax(self.teacher(x).float() / self.temperature, dim=1)
        with self.autocast():
            logits = model(x)
        log_probs = F.log_softmax(logits.float() / self.temperature, dim=1)
        soft_loss = -(soft * log_probs).sum(dim=1).mean()
        loss = (1 - self.hard_label_weight) * soft_loss
        if self.hard_label_weight:
            loss = loss + self.hard_label_weight * F.cross_entropy(
                logits.float() / self.temperature, y
            )
        return loss, logits
