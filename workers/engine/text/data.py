"""Reading and checking labelled text: JSON Lines or CSV.

JSON Lines holds one ``{"text": str, "label": int}`` object a line (other keys are ignored,
blank lines skipped); CSV has a header row naming ``text`` and ``label`` columns. Every
refusal names the line and what is wrong with it. Torch-free, so the server can check an
upload before it queues a job.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from workers.engine.errors import InvalidData

MAX_FILE_BYTES = 512 * 2**20
"""Largest text dataset read by default (512 MiB)."""
MAX_EXAMPLES = 2_000_000
"""Most examples read by default: non-blank lines of JSON Lines, rows of CSV."""
MAX_TEXT_CHARS = 100_000
"""Longest text accepted, in characters; texts longer than the model's maximum number of
tokens are still accepted and truncated when encoded (the report says how many)."""
MAX_LINE_BYTES = 2 * 2**20
"""Longest line of a file read (2 MiB): a text of :data:`MAX_TEXT_CHARS` characters takes at
most 1.2 MB even with every character escaped in JSON, which leaves room for other keys. A
longer line is refused after reading this much of it, so that a file of one 100 MB line costs
the reader 2 MiB, not the several copies of it that decoding and parsing would make."""

TextFormat = Literal["jsonl", "csv"]
_SUFFIXES: dict[str, TextFormat] = {
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
    ".csv": "csv",
}
_INTEGER = re.compile(r"[+-]?\d+")
_SURROGATE = re.compile("[\ud800-\udfff]")
"""A code point of a surrogate half: JSON can escape one alone (``\\ud800``), which no UTF-8
text holds and the tokenizer cannot encode."""
_MAX_LABEL_CHARS = 40


@dataclass(frozen=True)
class Limits:
    max_file_bytes: int = MAX_FILE_BYTES
    max_examples: int = MAX_EXAMPLES
    max_text_chars: int = MAX_TEXT_CHARS
    max_line_bytes: int = MAX_LINE_BYTES


@dataclass(frozen=True)
class TextDataset:
    texts: tuple[str, ...]
    labels: np.ndarray
    """Integer labels, int64, shape (N,)."""
    lines: tuple[int, ...]
    """The line of the file each example starts on (1-based), for messages."""

    def __len__(self) -> int:
        return len(self.texts)

    def take(self, rows: np.ndarray) -> TextDataset:
        """The examples at ``rows``, in that order."""
        return TextDataset(
            tuple(self.texts[int(r)] for r in rows),
            self.labels[rows],
            tuple(self.lines[int(r)] for r in rows),
        )


def load_text_dataset(
    path: Path, text_format: TextFormat | None = None, limits: Limits = Limits()
) -> TextDataset:
    """Read a JSON Lines or CSV file of labelled texts (the format from the file's suffix, or
    from its first character when the suffix says nothing)."""
    size = path.stat().st_size
    if size > limits.max_file_bytes:
        raise InvalidData(
            f"the text dataset is too large: {size:,} bytes, the limit is {limits.max_file_bytes:,}"
        )
    chosen = text_format or detect_format(path)
    reader = _read_jsonl if chosen == "jsonl" else _read_csv
    texts: list[str] = []
    labels: list[int] = []
    lines: list[int] = []
    for line_number, text, label in reader(path, limits):
        if len(texts) == limits.max_examples:
            raise InvalidData(
                f"the text dataset has more than {limits.max_examples:,} examples (line"
                f" {line_number}); split it or sample it"
            )
        texts.append(text)
        labels.append(label)
        lines.append(line_number)
    if not texts:
        raise InvalidData("the text dataset holds no examples")
    return TextDataset(tuple(texts), np.asarray(labels, dtype=np.int64), tuple(lines))


def detect_format(path: Path) -> TextFormat:
    by_suffix = _SUFFIXES.get(path.suffix.lower())
    if by_suffix is not None:
        return by_suffix
    with path.open("rb") as handle:
        start = handle.read(4096).lstrip(b"\xef\xbb\xbf \t\r\n")
    return "jsonl" if start[:1] in (b"{", b"[") else "csv"


def check_labels(dataset: TextDataset, num_classes: int) -> None:
    """Refuse labels the model has no output for, naming the first offending line."""
    outside = np.flatnonzero(dataset.labels >= num_classes)
    if outside.size:
        first = int(outside[0])
        raise InvalidData(
            f"line {dataset.lines[first]}: label {int(dataset.labels[first])} is out of range"
            f" for a model with {num_classes} classes (labels 0 to {num_classes - 1});"
            f" {outside.size} example(s) have such labels"
        )


def _decoded_lines(path: Path, limits: Limits) -> Iterator[tuple[int, str]]:
    """The file's lines as text, numbered from 1; a line that is not UTF-8, or longer than
    ``limits.max_line_bytes`` (read no further than that), is refused."""
    with path.open("rb") as handle:
        number = 0
        while raw := handle.readline(limits.max_line_bytes + 1):
            number += 1
            if len(raw) > limits.max_line_bytes:
                raise InvalidData(
                    f"line {number} is longer than {limits.max_line_bytes:,} bytes; a text may"
                    f" have at most {limits.max_text_chars:,} characters"
                )
            try:
                text = raw.decode("utf-8-sig" if number == 1 else "utf-8")
            except UnicodeDecodeError as exc:
                raise InvalidData(
                    f"line {number}: not UTF-8 text (byte 0x{raw[exc.start]:02x} at column"
                    f" {exc.start + 1}); save the file as UTF-8"
                ) from exc
            yield number, text


def _read_jsonl(path: Path, limits: Limits) -> Iterator[tuple[int, str, int]]:
    first = True
    for number, line in _decoded_lines(path, limits):
        if not line.strip():
            continue
        if first and line.lstrip().startswith("["):
            raise InvalidData(
                f"line {number}: the file starts a JSON array; send JSON Lines instead, one"
                ' object a line like {"text": "...", "label": 0} and no enclosing brackets'
            )
        first = False
        try:
            record = json.loads(line)
        except (ValueError, RecursionError) as exc:
            reason = _json_error(exc)
            raise InvalidData(
                f"line {number}: not JSON ({reason}); each line must be one object like"
                ' {"text": "...", "label": 0}'
            ) from exc
        if not isinstance(record, dict):
            raise InvalidData(
                f"line {number}: a JSON {type(record).__name__}, not an object like"
                ' {"text": "...", "label": 0}'
            )
        for key in ("text", "label"):
            if key not in record:
                raise InvalidData(f"line {number}: missing key {key!r}")
        yield number, _text(record["text"], number, limits), _json_label(record["label"], number)


def _read_csv(path: Path, limits: Limits) -> Iterator[tuple[int, str, int]]:
    lines = (line for _, line in _decoded_lines(path, limits))
    reader = csv.reader(lines)
    try:
        header = next(reader, None)
        if header is None:
            raise InvalidData("the CSV file is empty; it needs a header row 'text,label'")
        columns = [name.strip().lower() for name in header]
        missing = [name for name in ("text", "label") if name not in columns]
        if missing:
            raise InvalidData(
                f"line 1: the CSV header must name the columns 'text' and 'label'; missing"
                f" {', '.join(repr(m) for m in missing)} (found {header})"
            )
        text_at, label_at = columns.index("text"), columns.index("label")
        start = reader.line_num + 1
        for row in reader:
            number, start = start, reader.line_num + 1
            if not row:
                continue
            if len(row) != len(columns):
                raise InvalidData(
                    f"line {number}: {len(row)} fields where the header has {len(columns)};"
                    " quote texts that contain commas"
                )
            text = _text(row[text_at], number, limits)
            yield number, text, _csv_label(row[label_at], number)
    except csv.Error as exc:
        if "field larger than field limit" in str(exc):
            raise InvalidData(
                f"line {reader.line_num}: a field is longer than the CSV reader's limit of"
                f" {csv.field_size_limit():,} characters (texts may have at most"
                f" {limits.max_text_chars:,})"
            ) from exc
        raise InvalidData(f"line {reader.line_num}: malformed CSV ({exc})") from exc


def _text(value: object, number: int, limits: Limits) -> str:
    if not isinstance(value, str):
        raise InvalidData(f"line {number}: 'text' must be a string, got {_json_type(value)}")
    if not value.strip():
        raise InvalidData(f"line {number}: 'text' is empty")
    if len(value) > limits.max_text_chars:
        raise InvalidData(
            f"line {number}: the text has {len(value):,} characters, the limit is"
            f" {limits.max_text_chars:,}"
        )
    if not value.isascii() and (found := _SURROGATE.search(value)):
        raise InvalidData(
            f"line {number}: 'text' holds an unpaired surrogate (U+{ord(found.group()):04X} at"
            f" character {found.start() + 1}), which is not text; a \\u escape of U+D800 to"
            " U+DFFF must be half of a pair (write the character itself, as UTF-8)"
        )
    return value


def _json_label(value: object, number: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidData(
            f"line {number}: 'label' must be an integer class index, got {_json_type(value)}"
            f" {json.dumps(value)[:40]}"
        )
    return _non_negative(value, number)


def _json_error(exc: ValueError | RecursionError) -> str:
    if isinstance(exc, json.JSONDecodeError):
        return exc.msg
    if isinstance(exc, RecursionError):
        return "nested too deeply"
    return "a number with too many digits"


def _csv_label(value: str, number: int) -> int:
    if len(value) > _MAX_LABEL_CHARS or not _INTEGER.fullmatch(value.strip()):
        raise InvalidData(
            f"line {number}: 'label' must be an integer class index, got {value[:40]!r}"
        )
    return _non_negative(int(value), number)


def _non_negative(label: int, number: int) -> int:
    if label < 0:
        raise InvalidData(f"line {number}: label {label} is negative; classes count from 0")
    if label > np.iinfo(np.int64).max:
        raise InvalidData(f"line {number}: label {label} is too large")
    return label


def _json_type(value: object) -> str:
    names = {str: "a string", bool: "a boolean", int: "an integer", float: "a number"}
    names.update({type(None): "null", list: "a list", dict: "an object"})
    return names.get(type(value), type(value).__name__)
