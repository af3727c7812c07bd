"""What the text benchmarks share: the word-level tokenizer learnt from the training texts and
the plain Kim CNN a user would send, trained by cross-entropy alone."""

from __future__ import annotations

from pathlib import Path

import torch
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers

from workers.engine.text.data import TextDataset
from workers.engine.text.model import KimCnnClassifier
from workers.engine.text.tokenizer import TextTokenizer, load_tokenizer
from workers.engine.text.training import CleanStep, Encoder, split_validation, train_text
from workers.engine.training.schedules import one_cycle

MAX_LENGTH = 64
EMBEDDING_DIM = 64
PLAIN_EPOCHS = 8
PLAIN_LR = 3e-3


def word_tokenizer(
    texts: tuple[str, ...], path: Path, *, max_length: int | None = None
) -> TextTokenizer:
    """Word level, lower case, every word of ``texts`` in the vocabulary, saved to ``path``;
    cut at ``max_length`` tokens when given."""
    tokenizer = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.Lowercase()
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.train_from_iterator(
        texts, trainers.WordLevelTrainer(special_tokens=["[PAD]", "[UNK]"], min_frequency=1)
    )
    if max_length is not None:
        tokenizer.enable_truncation(max_length)
    tokenizer.save(str(path))
    return load_tokenizer(path)


def kim_cnn(tokenizer: TextTokenizer, seed: int, dim: int = EMBEDDING_DIM) -> KimCnnClassifier:
    """A fresh two-class Kim CNN over ``tokenizer``'s vocabulary (convolutions of widths 3 and 5,
    64 channels)."""
    torch.manual_seed(seed)
    return KimCnnClassifier(tokenizer.max_id + 1, dim, 2, channels=64)


def plain_model(
    train: TextDataset, tokenizer: TextTokenizer, seed: int, *, max_length: int = MAX_LENGTH
) -> KimCnnClassifier:
    """The model a user would send: the Kim CNN trained with cross-entropy by the engine's own
    text loop, Adam on a one-cycle schedule, 10% of the texts held out."""
    model = kim_cnn(tokenizer, seed)
    encoder = Encoder(tokenizer, max_length)
    data = split_validation(train.texts, train.labels, encoder, share=0.1, seed=seed)
    train_text(
        model,
        data,
        CleanStep(),
        torch.optim.Adam(model.parameters(), lr=PLAIN_LR),
        PLAIN_EPOCHS,
        lr=one_cycle(PLAIN_LR, PLAIN_EPOCHS),
        generator=torch.Generator().manual_seed(seed),
    )
    return model.eval()
