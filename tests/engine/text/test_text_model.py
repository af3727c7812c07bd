"""The reference text classifiers meet the TextClassifier contract."""

from __future__ import annotations

import pytest
import torch

from workers.engine.text.model import (
    EmbeddingBagClassifier,
    KimCnnClassifier,
    TextClassifier,
    as_module,
    metadata,
)


def _models() -> list[TextClassifier]:
    torch.manual_seed(0)
    return [EmbeddingBagClassifier(30, 8, 3), KimCnnClassifier(30, 8, 3, channels=4)]


@pytest.mark.parametrize("model", _models(), ids=["bag", "cnn"])
def test_forward_is_classify_embedded_of_embed(model: TextClassifier) -> None:
    ids = torch.randint(0, 30, (4, 7))
    mask = torch.ones_like(ids)
    mask[0, 5:] = 0
    expected = model.classify_embedded(model.embed(ids), mask, ids=ids)
    assert torch.allclose(model.forward(ids, mask), expected)


@pytest.mark.parametrize("model", _models(), ids=["bag", "cnn"])
def test_padding_positions_do_not_change_the_logits(model: TextClassifier) -> None:
    ids = torch.randint(1, 30, (2, 5))
    padded = torch.cat([ids, torch.randint(0, 30, (2, 4))], dim=1)
    mask = torch.cat([torch.ones(2, 5), torch.zeros(2, 4)], dim=1).long()
    as_module(model).eval()
    assert torch.allclose(model.forward(ids), model.forward(padded, mask), atol=1e-6)


@pytest.mark.parametrize("model", _models(), ids=["bag", "cnn"])
def test_metadata_describes_the_embedding_table(model: TextClassifier) -> None:
    token = metadata(model)
    assert model.embed(torch.tensor([[0, 29]])).shape == (1, 2, token.embedding_dim)
    assert (token.vocab_size, token.max_length) == (30, None)
