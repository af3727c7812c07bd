"""A text model's tokenizer: a Hugging Face ``tokenizer.json`` read offline.

The file is checked before the ``tokenizers`` library parses it (size, JSON, a ``model``
section), so that a wrong upload gets a sentence a user can act on rather than a Rust parser
message. Nothing is ever fetched: only :meth:`tokenizers.Tokenizer.from_str` on the file's own
text is used.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tokenizers import Tokenizer

from workers.engine.errors import InvalidModel

MAX_TOKENIZER_BYTES = 50 * 2**20
"""Largest ``tokenizer.json`` read by default (50 MiB; a BERT-base tokenizer is under 1 MiB,
a 250k-token multilingual one about 17 MiB)."""

PAD_TOKEN_NAMES = ("[PAD]", "<pad>", "<PAD>", "[pad]")
"""Tokens taken for padding, in this order, when the file has no ``padding`` section."""


@dataclass(frozen=True)
class TextTokenizer:
    """A loaded tokenizer and the facts about it the engine needs."""

    tokenizer: Tokenizer
    pad_id: int
    """The id that fills a sequence up to the batch's length."""
    vocab_size: int
    """Tokens in the vocabulary, added tokens included."""
    max_id: int
    """The largest id the tokenizer can produce (ids need not be contiguous)."""
    unknown_id: int | None = None
    """The id of the unknown token, if the tokenizer's model has one."""
    truncation_length: int | None = None
    """The maximum length the file's ``truncation`` section names, if it has one: a default
    for a model that accepts sequences of any length."""
    _configured: dict[tuple[int, bool], Tokenizer] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )
    """Copies set up to truncate and pad, one per (max_length, pad_to_max_length), made on
    first use: a copy of a large vocabulary costs tens of milliseconds, more than the encoding
    of an attack's batch of queries."""


@dataclass(frozen=True)
class EncodedTexts:
    ids: np.ndarray
    """Token ids, int64, shape (N, T)."""
    attention_mask: np.ndarray
    """1 for a real token, 0 for padding; int64, shape (N, T)."""
    truncated: int
    """How many texts were longer than the maximum length and lost their tail."""
    unknown_share: float
    """The share of real tokens that are the tokenizer's unknown token: high when the texts
    are in another language or script than the tokenizer's, or the tokenizer is the wrong
    one (0.0 for a tokenizer without an unknown token)."""


def load_tokenizer(
    path: Path, *, max_bytes: int = MAX_TOKENIZER_BYTES, pad_id: int | None = None
) -> TextTokenizer:
    """Read and check a ``tokenizer.json``; ``pad_id`` overrides the detected padding id."""
    text, document = _read_document(path, max_bytes)
    try:
        tokenizer = Tokenizer.from_str(text)
    except Exception as exc:  # the library raises a bare Exception for a bad configuration
        raise InvalidModel(
            f"the tokenizer file {path.name} is JSON but not a tokenizer the Hugging Face"
            f" tokenizers library can read: {exc}"
        ) from exc
    vocabulary = tokenizer.get_vocab(with_added_tokens=True)
    if not vocabulary:
        raise InvalidModel(f"the tokenizer file {path.name} has an empty vocabulary")
    max_id = max(vocabulary.values())
    _check_unknown_token(document["model"], vocabulary, path.name)
    chosen_pad = padding_id(tokenizer) if pad_id is None else pad_id
    if chosen_pad is None:
        raise InvalidModel(
            f"the tokenizer file {path.name} names no padding token: it has no 'padding'"
            f" section and none of the tokens {', '.join(PAD_TOKEN_NAMES)}; set one with"
            " tokenizer.enable_padding(pad_id=..., pad_token=...) and save the file again"
        )
    if not 0 <= chosen_pad <= max_id:
        raise InvalidModel(
            f"the padding id {chosen_pad} is outside the tokenizer's ids (0 to {max_id})"
        )
    return TextTokenizer(
        tokenizer=tokenizer,
        pad_id=chosen_pad,
        vocab_size=tokenizer.get_vocab_size(with_added_tokens=True),
        max_id=max_id,
        unknown_id=_unknown_id(tokenizer, document["model"]),
        truncation_length=_truncation_length(tokenizer),
    )


def read_tokenizer_json(path: Path, *, max_bytes: int = MAX_TOKENIZER_BYTES) -> str:
    """The file's text, once it is known to be a JSON object with a ``model`` section and no
    larger than ``max_bytes``."""
    return _read_document(path, max_bytes)[0]


def tokenizer_too_large(name: str, size: int, max_bytes: int = MAX_TOKENIZER_BYTES) -> InvalidModel:
    """The refusal of a tokenizer file of ``size`` bytes, over ``max_bytes``."""
    return InvalidModel(
        f"the tokenizer file {name} is too large: {size:,} bytes, the limit is"
        f" {max_bytes:,}; a tokenizer.json is usually well under 20 MB"
    )


def _read_document(path: Path, max_bytes: int) -> tuple[str, dict[str, Any]]:
    size = path.stat().st_size
    if size > max_bytes:
        raise tokenizer_too_large(path.name, size, max_bytes)
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
        document = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise InvalidModel(
            f"the tokenizer file {path.name} is not JSON ({_reason(exc)}); send the"
            " tokenizer.json that tokenizer.save(path) or save_pretrained writes"
        ) from exc
    if not isinstance(document, dict) or not isinstance(document.get("model"), dict):
        raise InvalidModel(
            f"the tokenizer file {path.name} is JSON but not a Hugging Face tokenizer: it has"
            " no 'model' section (send tokenizer.json, not tokenizer_config.json or vocab.json)"
        )
    return text, document


