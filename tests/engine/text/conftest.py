"""Fixtures of the text tests: tokenizers trained in process and saved as tokenizer.json."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.engine.text import support


@pytest.fixture
def word_level_json(tmp_path: Path) -> Path:
    path = tmp_path / "tokenizer.json"
    support.word_level_tokenizer(support.sentences(50)).save(str(path))
    return path


@pytest.fixture
def word_piece_json(tmp_path: Path) -> Path:
    path = tmp_path / "wordpiece.json"
    support.word_piece_tokenizer(support.sentences(50)).save(str(path))
    return path


@pytest.fixture
def labelled_jsonl(tmp_path: Path) -> tuple[Path, Path]:
    """Train and test JSON Lines of generated sentences, labelled 1 when they mention money,
    prizes or free things."""
    train = support.write_jsonl(tmp_path / "train.jsonl", support.labelled(80, seed=1))
    test = support.write_jsonl(tmp_path / "test.jsonl", support.labelled(40, seed=2))
    return train, test
