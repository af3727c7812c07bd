"""A2T-style augmentation (Yoo and Qi 2021): cheap gradient-guided synonym substitution.

For each text, one backward pass ranks the words by the gradient norm of the loss at their
tokens' embeddings; the most important words, up to a share of the text's words, are each
replaced by the synonym whose embedding change raises the loss most to first order
(``(mean e(synonym) - mean e(word)) . sum of the word's token gradients``), if any raises it.
No model query per candidate: that is what makes it cheap enough to run on every batch.

This is training code: it shares nothing with the scoring attacks in
:mod:`workers.engine.text.attacks` (a model is never graded by the code that trained it), only
the WordNet table, which defines what a synonym is.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from tokenizers import Encoding
from torch import Tensor

from workers.engine.text.model import TextClassifier, as_module, model_device
from workers.engine.text.synonyms import substitutes
from workers.engine.text.training.batches import Encoder, TextBatch
from workers.engine.text.training.steps import TextStep

LETTERS = re.compile(r"[^\W\d_]+")
"""A word for substitution: a run of letters (WordNet has no entries with digits)."""

Synonyms = Callable[[str], Sequence[str]]


@dataclass(frozen=True)
class Substitution:
    start: int
    end: int
    original: str
    replacement: str


@dataclass(frozen=True)
class Augmented:
    text: str
    substitutions: tuple[Substitution, ...]


def written_like(replacement: str, original: str) -> str:
    if len(original) > 1 and original.isupper():
        return replacement.upper()
    if original[:1].isupper():
        return replacement[:1].upper() + replacement[1:]
    return replacement


@dataclass
class A2TAugmenter:
    """``share_of_words`` of a text's words (rounded down, at least one) may be replaced, each by
    one of ``synonyms(word)``, at most ``max_candidates`` of them considered."""

    encoder: Encoder
    synonyms: Synonyms = substitutes
    share_of_words: float = 0.2
    max_candidates: int = 16
    _pieces: dict[str, tuple[int, ...]] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        if not 0.0 < self.share_of_words <= 1.0:
            raise ValueError(f"share_of_words must lie in (0, 1], got {self.share_of_words}")

    def budget(self, words: int) -> int:
        return 0 if words == 0 else max(1, math.floor(self.share_of_words * words + 1e-9))

    def augment(
        self, model: TextClassifier, texts: Sequence[str], labels: Tensor
    ) -> list[Augmented]:
        encodings = self.encoder.encodings(texts)
        embedded, grads, offsets = self._gradients(model, encodings, labels)
        return [
            self._substitute(model, text, encoding, embedded[row], grads[row], offsets[row])
            for row, (text, encoding) in enumerate(zip(texts, encodings, strict=True))
        ]

    def _gradients(
        self, model: TextClassifier, encodings: list[Encoding], labels: Tensor
    ) -> tuple[Tensor, Tensor, list[int]]:
        """Embeddings and loss gradients [B, T, D], and where each row's tokens start."""
        ids_array, mask_array = self.encoder.pad([encoding.ids for encoding in encodings])
        device = model_device(model)
        ids = torch.from_numpy(ids_array).to(device)
        mask = torch.from_numpy(mask_array).to(device)
        module = as_module(model)
        was_training = module.training
        module.eval()
        try:
            embedded = model.embed(ids).detach().requires_grad_(True)
            logits = model.classify_embedded(embedded, mask, ids=ids)
            loss = F.cross_entropy(logits.float(), labels.to(device), reduction="sum")
            (grads,) = torch.autograd.grad(loss, embedded)
        finally:
            module.train(was_training)
        width = ids_array.shape[1]
        starts = [
            width - len(encoding.ids) if self.encoder.pads_left else 0 for encoding in encodings
        ]
        return embedded.detach(), grads, starts

    def _substitute(
        self,
        model: TextClassifier,
        text: str,
        encoding: Encoding,
        embedded: Tensor,
        grads: Tensor,
        start: int,
    ) -> Augmented:
        words = list(LETTERS.finditer(text))
        ranked: list[tuple[float, re.Match[str], list[int], list[str]]] = []
        for word in words:
            positions = _token_positions(encoding, word.start(), word.end(), start)
            candidates = self._candidates(word.group())
            if positions and candidates:
                importance = float(grads[positions].norm(dim=-1).sum())
                ranked.append((importance, word, positions, candidates))
        ranked.sort(key=lambda entry: -entry[0])
        chosen: list[Substitution] = []
        for _, word, positions, candidates in ranked[: self.budget(len(words))]:
            replacement = self._best(model, candidates, embedded[positions], grads[positions])
            if replacement is not None:
                written = written_like(replacement, word.group())
                chosen.append(Substitution(word.start(), word.end(), word.group(), written))
        return Augmented(_apply(text, chosen), tuple(sorted(chosen, key=lambda s: s.start)))

    def _candidates(self, word: str) -> list[str]:
        lower = word.lower()
        distinct = dict.fromkeys(s for s in self.synonyms(lower) if s and s != lower)
        return list(distinct)[: self.max_candidates]

    def _best(
        self, model: TextClassifier, candidates: list[str], embedded: Tensor, grads: Tensor
    ) -> str | None:
        device = embedded.device
        gradient = grads.sum(dim=0)
        original = embedded.mean(dim=0)
        best, best_gain = None, 0.0
        with torch.no_grad():
            for candidate in candidates:
                pieces = self._token_ids(candidate)
                if not pieces:
                    continue
                replacement = model.embed(torch.tensor([pieces], device=device))[0].mean(dim=0)
                gain = float((replacement - original) @ gradient)
                if gain > best_gain:
                    best, best_gain = candidate, gain
        return best

    def _token_ids(self, word: str) -> tuple[int, ...]:
        if word not in self._pieces:
            encoding = self.encoder.tokenizer.tokenizer.encode(word, add_special_tokens=False)
            self._pieces[word] = tuple(encoding.ids)
        return self._pieces[word]


