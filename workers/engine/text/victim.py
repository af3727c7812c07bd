"""A text classifier and its tokenizer seen as the black box the discrete attacks query:
texts in, class probabilities out.

Texts are encoded by an :class:`Encoder`, which configures its copy of the tokenizer once and
gives the same ids as :func:`workers.engine.text.tokenizer.encode` (a test checks it): the
attacks score a few texts at a time, thousands of times, and ``encode`` reconfigures a copy of
the tokenizer on every call, which costs tens of milliseconds for a large vocabulary.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from workers.engine.spec import TEXT_MAX_LENGTH
from workers.engine.text.model import TextClassifier, as_module, metadata, model_device
from workers.engine.text.tokenizer import TextTokenizer
from workers.engine.text.training.batches import Encoder

DEFAULT_MAX_LENGTH = TEXT_MAX_LENGTH
"""Tokens kept of a text when the model accepts any length and the caller names no limit."""


class TextVictim:
    """Scores texts in batches of ``batch_size``, in eval mode, without gradients, on the
    model's device. Texts are cut to ``max_length`` tokens; a model with a fixed sequence length
    gets exactly that many, padded."""

    def __init__(
        self,
        model: TextClassifier,
        tokenizer: TextTokenizer,
        *,
        max_length: int | None = None,
        batch_size: int = 64,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        fixed = metadata(model).max_length
        if fixed is not None and max_length is not None and max_length != fixed:
            raise ValueError(f"the model takes exactly {fixed} tokens, not {max_length}")
        self.model = model
        self.tokenizer = tokenizer
        self.max_length = fixed or max_length or DEFAULT_MAX_LENGTH
        self.encoder = Encoder(tokenizer, self.max_length, pad_to_max_length=fixed is not None)
        self.batch_size = batch_size
        self.truncated = 0
        """Texts scored so far that were longer than ``max_length`` tokens."""

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            raise ValueError("no texts to score")
        parts = [
            self._probabilities(texts[start : start + self.batch_size])
            for start in range(0, len(texts), self.batch_size)
        ]
        return np.concatenate(parts, axis=0)

    def _probabilities(self, texts: Sequence[str]) -> np.ndarray:
        encodings = self.encoder.encodings(texts)
        self.truncated += sum(1 for encoding in encodings if encoding.overflowing)
        ids, mask = self.encoder.pad([encoding.ids for encoding in encodings])
        module = as_module(self.model)
        device = model_device(self.model)
        was_training = module.training
        module.eval()
        try:
            with torch.no_grad():
                logits = self.model.forward(
                    torch.from_numpy(ids).to(device), torch.from_numpy(mask).to(device)
                )
        finally:
            module.train(was_training)
        return torch.softmax(logits.double(), dim=1).cpu().numpy()
