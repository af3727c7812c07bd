"""How many of a job's texts are longer than the model's maximum length: they are cut to it
(their tail dropped) rather than refused, and the report says so, in figures and in words."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from workers.engine.text.training.batches import Encoder


def count_truncated(encoder: Encoder, texts: Sequence[str]) -> int:
    """Texts that lose tokens to ``encoder.max_length`` (special tokens counted)."""
    return sum(1 for encoding in encoder.encodings(texts) if encoding.overflowing)


def truncation_section(
    encoder: Encoder, train: Sequence[str], evaluation: Sequence[str]
) -> tuple[dict[str, Any], list[str]]:
    """The report's ``text.truncated`` figures and, when any text was cut, a note for
    ``inputs.notes``."""
    counts = {
        "max_length": encoder.max_length,
        "train_texts": count_truncated(encoder, train),
        "eval_texts": count_truncated(encoder, evaluation),
    }
    if not counts["train_texts"] and not counts["eval_texts"]:
        return counts, []
    note = (
        f"{counts['train_texts']} of {len(train)} training texts and {counts['eval_texts']} of"
        f" {len(evaluation)} evaluation texts are longer than the model's {encoder.max_length}"
        " tokens and were cut to it (their tail dropped) for training and scoring"
    )
    return counts, [note]