def _reason(exc: Exception) -> str:
    if isinstance(exc, UnicodeDecodeError):
        return f"not UTF-8 text at byte {exc.start}"
    if isinstance(exc, json.JSONDecodeError):
        return f"{exc.msg} at line {exc.lineno} column {exc.colno}"
    if isinstance(exc, RecursionError):
        return "nested too deeply"
    return "a number with too many digits"


def padding_id(tokenizer: Tokenizer) -> int | None:
    """The padding id from the tokenizer's padding configuration, else the id of the first of
    :data:`PAD_TOKEN_NAMES` in its vocabulary, else None."""
    padding = tokenizer.padding
    if padding is not None:
        return int(padding["pad_id"])
    for name in PAD_TOKEN_NAMES:
        token_id = tokenizer.token_to_id(name)
        if token_id is not None:
            return int(token_id)
    return None


def encode(
    tokenizer: TextTokenizer,
    texts: Sequence[str],
    max_length: int,
    *,
    pad_to_max_length: bool = False,
) -> EncodedTexts:
    """Encode ``texts`` with the tokenizer's special tokens, cut each to ``max_length`` tokens
    and pad to the longest (or to ``max_length``, for a model with a fixed sequence length)."""
    if max_length < 1:
        raise ValueError(f"max_length must be positive, got {max_length}")
    configured = _configured(tokenizer, max_length, pad_to_max_length)
    try:
        encodings = configured.encode_batch(list(texts))
    except Exception as exc:  # the library raises a bare Exception
        raise InvalidModel(f"the tokenizer cannot encode the texts: {exc}") from exc
    width = max((len(e.ids) for e in encodings), default=max_length if pad_to_max_length else 0)
    ids = np.full((len(encodings), width), tokenizer.pad_id, dtype=np.int64)
    mask = np.zeros((len(encodings), width), dtype=np.int64)
    for row, encoding in enumerate(encodings):
        ids[row, : len(encoding.ids)] = encoding.ids
        mask[row, : len(encoding.attention_mask)] = encoding.attention_mask
    truncated = sum(1 for e in encodings if e.overflowing)
    return EncodedTexts(
        ids=ids,
        attention_mask=mask,
        truncated=truncated,
        unknown_share=_unknown_share(tokenizer, ids, mask),
    )


def _truncation_length(tokenizer: Tokenizer) -> int | None:
    truncation = tokenizer.truncation
    length = truncation.get("max_length") if truncation else None
    return int(length) if isinstance(length, int) and length > 0 else None


def _check_unknown_token(model: dict[str, Any], vocabulary: dict[str, int], name: str) -> None:
    token = model.get("unk_token")
    if isinstance(token, str) and token not in vocabulary:
        raise InvalidModel(
            f"the tokenizer file {name} names {token!r} as its unknown token, but {token!r} is"
            " not in its vocabulary: a word outside the vocabulary could not be encoded"
        )


def _unknown_id(tokenizer: Tokenizer, model: dict[str, Any]) -> int | None:
    """The unknown token's id: named by ``unk_token`` (WordPiece, WordLevel, BPE) or given as
    ``unk_id`` (Unigram)."""
    if isinstance(model.get("unk_id"), int):
        return int(model["unk_id"])
    token = model.get("unk_token")
    return tokenizer.token_to_id(token) if isinstance(token, str) else None


def _unknown_share(tokenizer: TextTokenizer, ids: np.ndarray, mask: np.ndarray) -> float:
    real = int(mask.sum())
    if tokenizer.unknown_id is None or real == 0:
        return 0.0
    return float(((ids == tokenizer.unknown_id) & (mask == 1)).sum()) / real


def _configured(tokenizer: TextTokenizer, max_length: int, pad_to_max_length: bool) -> Tokenizer:
    key = (max_length, pad_to_max_length)
    if key not in tokenizer._configured:
        tokenizer._configured[key] = _configured_copy(tokenizer, max_length, pad_to_max_length)
    return tokenizer._configured[key]


def _configured_copy(
    tokenizer: TextTokenizer, max_length: int, pad_to_max_length: bool
) -> Tokenizer:
    """A copy of the tokenizer that truncates and pads as asked, keeping the file's padding
    side and token; the loaded tokenizer is left as it was."""
    original = tokenizer.tokenizer
    copy = Tokenizer.from_str(original.to_str())
    copy.enable_truncation(max_length)
    padding = original.padding or {}
    pad_token = padding.get("pad_token") or original.id_to_token(tokenizer.pad_id) or "[PAD]"
    copy.enable_padding(
        direction=padding.get("direction", "right"),
        pad_id=tokenizer.pad_id,
        pad_token=pad_token,
        length=max_length if pad_to_max_length else None,
    )
    return copy


def check_vocabulary(tokenizer: TextTokenizer, embedding_rows: int) -> None:
    """Refuse a tokenizer that can produce an id the model's embedding table has no row for."""
    if tokenizer.max_id >= embedding_rows:
        raise InvalidModel(
            f"the tokenizer does not match the model: it produces ids up to {tokenizer.max_id}"
            f" ({tokenizer.vocab_size} tokens) but the model's embedding table has"
            f" {embedding_rows} rows (ids 0 to {embedding_rows - 1}); send the tokenizer the"
            " model was trained with"
        )