def _token_positions(encoding: Encoding, begin: int, end: int, start: int) -> list[int]:
    """Positions (in the padded row) of the tokens that lie within characters [begin, end)."""
    return [
        start + position
        for position, ((first, last), special) in enumerate(
            zip(encoding.offsets, encoding.special_tokens_mask, strict=True)
        )
        if not special and last > first and first >= begin and last <= end
    ]


def _apply(text: str, substitutions: Sequence[Substitution]) -> str:
    pieces, at = [], 0
    for substitution in sorted(substitutions, key=lambda s: s.start):
        pieces.append(text[at : substitution.start])
        pieces.append(substitution.replacement)
        at = substitution.end
    pieces.append(text[at:])
    return "".join(pieces)


@dataclass
class A2TStep:
    """Adds the A2T-augmented copies of a ``share`` of each batch to it, then runs ``inner``
    on the enlarged batch (plain cross-entropy for A2T itself, or an embedding-space step).
    The logits returned are those of the batch's own rows."""

    inner: TextStep
    augmenter: A2TAugmenter
    generator: torch.Generator
    share: float = 0.5

    def __call__(
        self, model: TextClassifier, batch: TextBatch, eps: float
    ) -> tuple[Tensor, Tensor]:
        count = math.ceil(self.share * len(batch.texts))
        if count == 0:
            return self.inner(model, batch, eps)
        rows = torch.randperm(len(batch.texts), generator=self.generator)[:count]
        labels = batch.labels[rows.to(batch.labels.device)]
        augmented = self.augmenter.augment(model, [batch.texts[int(r)] for r in rows], labels)
        texts = (*batch.texts, *(item.text for item in augmented))
        ids, mask = self.augmenter.encoder.encode(texts)
        device = batch.ids.device
        enlarged = TextBatch(
            texts=texts,
            ids=torch.from_numpy(ids).to(device),
            mask=torch.from_numpy(mask).to(device),
            labels=torch.cat([batch.labels, labels]),
        )
        loss, logits = self.inner(model, enlarged, eps)
        return loss, logits[: len(batch.texts)]
