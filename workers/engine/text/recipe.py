"""The text recipe: every training setting of a text job, resolved once from the request.

A request leaves most settings unset, meaning "the recipe's choice"; :func:`text_recipe` fills
them in. Benchmarks that choose the defaults (``bench/text_recipe_search.py``) hand
:func:`workers.engine.text.pipeline.harden_text` a variant of the resolved recipe instead of
patching constants, so that what they measure is the code users run.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from workers.engine.spec import HardeningRequest, Method

DEFAULT_EPOCHS = 8
DEFAULT_BATCH_SIZE = 32
DEFAULT_LEARNING_RATE = 3e-3
"""Peak of the one-cycle schedule, with Adam."""
DEFAULT_ATTACK_STEPS = 3
EPS_WARMUP_EPOCHS = 1.0
A2T_SHARE = 1.0
"""Share of each batch that gets A2T synonym-substituted copies: all of it. Embedding-space
steps alone leave a synonym swap, which jumps from one word's embedding to another's, far
outside any ball small enough to keep clean accuracy: on the benchmark (docs/text.md) embedding
PGD alone gained 8 points under the synonym attack, A2T around it 18 to 21."""
TRAINING_EPS_FACTOR = 2.0
"""The training ball's radius, as a multiple of the scored embedding attack's. Chosen on
validation texts (``bench/text_recipe_search.py``, docs/benchmarks.md): with A2T on every text,
twice the radius took the synonym-attack gain from +18.3 to +23.9 points at the same clean
accuracy."""


@dataclass(frozen=True)
class TextRecipe:
    method: Method
    epochs: int
    batch_size: int
    learning_rate: float
    embedding_eps: float
    """The training ball's radius (the scored one is the request's text threat model's)."""
    attack_steps: int
    a2t_share_of_batch: float
    a2t_share_of_words: float
    trades_beta: float
    temperature: float
    eps_warmup_epochs: float = EPS_WARMUP_EPOCHS

    def to_dict(self) -> dict[str, Any]:
        """The settings that mattered for this method, as the report's training config."""
        config: dict[str, Any] = {
            "method": self.method.value,
            "epochs": self.epochs,
            "batch_size": self.batch_size,
            "learning_rate": self.learning_rate,
            "schedule": "one-cycle",
            "optimizer": "adam",
        }
        if self.method is Method.DISTILLATION:
            return {**config, "temperature": self.temperature}
        config.update(
            embedding_eps=self.embedding_eps,
            eps_warmup_epochs=self.eps_warmup_epochs,
            attack_steps=self.attack_steps,
            a2t_share_of_batch=self.a2t_share_of_batch,
            a2t_share_of_words=self.a2t_share_of_words,
        )
        if self.method is Method.TRADES:
            config["trades_beta"] = self.trades_beta
        return config


def text_recipe(request: HardeningRequest) -> TextRecipe:
    """The request's settings, with the recipe's choice wherever the request left one unset."""
    config = request.training
    return TextRecipe(
        method=config.method,
        epochs=config.epochs or DEFAULT_EPOCHS,
        batch_size=config.batch_size or DEFAULT_BATCH_SIZE,
        learning_rate=config.learning_rate or DEFAULT_LEARNING_RATE,
        embedding_eps=TRAINING_EPS_FACTOR * request.text_threat.embedding_eps,
        attack_steps=config.attack_steps or DEFAULT_ATTACK_STEPS,
        a2t_share_of_batch=A2T_SHARE,
        a2t_share_of_words=request.text_threat.word_share,
        trades_beta=config.trades_beta,
        temperature=config.temperature,
    )
