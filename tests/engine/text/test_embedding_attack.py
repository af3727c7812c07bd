"""The white-box embedding-space attack used for scoring (an upper bound, not a text attack)."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
import torch
from torch import Tensor, nn

from workers.engine.text.embedding_attack import EmbeddingAttack, run_embedding_attack
from workers.engine.text.model import EmbeddingBagClassifier, TokenShape

_IDS = np.array([[1, 2, 3, 0], [4, 5, 0, 0], [6, 7, 8, 9]])
_MASK = (np.arange(4)[None, :] < np.array([[3], [2], [4]])).astype(np.int64)


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """Tiny models on a shared 2-core machine run many times faster on one thread."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _fragile() -> EmbeddingBagClassifier:
    """Two classes separated by a hair: a small move of any embedding flips the prediction."""
    torch.manual_seed(0)
    model = EmbeddingBagClassifier(10, 4, 2)
    with torch.no_grad():
        model.output.weight.copy_(torch.tensor([[1.0, 0, 0, 0], [-1.0, 0, 0, 0]]))
        model.output.bias.zero_()
        model.embedding.weight[:, 0] = 0.01
    return model


class _Constant(nn.Module):
    """Same logits whatever the embeddings."""

    def __init__(self) -> None:
        super().__init__()
        self.embedding = nn.Embedding(10, 4)
        self.token_input = TokenShape(10, 4)

    def embed(self, ids: Tensor) -> Tensor:
        return self.embedding(ids)

    def classify_embedded(
        self, embedded: Tensor, attention_mask: Tensor | None = None, *, ids: Tensor | None = None
    ) -> Tensor:
        return torch.tensor([2.0, 0.0]).expand(embedded.shape[0], 2) + 0.0 * embedded.sum()

    def forward(self, ids: Tensor, attention_mask: Tensor | None = None) -> Tensor:
        return self.classify_embedded(self.embed(ids), attention_mask, ids=ids)


def test_a_fragile_model_is_flipped() -> None:
    result = run_embedding_attack(_fragile(), _IDS, _MASK, np.zeros(3, dtype=np.int64))
    assert result.correct.all()
    assert not result.robust.any()
    assert result.to_dict()["attack_success_rate"] == 1.0


def test_a_constant_model_is_never_flipped() -> None:
    attack = EmbeddingAttack(eps=5.0, steps=5, restarts=2)
    result = run_embedding_attack(_Constant(), _IDS, _MASK, np.zeros(3, dtype=np.int64), attack)
    assert result.robust.all()
    assert result.to_dict()["realistic"] is False


def test_misclassified_samples_are_never_robust() -> None:
    result = run_embedding_attack(_Constant(), _IDS, _MASK, np.array([0, 1, 0]))
    assert result.robust.tolist() == [True, False, True]
