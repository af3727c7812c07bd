"""bench/text_corpus.py: the fortunes corpus read from where Debian installs it."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.text_corpus import (
    FORTUNES_DIR,
    SOURCES,
    CorpusMissing,
    clean,
    in_test,
    load_corpus,
    read_fortunes,
    write_jsonl,
)
from workers.engine.text.data import load_text_dataset


@pytest.fixture
def fortunes(tmp_path: Path) -> Path:
    """A fortunes folder with every source file: one quotation each, computing or people."""
    for label, names in SOURCES.items():
        topic = "the compiler crashed" if label == 0 else "my friend laughed"
        for name in names:
            (tmp_path / name).write_text(f"{topic} in {name}\n%\n")
    return tmp_path


def test_quotations_are_split_on_percent_lines(tmp_path: Path) -> None:
    path = tmp_path / "people"
    path.write_text("First one,\nover two lines.\n%\nSecond one.\n%\n\n%\n")
    assert read_fortunes(path) == ["First one, over two lines.", "Second one."]


def test_overstriking_and_control_characters_are_removed() -> None:
    assert clean("_\bb_\bo_\bl_\bd and\x07 plain\t text\n") == "bold and plain text"


def test_each_source_file_gives_its_class(fortunes: Path) -> None:
    corpus = load_corpus(fortunes)
    texts = corpus.train.texts + corpus.test.texts
    labels = list(corpus.train.labels) + list(corpus.test.labels)
    assert dict(zip(texts, labels, strict=True))["the compiler crashed in perl"] == 0
    assert dict(zip(texts, labels, strict=True))["my friend laughed in love"] == 1
    assert len(texts) == sum(len(names) for names in SOURCES.values())


def test_a_text_in_both_classes_is_dropped_and_a_repeated_one_kept_once(fortunes: Path) -> None:
    (fortunes / "linux").write_text("Shared words.\n%\nTwice.\n%\nTwice.\n%\n")
    (fortunes / "love").write_text("Shared words.\n%\n")
    corpus = load_corpus(fortunes)
    texts = corpus.train.texts + corpus.test.texts
    assert "Shared words." not in texts
    assert texts.count("Twice.") == 1


def test_the_split_depends_on_the_text_alone(fortunes: Path) -> None:
    corpus = load_corpus(fortunes)
    assert all(in_test(text) for text in corpus.test.texts)
    assert not any(in_test(text) for text in corpus.train.texts)


def test_a_missing_corpus_says_how_to_install_it(tmp_path: Path) -> None:
    with pytest.raises(CorpusMissing, match="apt-get install -y fortunes"):
        load_corpus(tmp_path)


def test_the_splits_are_written_as_json_lines_the_engine_reads(
    fortunes: Path, tmp_path: Path
) -> None:
    corpus = load_corpus(fortunes)
    dataset = load_text_dataset(write_jsonl(corpus.train, tmp_path / "train.jsonl"))
    assert dataset.texts == corpus.train.texts
    assert dataset.labels.tolist() == corpus.train.labels.tolist()


@pytest.mark.skipif(
    not (FORTUNES_DIR / "computers").is_file(),
    reason="Debian's fortunes package is not installed (apt-get install -y fortunes)",
)
def test_the_installed_corpus_is_large_balanced_and_about_one_fifth_test() -> None:
    corpus = load_corpus()
    total = len(corpus.train) + len(corpus.test)
    assert total > 3_000
    assert 0.15 < len(corpus.test) / total < 0.25
    assert 0.4 < corpus.train.labels.mean() < 0.6
