"""Encoded mini-batches of labelled texts for training.

Training encodes every text once, with a tokenizer configured once: reconfiguring a copy per
call (what :func:`workers.engine.text.tokenizer.encode` does, fine for scoring) costs tens of
milliseconds for a large vocabulary, more than a small model's step. The ids are the same as
``encode`` gives (checked by the tests).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from tokenizers import Encoding, Tokenizer
from torch import Tensor

from workers.engine.text.tokenizer import TextTokenizer


@dataclass(frozen=True)
class TextBatch:
    texts: tuple[str, ...]
    ids: Tensor
    """int64 [B, T]."""
    mask: Tensor
    """int64 [B, T], 1 for a real token."""
    labels: Tensor

    def token_mask(self) -> Tensor:
        """The mask as floats [B, T, 1], to multiply embeddings with."""
        return self.mask.to(torch.float32).unsqueeze(-1)


class Encoder:
    """Texts to padded ids and mask, cut to ``max_length`` tokens like the scoring side."""

    def __init__(
        self, tokenizer: TextTokenizer, max_length: int, *, pad_to_max_length: bool = False
    ) -> None:
        if max_length < 1:
            raise ValueError(f"max_length must be positive, got {max_length}")
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.pad_to_max_length = pad_to_max_length
        self.pad_id = tokenizer.pad_id
        padding = tokenizer.tokenizer.padding or {}
        self.pads_left = padding.get("direction") == "left"
        self._cutting = Tokenizer.from_str(tokenizer.tokenizer.to_str())
        self._cutting.no_padding()
        self._cutting.enable_truncation(max_length)

    def encodings(self, texts: Sequence[str]) -> list[Encoding]:
        """Unpadded encodings, special tokens included, cut to ``max_length``."""
        return list(self._cutting.encode_batch(list(texts)))

    def encode(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        return self.pad([encoding.ids for encoding in self.encodings(texts)])

    def pad(self, rows: Sequence[Sequence[int]]) -> tuple[np.ndarray, np.ndarray]:
        """Rows of ids padded to the longest (or to ``max_length``): ids and mask, int64. At
        least one position wide, so that a text with no tokens reaches the model as padding."""
        width = self.max_length if self.pad_to_max_length else max(1, *map(len, rows))
        ids = np.full((len(rows), width), self.pad_id, dtype=np.int64)
        mask = np.zeros((len(rows), width), dtype=np.int64)
        for row, tokens in enumerate(rows):
            span = slice(width - len(tokens), width) if self.pads_left else slice(0, len(tokens))
            ids[row, span] = tokens
            mask[row, span] = 1
        return ids, mask


@dataclass(frozen=True)
class EncodedSplit:
    """A split of labelled texts, encoded once."""

    texts: tuple[str, ...]
    ids: np.ndarray
    mask: np.ndarray
    labels: np.ndarray

    @classmethod
    def of(
        cls, texts: Sequence[str], labels: Sequence[int] | np.ndarray, encoder: Encoder
    ) -> EncodedSplit:
        if len(texts) != len(labels):
            raise ValueError(f"{len(texts)} texts but {len(labels)} labels")
        ids, mask = encoder.encode(texts)
        return cls(tuple(texts), ids, mask, np.asarray(labels, dtype=np.int64))

    def __len__(self) -> int:
        return len(self.texts)

    def batch(self, rows: np.ndarray, device: torch.device, *, trim: bool = True) -> TextBatch:
        """The rows as a batch on ``device``, without the columns that are padding in every
        row (unless ``trim`` is off, for models of a fixed length)."""
        ids, mask = self.ids[rows], self.mask[rows]
        if trim and mask.size:
            used = np.flatnonzero(mask.any(axis=0))
            if used.size:
                ids, mask = ids[:, used[0] : used[-1] + 1], mask[:, used[0] : used[-1] + 1]
        return TextBatch(
            texts=tuple(self.texts[int(row)] for row in rows),
            ids=torch.from_numpy(np.ascontiguousarray(ids)).to(device),
            mask=torch.from_numpy(np.ascontiguousarray(mask)).to(device),
            labels=torch.from_numpy(self.labels[rows]).to(device),
        )

    def batches(
        self,
        batch_size: int,
        device: torch.device,
        *,
        generator: torch.Generator | None = None,
        trim: bool = True,
    ) -> Iterator[TextBatch]:
        """Mini-batches in a fresh shuffled order (in order without a ``generator``)."""
        if generator is None:
            order = np.arange(len(self))
        else:
            order = torch.randperm(len(self), generator=generator).numpy()
        for start in range(0, len(order), batch_size):
            yield self.batch(order[start : start + batch_size], device, trim=trim)

    def count(self, batch_size: int) -> int:
        return math.ceil(len(self) / batch_size)
