"""Training steps for text classifiers: given a batch, the loss to minimise and the logits it
was computed on. Same contract as :mod:`workers.engine.training.steps`, with a batch of token
ids, mask and texts in place of an input tensor.

- Embedding-space PGD (Madry et al. 2018, in embedding space as in FreeLB, Zhu et al. 2020):
  cross-entropy on embeddings moved by K ascent steps within the per-token ball (:mod:`.ball`).
- Embedding-space TRADES (Zhang et al. 2019): clean cross-entropy plus beta times the KL from
  the clean to the perturbed prediction, the adversary maximising that KL.
- Distillation (Papernot et al. 2016): a teacher trained at temperature T, a student trained
  on the teacher's soft labels at T.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor

from workers.engine.text.model import TextClassifier, as_module
from workers.engine.text.training.ball import (
    ascent_direction,
    clip_tokens,
    random_start,
    token_radius,
)
from workers.engine.text.training.batches import TextBatch

DEFAULT_TEXT_EPS = 0.03
"""The per-token radius as a share of the mean token-embedding norm that the text benchmark
chose on its validation split: no clean cost there, where 0.1 cost 13 points (docs/text.md)."""

TextStep = Callable[[TextClassifier, TextBatch, float], tuple[Tensor, Tensor]]
"""``(model, batch, eps) -> (loss, logits)``; eps as a share of the mean token-embedding norm."""

LogitsLoss = Callable[[Tensor], Tensor]


def embedding_ascent(
    model: TextClassifier,
    embedded: Tensor,
    batch: TextBatch,
    loss: LogitsLoss,
    *,
    eps: float,
    steps: int,
    step_factor: float,
    generator: torch.Generator,
) -> Tensor:
    """A perturbation of ``embedded`` (detached) that raises ``loss``: a random start in the
    per-token ball, then ``steps`` normalised-gradient steps of ``step_factor * radius /
    steps``, each clipped back into the ball. Only the perturbation gets gradients."""
    mask = batch.token_mask()
    radius = token_radius(embedded, mask, eps)
    alpha = step_factor * radius / steps
    delta = random_start(embedded, mask, radius, generator)
    for _ in range(steps):
        delta.requires_grad_(True)
        logits = model.classify_embedded(embedded + delta, batch.mask, ids=batch.ids)
        (grad,) = torch.autograd.grad(loss(logits.float()), delta)
        delta = clip_tokens(delta.detach() + alpha * ascent_direction(grad, mask), mask, radius)
    return delta.detach()


@dataclass
class CleanStep:
    """Plain cross-entropy: the baseline every hardening is compared with."""

    def __call__(
        self, model: TextClassifier, batch: TextBatch, eps: float
    ) -> tuple[Tensor, Tensor]:
        logits = model.forward(batch.ids, batch.mask)
        return F.cross_entropy(logits.float(), batch.labels), logits


@dataclass
class EmbeddingPgdStep:
    generator: torch.Generator
    steps: int = 3
    step_factor: float = 2.5

    def __call__(
        self, model: TextClassifier, batch: TextBatch, eps: float
    ) -> tuple[Tensor, Tensor]:
        embedded = model.embed(batch.ids)
        if eps <= 0:
            logits = model.classify_embedded(embedded, batch.mask, ids=batch.ids)
            return F.cross_entropy(logits.float(), batch.labels), logits
        delta = embedding_ascent(
            model,
            embedded.detach(),
            batch,
            lambda logits: F.cross_entropy(logits, batch.labels, reduction="sum"),
            eps=eps,
            steps=self.steps,
            step_factor=self.step_factor,
            generator=self.generator,
        )
        logits = model.classify_embedded(embedded + delta, batch.mask, ids=batch.ids)
        return F.cross_entropy(logits.float(), batch.labels), logits


@dataclass
class EmbeddingTradesStep:
    generator: torch.Generator
    beta: float = 6.0
    steps: int = 3
    step_factor: float = 2.5

    def __call__(
        self, model: TextClassifier, batch: TextBatch, eps: float
    ) -> tuple[Tensor, Tensor]:
        module = as_module(model)
        was_training = module.training
        module.eval()
        with torch.no_grad():
            embedded = model.embed(batch.ids)
            clean = F.softmax(
                model.classify_embedded(embedded, batch.mask, ids=batch.ids).float(), dim=1
            )
        delta = torch.zeros_like(embedded)
        if eps > 0:
            delta = embedding_ascent(
                model,
                embedded,
                batch,
                lambda logits: F.kl_div(F.log_softmax(logits, dim=1), clean, reduction="sum"),
                eps=eps,
                steps=self.steps,
                step_factor=self.step_factor,
                generator=self.generator,
            )
        module.train(was_training)
        embedded = model.embed(batch.ids)
        logits = model.classify_embedded(embedded, batch.mask, ids=batch.ids).float()
        logits_adv = model.classify_embedded(embedded + delta, batch.mask, ids=batch.ids).float()
        robust = F.kl_div(
            F.log_softmax(logits_adv, dim=1), F.softmax(logits, dim=1), reduction="batchmean"
        )
        return F.cross_entropy(logits, batch.labels) + self.beta * robust, logits_adv


@dataclass
class TemperatureStep:
    """Cross-entropy with the logits divided by T: how the teacher is trained."""

    temperature: float

    def __call__(
        self, model: TextClassifier, batch: TextBatch, eps: float
    ) -> tuple[Tensor, Tensor]:
        logits = model.forward(batch.ids, batch.mask)
        return F.cross_entropy(logits.float() / self.temperature, batch.labels), logits


@dataclass
class SoftLabelStep:
    """Cross-entropy at temperature T against the teacher's probabilities at T."""

    teacher: TextClassifier
    temperature: float
    _frozen: bool = field(default=False, init=False)

    def __call__(
        self, model: TextClassifier, batch: TextBatch, eps: float
    ) -> tuple[Tensor, Tensor]:
        if not self._frozen:
            as_module(self.teacher).eval().requires_grad_(False)
            self._frozen = True
        with torch.no_grad():
            teacher_logits = self.teacher.forward(batch.ids, batch.mask).float()
            soft = F.softmax(teacher_logits / self.temperature, dim=1)
        logits = model.forward(batch.ids, batch.mask)
        log_probs = F.log_softmax(logits.float() / self.temperature, dim=1)
        return -(soft * log_probs).sum(dim=1).mean(), logits
