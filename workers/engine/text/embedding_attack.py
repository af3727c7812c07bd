"""The white-box embedding-space attack that scores a text classifier: an upper bound of its
vulnerability, not a realistic text attack.

No text maps to a point between word embeddings, so a flip found here may have no text behind
it; the report shows this attack apart from the discrete ones and never in their worst case.
It tells how much room the model leaves around its inputs: a model that no embedding
perturbation within the ball flips cannot be flipped by any synonym whose embedding lies in it.

The ball is per token: each real token's embedding may move by at most ``radius`` in L2,
padding never moves, and ``radius`` is ``eps`` times the mean L2 norm of the real tokens'
embeddings over the whole evaluated set (one radius for every sample, whatever batch it is
scored in). PGD on the margin loss, from a random start in the ball, with restarts; a sample
counts as robust only if it is classified correctly and no iterate of any restart flips it.
This code is its own: training's embedding-space steps are written separately.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from workers.engine.evaluation.stats import Accuracy
from workers.engine.text.model import TextClassifier, as_module, model_device

_SHRINK = 1.0 - 1e-5
"""Perturbations are scaled to this share of the radius at most, so rounding in the norm never
leaves a point outside the ball however it is measured."""


@dataclass(frozen=True)
class EmbeddingAttack:
    eps: float = 0.1
    """Radius as a share of the mean real-token embedding norm."""
    steps: int = 20
    restarts: int = 3
    step_factor: float = 2.5
    """Each step moves a token by ``step_factor * radius / steps``."""
    batch_size: int = 64

    def __post_init__(self) -> None:
        if self.eps < 0 or self.steps < 1 or self.restarts < 1 or self.batch_size < 1:
            raise ValueError(f"invalid embedding attack settings: {self}")


@dataclass(frozen=True)
class EmbeddingAttackResult:
    attack: EmbeddingAttack
    correct: np.ndarray
    """Per sample: classified correctly before the attack."""
    robust: np.ndarray
    """Per sample: classified correctly and flipped by no iterate of any restart."""
    radius: float
    mean_token_norm: float

    @property
    def clean(self) -> Accuracy:
        return Accuracy(int(self.correct.sum()), len(self.correct))

    @property
    def robust_accuracy(self) -> Accuracy:
        return Accuracy(int(self.robust.sum()), len(self.robust))

    def to_dict(self) -> dict[str, object]:
        attacked = int(self.correct.sum())
        flipped = attacked - int(self.robust.sum())
        return {
            "kind": "embedding-pgd",
            "realistic": False,
            "meaning": "upper bound of vulnerability: perturbs embeddings, not texts",
            "eps_share_of_mean_token_norm": self.attack.eps,
            "radius": round(self.radius, 6),
            "mean_token_norm": round(self.mean_token_norm, 6),
            "steps": self.attack.steps,
            "restarts": self.attack.restarts,
            "clean_accuracy": self.clean.to_dict(),
            "robust_accuracy": self.robust_accuracy.to_dict(),
            "attack_success_rate": round(flipped / attacked, 6) if attacked else 0.0,
        }


def run_embedding_attack(
    model: TextClassifier,
    ids: np.ndarray,
    attention_mask: np.ndarray,
    labels: np.ndarray,
    attack: EmbeddingAttack = EmbeddingAttack(),
    *,
    seed: int = 0,
) -> EmbeddingAttackResult:
    """Attack every sample of the encoded set (ids and mask as :func:`encode` gives them)."""
    if not (len(ids) == len(attention_mask) == len(labels)) or len(ids) == 0:
        raise ValueError("ids, mask and labels must be non-empty and of the same length")
    module = as_module(model)
    was_training = module.training
    module.eval()
    try:
        mean_norm = _mean_token_norm(model, ids, attention_mask, attack.batch_size)
        radius = attack.eps * mean_norm
        correct, robust = [], []
        for start in range(0, len(ids), attack.batch_size):
            rows = slice(start, start + attack.batch_size)
            generator = torch.Generator().manual_seed(seed * 1_000_003 + start)
            ok, held = _attack_batch(
                model, ids[rows], attention_mask[rows], labels[rows], attack, radius, generator
            )
            correct.append(ok)
            robust.append(held)
    finally:
        module.train(was_training)
    return EmbeddingAttackResult(
        attack, np.concatenate(correct), np.concatenate(robust), radius, mean_norm
    )


def _tensors(
    model: TextClassifier, ids: np.ndarray, mask: np.ndarray
) -> tuple[Tensor, Tensor, Tensor]:
    device = model_device(model)
    ids_t = torch.from_numpy(np.ascontiguousarray(ids, dtype=np.int64)).to(device)
    mask_t = torch.from_numpy(np.ascontiguousarray(mask, dtype=np.int64)).to(device)
    return ids_t, mask_t, mask_t.to(torch.float32).unsqueeze(-1)


def _mean_token_norm(
    model: TextClassifier, ids: np.ndarray, mask: np.ndarray, batch_size: int
) -> float:
    total, count = 0.0, 0.0
    with torch.no_grad():
        for start in range(0, len(ids), batch_size):
            ids_t, _, weights = _tensors(
                model, ids[start : start + batch_size], mask[start : start + batch_size]
            )
            norms = torch.linalg.vector_norm(model.embed(ids_t).double(), dim=-1, keepdim=True)
            total += float((norms * weights).sum())
            count += float(weights.sum())
    return total / count if count else 0.0


def _attack_batch(
    model: TextClassifier,
    ids: np.ndarray,
    mask: np.ndarray,
    labels: np.ndarray,
    attack: EmbeddingAttack,
    radius: float,
    generator: torch.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    ids_t, mask_t, weights = _tensors(model, ids, mask)
    y = torch.from_numpy(np.asarray(labels, dtype=np.int64)).to(ids_t.device)
    with torch.no_grad():
        embedded = model.embed(ids_t).detach()
        correct = model.classify_embedded(embedded, mask_t, ids=ids_t).argmax(1) == y
    robust = correct.clone()
    alpha = attack.step_factor * radius / attack.steps
    for _ in range(attack.restarts):
        if radius == 0 or not bool(robust.any()):
            break
        delta = _inside(_start(embedded, weights, radius, generator), weights, radius)
        for _ in range(attack.steps):
            delta.requires_grad_(True)
            logits = model.classify_embedded(embedded + delta, mask_t, ids=ids_t).float()
            flipped = logits.argmax(1) != y
            robust &= ~flipped.detach()
            (grad,) = torch.autograd.grad(_margin(logits, y).sum(), delta)
            delta = _inside(
                delta.detach() + alpha * _per_token_unit(grad, weights), weights, radius
            )
        with torch.no_grad():
            final = model.classify_embedded(embedded + delta, mask_t, ids=ids_t).argmax(1)
        robust &= final == y
    return correct.cpu().numpy(), robust.cpu().numpy()


def _margin(logits: Tensor, y: Tensor) -> Tensor:
    """Largest other logit minus the true one: positive once the prediction is flipped."""
    true = logits.gather(1, y[:, None]).squeeze(1)
    others = logits.scatter(1, y[:, None], float("-inf"))
    return others.amax(dim=1) - true


def _start(embedded: Tensor, weights: Tensor, radius: float, generator: torch.Generator) -> Tensor:
    direction = torch.randn(embedded.shape, generator=generator).to(embedded)
    direction = direction / torch.linalg.vector_norm(direction, dim=-1, keepdim=True).clamp_min(
        1e-12
    )
    draw = torch.rand((*embedded.shape[:2], 1), generator=generator).to(embedded)
    return direction * draw.pow(1.0 / embedded.shape[-1]) * radius * weights


def _per_token_unit(grad: Tensor, weights: Tensor) -> Tensor:
    grad = torch.nan_to_num(grad, nan=0.0, posinf=0.0, neginf=0.0)
    return grad / torch.linalg.vector_norm(grad, dim=-1, keepdim=True).clamp_min(1e-12) * weights


def _inside(delta: Tensor, weights: Tensor, radius: float) -> Tensor:
    norms = torch.linalg.vector_norm(delta, dim=-1, keepdim=True)
    scale = (radius * _SHRINK / norms.clamp_min(1e-12)).clamp(max=1.0)
    return delta * scale * weights
