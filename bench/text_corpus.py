"""The real labelled English corpus of the text benchmarks: quotations about computing against
quotations about people, from Debian's ``fortunes`` package (BSD licence).

Install it once (nothing is downloaded at run time)::

    sudo apt-get install -y fortunes

It puts the fortune files under ``/usr/share/games/fortunes``: plain text, one quotation
after another, separated by lines holding ``%``. Class 0, *computing*, takes the files
``computers``, ``linux``, ``perl``, ``debian`` and ``linuxcookie``; class 1, *people*, takes
``people``, ``men-women`` and ``love``. That is about 3,800 quotations, balanced within a few
points, 18 words at the median; a plain embedding + CNN learns it to about 87%.

Each quotation's whitespace is collapsed to single spaces, the terminal overstriking of the
old files (``_\\bX``) is undone and other control characters (bells) are dropped; a text
that occurs twice is kept once, and one found in both classes is dropped. The split is by a
hash of the text (SHA-256), about 20% test: the same text always falls on the same side,
whatever the order of the files or the version of Python. Write the splits as JSON Lines for
``temper harden --data``::

    python bench/text_corpus.py --out text-data
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from workers.engine.text.data import TextDataset

FORTUNES_DIR = Path("/usr/share/games/fortunes")
INSTALL_COMMAND = "sudo apt-get install -y fortunes"
CLASSES = ("computing", "people")
SOURCES: dict[int, tuple[str, ...]] = {
    0: ("computers", "linux", "perl", "debian", "linuxcookie"),
    1: ("people", "men-women", "love"),
}
TEST_PERCENT = 20
_OVERSTRUCK = re.compile(r".\x08")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_SEPARATOR = re.compile(r"^%$", re.MULTILINE)


class CorpusMissing(RuntimeError):
    """The fortune files are not installed; the message says how to install them."""


@dataclass(frozen=True)
class Corpus:
    train: TextDataset
    test: TextDataset
    classes: tuple[str, ...] = CLASSES


def load_corpus(root: Path = FORTUNES_DIR) -> Corpus:
    """The deduplicated corpus, split deterministically into train and test."""
    by_text: dict[str, set[int]] = {}
    for label, names in SOURCES.items():
        for name in names:
            for text in read_fortunes(_source(root, name)):
                by_text.setdefault(text, set()).add(label)
    examples = sorted((text, labels.pop()) for text, labels in by_text.items() if len(labels) == 1)
    train = [(t, y) for t, y in examples if not in_test(t)]
    test = [(t, y) for t, y in examples if in_test(t)]
    return Corpus(train=_dataset(train), test=_dataset(test))


def _source(root: Path, name: str) -> Path:
    path = root / name
    if not path.is_file():
        raise CorpusMissing(
            f"the benchmark's text corpus is Debian's fortunes package, and {path} is missing;"
            f" install it with: {INSTALL_COMMAND}"
        )
    return path


def read_fortunes(path: Path) -> list[str]:
    """The quotations of one fortune file, cleaned, empty ones dropped."""
    raw = path.read_text(encoding="utf-8", errors="replace")
    texts = (clean(part) for part in _SEPARATOR.split(raw))
    return [text for text in texts if text]


def clean(text: str) -> str:
    while _OVERSTRUCK.search(text):
        text = _OVERSTRUCK.sub("", text)
    return " ".join(_CONTROL.sub("", text).split())


def in_test(text: str) -> bool:
    digest = hashlib.sha256(text.encode("utf-8")).digest()
    return int.from_bytes(digest[:4], "big") % 100 < TEST_PERCENT


def _dataset(examples: list[tuple[str, int]]) -> TextDataset:
    return TextDataset(
        texts=tuple(text for text, _ in examples),
        labels=np.asarray([label for _, label in examples], dtype=np.int64),
        lines=tuple(range(1, len(examples) + 1)),
    )


def write_jsonl(dataset: TextDataset, path: Path) -> Path:
    """One ``{"text": ..., "label": ...}`` a line, in the dataset's order."""
    rows: Iterable[str] = (
        json.dumps({"text": text, "label": int(label)}, ensure_ascii=False) + "\n"
        for text, label in zip(dataset.texts, dataset.labels, strict=True)
    )
    path.write_text("".join(rows), encoding="utf-8")
    return path


def describe(corpus: Corpus) -> str:
    lines = []
    for name, split in (("train", corpus.train), ("test", corpus.test)):
        counts = np.bincount(split.labels, minlength=len(corpus.classes))
        words = np.median([len(text.split()) for text in split.texts])
        per_class = ", ".join(f"{c} {n}" for c, n in zip(corpus.classes, counts, strict=True))
        lines.append(f"{name}: {len(split)} texts ({per_class}), median {words:.0f} words")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description="Write the fortunes text corpus as JSON Lines.")
    parser.add_argument("--root", type=Path, default=FORTUNES_DIR)
    parser.add_argument("--out", type=Path, default=Path("text-data"))
    args = parser.parse_args()
    try:
        corpus = load_corpus(args.root)
    except CorpusMissing as exc:
        raise SystemExit(str(exc)) from None
    args.out.mkdir(parents=True, exist_ok=True)
    write_jsonl(corpus.train, args.out / "train.jsonl")
    write_jsonl(corpus.test, args.out / "test.jsonl")
    print(describe(corpus))
    print(f"wrote {args.out / 'train.jsonl'} and {args.out / 'test.jsonl'}")


if __name__ == "__main__":
    main()
