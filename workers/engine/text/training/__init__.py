"""Hardening text classifiers: embedding-space adversarial training (PGD, TRADES), A2T-style
synonym augmentation and distillation, composed as small steps run by a plain loop.

Nothing here imports :mod:`workers.engine.text.attacks`: the code that trains a model never
grades it.
"""

from workers.engine.text.training.a2t import A2TAugmenter, A2TStep
from workers.engine.text.training.batches import EncodedSplit, Encoder, TextBatch
from workers.engine.text.training.loop import (
    TextTrainingData,
    TextTrainingOutcome,
    accuracy,
    distill_text,
    split_validation,
    train_text,
)
from workers.engine.text.training.steps import (
    DEFAULT_TEXT_EPS,
    CleanStep,
    EmbeddingPgdStep,
    EmbeddingTradesStep,
    SoftLabelStep,
    TemperatureStep,
    TextStep,
)

__all__ = [
    "DEFAULT_TEXT_EPS",
    "A2TAugmenter",
    "A2TStep",
    "CleanStep",
    "EmbeddingPgdStep",
    "EmbeddingTradesStep",
    "EncodedSplit",
    "Encoder",
    "SoftLabelStep",
    "TemperatureStep",
    "TextBatch",
    "TextStep",
    "TextTrainingData",
    "TextTrainingOutcome",
    "accuracy",
    "distill_text",
    "split_validation",
    "train_text",
]
