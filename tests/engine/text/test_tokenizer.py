"""Loading a tokenizer.json offline, encoding batches, and matching the model's embeddings."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from tokenizers import Tokenizer, models, pre_tokenizers, trainers

from tests.engine.text import support
from workers.engine.errors import InvalidModel
from workers.engine.text.tokenizer import (
    TextTokenizer,
    check_vocabulary,
    encode,
    load_tokenizer,
    read_tokenizer_json,
)


def test_a_trained_tokenizer_loads_with_its_vocabulary_size(word_level_json: Path) -> None:
    tokenizer = load_tokenizer(word_level_json)
    expected = support.word_level_tokenizer(support.sentences(50)).get_vocab_size()
    assert tokenizer.vocab_size == expected
    assert tokenizer.max_id == expected - 1


def test_the_pad_token_is_found_by_name_when_there_is_no_padding_section(
    word_level_json: Path,
) -> None:
    assert json.loads(word_level_json.read_text())["padding"] is None
    assert load_tokenizer(word_level_json).pad_id == 0


def test_an_angle_bracket_pad_token_is_found_by_name(word_piece_json: Path) -> None:
    tokenizer = load_tokenizer(word_piece_json)
    assert tokenizer.pad_id == tokenizer.tokenizer.token_to_id("<pad>") == 2


def test_the_padding_section_names_the_pad_id(tmp_path: Path) -> None:
    trained = support.word_level_tokenizer(support.sentences(50))
    trained.enable_padding(pad_id=3, pad_token="[SEP]")
    path = tmp_path / "tokenizer.json"
    trained.save(str(path))
    assert load_tokenizer(path).pad_id == 3


def test_the_files_truncation_length_is_kept_as_a_default(tmp_path: Path) -> None:
    trained = support.word_level_tokenizer(support.sentences(50))
    trained.enable_truncation(128)
    path = tmp_path / "tokenizer.json"
    trained.save(str(path))
    assert load_tokenizer(path).truncation_length == 128


def test_a_file_without_truncation_names_no_length(word_level_json: Path) -> None:
    assert load_tokenizer(word_level_json).truncation_length is None


def test_an_explicit_pad_id_overrides_detection(word_level_json: Path) -> None:
    assert load_tokenizer(word_level_json, pad_id=1).pad_id == 1


def test_a_tokenizer_without_any_padding_token_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "tokenizer.json"
    support.word_piece_tokenizer(support.sentences(20), pad_token="[MASK]").save(str(path))
    with pytest.raises(InvalidModel, match="names no padding token"):
        load_tokenizer(path)


def test_an_unknown_token_missing_from_the_vocabulary_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "tokenizer.json"
    vocabulary = {"[PAD]": 0, "cat": 1}
    path.write_text(
        json.dumps({"model": {"type": "WordLevel", "vocab": vocabulary, "unk_token": "[UNK]"}})
    )
    with pytest.raises(InvalidModel, match=r"names '\[UNK\]' as its unknown token, but"):
        load_tokenizer(path)


def test_a_pad_id_outside_the_vocabulary_is_refused(word_level_json: Path) -> None:
    with pytest.raises(InvalidModel, match="outside the tokenizer's ids"):
        load_tokenizer(word_level_json, pad_id=10_000)


def test_a_file_over_the_size_limit_is_refused_before_parsing(word_level_json: Path) -> None:
    size = word_level_json.stat().st_size
    with pytest.raises(InvalidModel, match=f"too large: {size:,} bytes, the limit is 100"):
        read_tokenizer_json(word_level_json, max_bytes=100)


def test_a_file_that_is_not_json_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "tokenizer.json"
    path.write_text("[PAD]\n[UNK]\nhello\n")
    with pytest.raises(InvalidModel, match=r"is not JSON .*line 1 column"):
        load_tokenizer(path)


def test_a_binary_file_is_refused_as_not_json(tmp_path: Path) -> None:
    path = tmp_path / "tokenizer.json"
    path.write_bytes(b"\x80\x81\xfe\xff")
    with pytest.raises(InvalidModel, match=r"is not JSON .*not UTF-8 text at byte 0"):
        load_tokenizer(path)


def test_json_nested_too_deeply_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "tokenizer.json"
    path.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(InvalidModel, match=r"is not JSON \(nested too deeply\)"):
        load_tokenizer(path)


def test_a_number_with_thousands_of_digits_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "tokenizer.json"
    path.write_text('{"model": {"vocab": {"a": 1' + "0" * 5000 + "}}}")
    with pytest.raises(InvalidModel, match=r"is not JSON \(a number with too many digits\)"):
        load_tokenizer(path)


def test_json_without_a_model_section_is_not_a_tokenizer(tmp_path: Path) -> None:
    path = tmp_path / "tokenizer_config.json"
    path.write_text(json.dumps({"do_lower_case": True, "model_max_length": 512}))
    with pytest.raises(InvalidModel, match="no 'model' section"):
        load_tokenizer(path)


def test_a_json_list_is_not_a_tokenizer(tmp_path: Path) -> None:
    path = tmp_path / "tokenizer.json"
    path.write_text("[1, 2, 3]")
    with pytest.raises(InvalidModel, match="not a Hugging Face tokenizer"):
        load_tokenizer(path)


def test_a_model_section_the_library_cannot_read_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "tokenizer.json"
    path.write_text(json.dumps({"model": {"type": "NoSuchModel"}}))
    with pytest.raises(InvalidModel, match="not a tokenizer the Hugging Face tokenizers"):
        load_tokenizer(path)


def test_encoding_gives_int64_ids_and_mask_padded_to_the_longest(word_level_json: Path) -> None:
    tokenizer = load_tokenizer(word_level_json)
    encoded = encode(tokenizer, ["the cat likes the prize today", "a dog"], max_length=32)
    assert encoded.ids.dtype == np.int64
    assert encoded.attention_mask.dtype == np.int64
    assert encoded.ids.shape == encoded.attention_mask.shape == (2, 8)
    assert encoded.attention_mask.tolist() == [[1] * 8, [1] * 4 + [0] * 4]
    assert encoded.ids[1, 4:].tolist() == [tokenizer.pad_id] * 4
    assert encoded.truncated == 0


def test_encoding_adds_the_tokenizers_special_tokens(word_level_json: Path) -> None:
    tokenizer = load_tokenizer(word_level_json)
    ids = encode(tokenizer, ["a dog"], max_length=32).ids[0]
    cls_id, sep_id = (tokenizer.tokenizer.token_to_id(t) for t in ("[CLS]", "[SEP]"))
    assert (ids[0], ids[-1]) == (cls_id, sep_id)


def test_texts_longer_than_the_maximum_are_cut_and_counted(word_level_json: Path) -> None:
    tokenizer = load_tokenizer(word_level_json)
    texts = ["the cat likes the prize today", "a dog", "my friend sends a gift now"]
    encoded = encode(tokenizer, texts, max_length=5)
    assert encoded.ids.shape == (3, 5)
    assert encoded.truncated == 2


def test_the_share_of_unknown_tokens_is_reported(word_level_json: Path) -> None:
    encoded = encode(load_tokenizer(word_level_json), ["a dog", "zebra quasar"], max_length=8)
    assert encoded.unknown_share == pytest.approx(2 / 8)


def test_a_unigram_tokenizer_names_its_unknown_token_by_id(tmp_path: Path) -> None:
    trained = Tokenizer(models.Unigram())
    trained.pre_tokenizer = pre_tokenizers.Whitespace()
    trainer = trainers.UnigramTrainer(
        vocab_size=40, special_tokens=["<pad>", "<unk>"], unk_token="<unk>"
    )
    trained.train_from_iterator(support.sentences(50), trainer)
    path = tmp_path / "unigram.json"
    trained.save(str(path))
    tokenizer = load_tokenizer(path)
    assert (tokenizer.pad_id, tokenizer.unknown_id) == (0, 1)


def test_a_tokenizer_that_fails_on_a_text_raises_invalid_model() -> None:
    broken = Tokenizer(models.WordLevel({"[PAD]": 0, "cat": 1}, unk_token="[UNK]"))
    broken.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = TextTokenizer(tokenizer=broken, pad_id=0, vocab_size=2, max_id=1)
    with pytest.raises(InvalidModel, match="the tokenizer cannot encode the texts"):
        encode(tokenizer, ["cat dog"], max_length=8)


def test_a_fixed_sequence_length_pads_every_row_to_the_maximum(word_level_json: Path) -> None:
    encoded = encode(
        load_tokenizer(word_level_json), ["a dog"], max_length=10, pad_to_max_length=True
    )
    assert encoded.ids.shape == (1, 10)
    assert encoded.attention_mask.sum() == 4


def test_encoding_leaves_the_loaded_tokenizer_unchanged(word_level_json: Path) -> None:
    tokenizer = load_tokenizer(word_level_json)
    encode(tokenizer, ["a dog"], max_length=3)
    assert tokenizer.tokenizer.truncation is None
    assert tokenizer.tokenizer.padding is None


def test_the_configured_copy_is_made_once_per_length(word_level_json: Path) -> None:
    tokenizer = load_tokenizer(word_level_json)
    first = encode(tokenizer, ["the cat likes the prize today"], max_length=5)
    copies = dict(tokenizer._configured)
    second = encode(tokenizer, ["the cat likes the prize today"], max_length=5)
    encode(tokenizer, ["a dog"], max_length=7)
    assert tokenizer._configured[(5, False)] is copies[(5, False)]
    assert set(tokenizer._configured) == {(5, False), (7, False)}
    assert np.array_equal(first.ids, second.ids)


def test_a_vocabulary_that_fits_the_embedding_table_passes(word_level_json: Path) -> None:
    tokenizer = load_tokenizer(word_level_json)
    check_vocabulary(tokenizer, embedding_rows=tokenizer.max_id + 1)


def test_ids_beyond_the_embedding_table_are_refused_with_both_sizes(
    word_level_json: Path,
) -> None:
    tokenizer = load_tokenizer(word_level_json)
    rows = tokenizer.max_id
    with pytest.raises(InvalidModel) as caught:
        check_vocabulary(tokenizer, embedding_rows=rows)
    message = str(caught.value)
    assert f"ids up to {tokenizer.max_id}" in message
    assert f"embedding table has {rows} rows" in message
