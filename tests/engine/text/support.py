"""Tiny generated text data for the text tests: sentences, tokenizers trained on them in
process, and JSON Lines / CSV files."""

from __future__ import annotations

import csv
import json
import random
from collections.abc import Iterable
from pathlib import Path

from tokenizers import Tokenizer, models, pre_tokenizers, processors, trainers

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]"]
_SUBJECTS = ["the cat", "a dog", "my friend", "the bank", "our team", "this film"]
_VERBS = ["likes", "hates", "sees", "sends", "wins", "loses"]
_OBJECTS = ["the prize", "a message", "the money", "free tickets", "the game", "a gift"]
_ENDINGS = ["today", "again", "quickly", "at night", "for you", "now"]


def sentences(count: int, seed: int = 0) -> list[str]:
    """``count`` short English-like sentences from a fixed grammar."""
    rng = random.Random(seed)
    return [
        " ".join(rng.choice(part) for part in (_SUBJECTS, _VERBS, _OBJECTS, _ENDINGS))
        for _ in range(count)
    ]


def labelled(count: int, seed: int = 0) -> list[dict[str, object]]:
    """Sentences labelled 1 when they mention money or prizes, else 0."""
    return [
        {"text": text, "label": int(any(w in text for w in ("money", "prize", "free")))}
        for text in sentences(count, seed)
    ]


def word_level_tokenizer(corpus: Iterable[str]) -> Tokenizer:
    """A word-level tokenizer with [PAD]=0, [UNK]=1, [CLS]=2, [SEP]=3 that wraps each text in
    [CLS] ... [SEP] and has no padding section."""
    tokenizer = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.train_from_iterator(corpus, trainers.WordLevelTrainer(special_tokens=SPECIAL_TOKENS))
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)]
    )
    return tokenizer


def word_piece_tokenizer(corpus: Iterable[str], pad_token: str = "<pad>") -> Tokenizer:
    """A small WordPiece tokenizer whose padding token is ``pad_token``, not at id 0."""
    tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.train_from_iterator(
        corpus,
        trainers.WordPieceTrainer(vocab_size=200, special_tokens=["[UNK]", "[CLS]", pad_token]),
    )
    return tokenizer


def write_jsonl(path: Path, rows: Iterable[object]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def write_csv(path: Path, rows: Iterable[dict[str, object]]) -> Path:
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["text", "label"])
        writer.writeheader()
        writer.writerows(rows)
    return path


def export_text_model(path: Path, vocab_size: int) -> Path:
    """A tiny embedding-bag classifier of 2 classes as ONNX, as torch.onnx.export writes it.
    torch is imported here only: the other helpers serve tests that run without it."""
    import torch

    from workers.engine.text.model import EmbeddingBagClassifier, export_token_classifier

    torch.manual_seed(0)
    return export_token_classifier(EmbeddingBagClassifier(vocab_size, 16, 2), path)
