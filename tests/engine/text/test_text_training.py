"""Hardening text classifiers: the per-token ball, the steps, the loop, A2T and distillation."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from tests.engine.text import support
from workers.engine.text import training
from workers.engine.text.model import EmbeddingBagClassifier, KimCnnClassifier, TextClassifier
from workers.engine.text.synonyms import synonyms
from workers.engine.text.tokenizer import TextTokenizer, encode, load_tokenizer
from workers.engine.text.training import (
    A2TAugmenter,
    A2TStep,
    CleanStep,
    EmbeddingPgdStep,
    EmbeddingTradesStep,
    EncodedSplit,
    Encoder,
    TextBatch,
    accuracy,
    distill_text,
    split_validation,
    train_text,
)
from workers.engine.text.training.steps import embedding_ascent


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """Tiny models on a shared 2-core machine run many times faster on one thread."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def tokenizer(word_level_json: Path) -> TextTokenizer:
    return load_tokenizer(word_level_json)


def _corpus(count: int = 200) -> tuple[list[str], np.ndarray]:
    rows = support.labelled(count)
    return [str(r["text"]) for r in rows], np.array([int(str(r["label"])) for r in rows])


def _batch(tokenizer: TextTokenizer, count: int = 16) -> TextBatch:
    texts, labels = _corpus(count)
    encoded = EncodedSplit.of(texts, labels, Encoder(tokenizer, 16))
    return encoded.batch(np.arange(count), torch.device("cpu"))


def _model(tokenizer: TextTokenizer, seed: int = 0) -> EmbeddingBagClassifier:
    torch.manual_seed(seed)
    return EmbeddingBagClassifier(tokenizer.max_id + 1, 8, 2)


@pytest.mark.parametrize("fixed", [False, True], ids=["longest", "fixed-length"])
def test_encoder_gives_the_ids_that_encode_gives(tokenizer: TextTokenizer, fixed: bool) -> None:
    texts = ["the cat", "a dog sends free tickets for you now and again", "my friend wins"]
    expected = encode(tokenizer, texts, 6, pad_to_max_length=fixed)
    ids, mask = Encoder(tokenizer, 6, pad_to_max_length=fixed).encode(texts)
    np.testing.assert_array_equal(ids, expected.ids)
    np.testing.assert_array_equal(mask, expected.attention_mask)


def test_perturbation_stays_in_each_tokens_ball_and_leaves_padding(
    tokenizer: TextTokenizer,
) -> None:
    batch = _batch(tokenizer)
    # pad the batch with extra padding columns so every row has padding
    pad = torch.full((len(batch.texts), 3), tokenizer.pad_id)
    batch = TextBatch(
        batch.texts,
        torch.cat([batch.ids, pad], 1),
        torch.cat([batch.mask, torch.zeros_like(pad)], 1),
        batch.labels,
    )
    model = _model(tokenizer)
    embedded = model.embed(batch.ids).detach()
    delta = embedding_ascent(
        model,
        embedded,
        batch,
        lambda logits: F.cross_entropy(logits, batch.labels, reduction="sum"),
        eps=0.2,
        steps=4,
        step_factor=2.5,
        generator=torch.Generator().manual_seed(0),
    )
    real = batch.mask.bool()
    mean_norm = embedded.norm(dim=-1)[real].mean()
    norms = delta.norm(dim=-1)
    assert norms[real].max() <= 0.2 * mean_norm * (1 + 1e-5)
    assert norms[real].max() > 0.1 * mean_norm
    assert torch.count_nonzero(delta[~real]) == 0


def test_the_pgd_step_sends_gradients_to_the_embedding_table(tokenizer: TextTokenizer) -> None:
    model = _model(tokenizer)
    step = EmbeddingPgdStep(torch.Generator().manual_seed(0), steps=2)
    loss, logits = step(model, _batch(tokenizer), 0.1)
    loss.backward()
    assert logits.shape == (16, 2)
    assert model.embedding.weight.grad is not None
    assert model.embedding.weight.grad.abs().sum() > 0
    assert model.output.weight.grad is not None


def test_training_with_the_pgd_step_lowers_the_adversarial_loss(tokenizer: TextTokenizer) -> None:
    model = _model(tokenizer)
    batch = _batch(tokenizer, 32)
    step = EmbeddingPgdStep(torch.Generator().manual_seed(0), steps=2)
    optimiser = torch.optim.Adam(model.parameters(), lr=0.05)
    before, _ = step(model, batch, 0.1)
    for _ in range(25):
        loss, _ = step(model, batch, 0.1)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    after, _ = step(model, batch, 0.1)
    assert float(after.detach()) < 0.5 * float(before.detach())


