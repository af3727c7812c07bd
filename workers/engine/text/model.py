"""What the engine needs of a text classifier, and two small reference models.

A text classifier is read in two halves: the word-embedding lookup (:meth:`embed`) and the rest
of the network from those embeddings (:meth:`classify_embedded`). Hardening and the white-box
scoring attack perturb what passes between the halves. The ONNX reader's text modules offer the
same methods; the engine programs against :class:`TextClassifier`, so the reference models here
and a converted ONNX graph are interchangeable.

The padding id is the tokenizer's business, not the model's: the models here never look at it
and ignore every position the attention mask marks as padding.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

import torch
from torch import Tensor, nn


class TokenMetadata(Protocol):
    """How the classifier takes its tokens (the ONNX reader's ``TokenInput`` fits this)."""

    @property
    def vocab_size(self) -> int: ...

    @property
    def embedding_dim(self) -> int: ...

    @property
    def max_length(self) -> int | None:
        """The fixed sequence length the model was exported with, or None when it takes any."""
        ...


@runtime_checkable
class TextClassifier(Protocol):
    """A classifier of token ids that lets its embeddings be replaced.

    ``forward(ids, mask)`` must equal ``classify_embedded(embed(ids), mask, ids=ids)``.
    ``ids`` is passed to ``classify_embedded`` for graphs that read the ids beyond the lookup
    (a padding mask computed from them); models that do not, ignore it.
    """

    @property
    def token_input(self) -> TokenMetadata | None: ...

    def embed(self, ids: Tensor) -> Tensor:
        """Token ids [B, T] -> embeddings [B, T, D]."""
        ...

    def classify_embedded(
        self, embedded: Tensor, attention_mask: Tensor | None = None, *, ids: Tensor | None = None
    ) -> Tensor:
        """Embeddings [B, T, D] (and the mask, 1 for real tokens) -> logits [B, C]."""
        ...

    def forward(self, ids: Tensor, attention_mask: Tensor | None = None) -> Tensor: ...


def as_module(model: TextClassifier) -> nn.Module:
    """The classifier as the torch module it must also be (for parameters, modes, devices)."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"a text classifier must be a torch module, got {type(model).__name__}")
    return model


def metadata(model: TextClassifier) -> TokenMetadata:
    token = model.token_input
    if token is None:
        raise TypeError("the model does not take token ids: it is not a text classifier")
    return token


def model_device(model: TextClassifier) -> torch.device:
    parameter = next(as_module(model).parameters(), None)
    return parameter.device if parameter is not None else torch.device("cpu")


@dataclass(frozen=True)
class TokenShape:
    vocab_size: int
    embedding_dim: int
    max_length: int | None = None


def full_mask(ids: Tensor, attention_mask: Tensor | None) -> Tensor:
    """The mask as floats [B, T, 1]; all ones when none is given."""
    if attention_mask is None:
        return torch.ones((*ids.shape[:2], 1), dtype=torch.float32, device=ids.device)
    return attention_mask.to(dtype=torch.float32).unsqueeze(-1)


class EmbeddingBagClassifier(nn.Module):
    """Embedding, mean over the real tokens, one linear layer."""

    def __init__(self, vocab_size: int, embedding_dim: int, num_classes: int) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embedding_dim)
        self.output = nn.Linear(embedding_dim, num_classes)
        self.token_input = TokenShape(vocab_size, embedding_dim)
        self.num_classes = num_classes

    def embed(self, ids: Tensor) -> Tensor:
        return self.embedding(ids.long())

    def classify_embedded(
        self, embedded: Tensor, attention_mask: Tensor | None = None, *, ids: Tensor | None = None
    ) -> Tensor:
        mask = full_mask(embedded, attention_mask)
        pooled = (embedded * mask).sum(dim=1) / mask.sum(dim=1).clamp_min(1.0)
        return self.output(pooled)

    def forward(self, ids: Tensor, attention_mask: Tensor | None = None) -> Tensor:
        return self.classify_embedded(self.embed(ids), attention_mask, ids=ids)


class KimCnnClassifier(nn.Module):
    """Kim (2014): embedding, parallel 1-d convolutions of several widths, max over the real
    positions, one linear layer."""

    def __init__(
        self,
        vocab_size: int,
        embedding_dim: int,
        num_classes: int,
        *,
        widths: Sequence[int] = (3, 5),
        channels: int = 32,
    ) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embedding_dim)
        self.convolutions = nn.ModuleList(
            nn.Conv1d(embedding_dim, channels, width, padding="same") for width in widths
        )
        self.output = nn.Linear(channels * len(widths), num_classes)
        self.channels = channels
        self.token_input = TokenShape(vocab_size, embedding_dim)
        self.num_classes = num_classes

    def embed(self, ids: Tensor) -> Tensor:
        return self.embedding(ids.long())

    def classify_embedded(
        self, embedded: Tensor, attention_mask: Tensor | None = None, *, ids: Tensor | None = None
    ) -> Tensor:
        mask = full_mask(embedded, attention_mask)
        channels_first = (embedded * mask).transpose(1, 2)
        padding = (mask.transpose(1, 2) == 0).expand(-1, self.channels, -1)
        pooled = []
        for convolution in self.convolutions:
            features = torch.relu(convolution(channels_first))
            pooled.append(features.masked_fill(padding, 0.0).amax(dim=2))
        return self.output(torch.cat(pooled, dim=1))

    def forward(self, ids: Tensor, attention_mask: Tensor | None = None) -> Tensor:
        return self.classify_embedded(self.embed(ids), attention_mask, ids=ids)


def export_token_classifier(model: nn.Module, path: Path, *, opset: int = 17) -> Path:
    """Write ``model`` as ONNX the way users' torch exports look: int64 ``input_ids`` and
    ``attention_mask`` of any batch and length in, ``logits`` out. For tests and benchmarks,
    which need a model as a user would send it."""
    ids = torch.ones(2, 6, dtype=torch.int64)
    mask = torch.ones(2, 6, dtype=torch.int64)
    torch.onnx.export(
        model.eval(),
        (ids, mask),
        str(path),
        input_names=["input_ids", "attention_mask"],
        output_names=["logits"],
        dynamic_axes={
            "input_ids": {0: "batch", 1: "sequence"},
            "attention_mask": {0: "batch", 1: "sequence"},
            "logits": {0: "batch"},
        },
        opset_version=opset,
        dynamo=False,
    )
    return path
