"""The victim the discrete attacks query: texts in, the model's softmax out."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from tests.engine.text import support
from workers.engine.models.onnx import load_onnx_classifier
from workers.engine.text.model import (
    EmbeddingBagClassifier,
    KimCnnClassifier,
    export_token_classifier,
)
from workers.engine.text.tokenizer import encode, load_tokenizer
from workers.engine.text.victim import TextVictim


def _setup(word_level_json: Path) -> tuple[EmbeddingBagClassifier, TextVictim]:
    tokenizer = load_tokenizer(word_level_json)
    torch.manual_seed(0)
    model = EmbeddingBagClassifier(tokenizer.max_id + 1, 8, 3)
    return model, TextVictim(model, tokenizer, max_length=6, batch_size=3)


def test_probabilities_are_the_models_softmax(word_level_json: Path) -> None:
    model, victim = _setup(word_level_json)
    texts = support.sentences(7)
    encoded = encode(victim.tokenizer, texts, 6)
    with torch.no_grad():
        logits = model(torch.from_numpy(encoded.ids), torch.from_numpy(encoded.attention_mask))
    expected = torch.softmax(logits.double(), dim=1).numpy()
    np.testing.assert_allclose(victim(texts), expected, atol=1e-6)


def test_scoring_leaves_the_model_in_its_mode_and_counts_truncation(
    word_level_json: Path,
) -> None:
    model, victim = _setup(word_level_json)
    model.train()
    victim(["the cat likes the prize today", "a dog"])
    assert model.training
    assert victim.truncated == 1


def test_a_text_with_no_tokens_reaches_the_model_as_one_masked_position(
    tmp_path: Path,
) -> None:
    """Deleting the only word of a text (the attacks' importance ranking does) leaves nothing
    to encode; an exported convolution (auto_pad SAME_UPPER) needs at least one position."""
    plain = support.word_level_tokenizer(support.sentences(20))
    plain.post_processor = None
    plain.save(str(tmp_path / "tokenizer.json"))
    tokenizer = load_tokenizer(tmp_path / "tokenizer.json")
    torch.manual_seed(0)
    cnn = KimCnnClassifier(tokenizer.max_id + 1, 8, 2, channels=4)
    model = load_onnx_classifier(export_token_classifier(cnn, tmp_path / "cnn.onnx"))
    victim = TextVictim(model, tokenizer, max_length=6)
    probabilities = victim([""])
    assert probabilities.shape == (1, 2)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-6)