def test_the_trades_step_is_finite_and_trains_the_embeddings(tokenizer: TextTokenizer) -> None:
    model = _model(tokenizer)
    model.train()
    loss, _ = EmbeddingTradesStep(torch.Generator().manual_seed(0), steps=2)(
        model, _batch(tokenizer), 0.1
    )
    loss.backward()
    assert torch.isfinite(loss)
    assert model.training
    assert model.embedding.weight.grad is not None


def test_the_loop_keeps_the_epoch_with_the_best_validation_accuracy(
    tokenizer: TextTokenizer,
) -> None:
    texts, labels = _corpus(200)
    data = split_validation(texts, labels, Encoder(tokenizer, 16), share=0.2)
    model = KimCnnClassifier(tokenizer.max_id + 1, 8, 2, channels=8)
    optimiser = torch.optim.Adam(model.parameters(), lr=0.02)
    outcome = train_text(model, data, CleanStep(), optimiser, 4, batch_size=16)
    best = max(outcome.history, key=lambda e: (e.val_accuracy, e.epoch))
    assert outcome.selected_epoch == best.epoch
    assert accuracy(model, data.validation) == best.val_accuracy
    assert best.val_accuracy > 0.9


def test_a2t_substitutes_only_table_synonyms_within_the_budget(tokenizer: TextTokenizer) -> None:
    texts, labels = _corpus(40)
    augmenter = A2TAugmenter(Encoder(tokenizer, 16), share_of_words=0.25)
    augmented = augmenter.augment(_model(tokenizer), texts, torch.from_numpy(labels))
    assert sum(len(item.substitutions) for item in augmented) > 0
    for text, item in zip(texts, augmented, strict=True):
        assert len(item.substitutions) <= augmenter.budget(len(text.split()))
        for substitution in item.substitutions:
            assert text[substitution.start : substitution.end] == substitution.original
            assert substitution.replacement.lower() in synonyms(substitution.original)


def test_the_a2t_step_trains_on_the_batch_and_its_augmented_copies(
    tokenizer: TextTokenizer,
) -> None:
    seen: list[int] = []

    def inner(model: TextClassifier, batch: TextBatch, eps: float) -> tuple[Tensor, Tensor]:
        seen.append(len(batch.texts))
        return CleanStep()(model, batch, eps)

    step = A2TStep(inner, A2TAugmenter(Encoder(tokenizer, 16)), torch.Generator(), share=0.5)
    loss, logits = step(_model(tokenizer), _batch(tokenizer), 0.0)
    assert seen == [24]
    assert logits.shape == (16, 2)
    assert torch.isfinite(loss)


def test_distillation_trains_a_teacher_then_a_student_on_its_soft_labels(
    tokenizer: TextTokenizer,
) -> None:
    texts, labels = _corpus(120)
    data = split_validation(texts, labels, Encoder(tokenizer, 16), share=0.25)
    model = _model(tokenizer)
    student, teacher = distill_text(
        model,
        data,
        lambda module: torch.optim.Adam(module.parameters(), lr=0.05),
        3,
        temperature=10.0,
    )
    assert student.model is model
    assert teacher.model is not model
    assert max(e.val_accuracy for e in student.history) > 0.8


def test_distillation_says_in_its_notes_what_it_buys_against_text_attacks(
    tokenizer: TextTokenizer,
) -> None:
    texts, labels = _corpus(40)
    data = split_validation(texts, labels, Encoder(tokenizer, 16), share=0.25)
    student, _ = distill_text(
        _model(tokenizer), data, lambda m: torch.optim.Adam(m.parameters()), 1, temperature=10.0
    )
    assert any("Soll et al. 2019" in note for note in student.notes)


def test_training_imports_nothing_of_the_scoring_attacks() -> None:
    package = Path(training.__file__).parent
    imported = set()
    for source in package.glob("*.py"):
        for node in ast.walk(ast.parse(source.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                imported.add(node.module)
            elif isinstance(node, ast.Import):
                imported.update(alias.name for alias in node.names)
    assert "workers.engine.text.synonyms" in imported
    assert not {name for name in imported if name.startswith("workers.engine.text.attacks")}
    assert "workers.engine.text.embedding_attack" not in imported
