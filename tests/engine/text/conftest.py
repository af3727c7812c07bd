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
