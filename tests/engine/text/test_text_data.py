"""Reading labelled text from JSON Lines and CSV, and refusing bad lines by number."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.engine.text import support
from workers.engine.errors import InvalidData
from workers.engine.text.data import (
    Limits,
    check_labels,
    detect_format,
    load_text_dataset,
)

GOOD = {"text": "the cat likes the prize", "label": 1}


def jsonl_with(tmp_path: Path, bad_line: str) -> Path:
    """A JSON Lines file whose third line is ``bad_line``."""
    path = tmp_path / "data.jsonl"
    good = json.dumps(GOOD)
    path.write_text(f"{good}\n{good}\n{bad_line}\n{good}\n", encoding="utf-8")
    return path


def test_json_lines_are_read_into_texts_and_int64_labels(tmp_path: Path) -> None:
    rows = support.labelled(20)
    dataset = load_text_dataset(support.write_jsonl(tmp_path / "train.jsonl", rows))
    assert dataset.texts == tuple(str(row["text"]) for row in rows)
    assert dataset.labels.dtype == np.int64
    assert dataset.labels.tolist() == [row["label"] for row in rows]
    assert len(dataset) == 20


def test_the_generated_train_and_test_files_hold_both_classes(
    labelled_jsonl: tuple[Path, Path],
) -> None:
    for path in labelled_jsonl:
        assert set(load_text_dataset(path).labels.tolist()) == {0, 1}


def test_csv_with_a_text_label_header_is_read(tmp_path: Path) -> None:
    rows = support.labelled(20)
    dataset = load_text_dataset(support.write_csv(tmp_path / "train.csv", rows))
    assert dataset.texts == tuple(str(row["text"]) for row in rows)
    assert dataset.labels.tolist() == [row["label"] for row in rows]


def test_csv_texts_may_hold_commas_quotes_and_new_lines(tmp_path: Path) -> None:
    rows = [{"text": 'Win "free" money, now!\nReply YES', "label": 1}, GOOD]
    dataset = load_text_dataset(support.write_csv(tmp_path / "train.csv", rows))
    assert dataset.texts[0] == 'Win "free" money, now!\nReply YES'
    assert dataset.lines == (2, 4)


def test_csv_columns_may_come_in_any_order_with_extra_columns(tmp_path: Path) -> None:
    path = tmp_path / "train.csv"
    path.write_text("id,label,text\n7,1,hello there\n8,0,good night\n", encoding="utf-8")
    dataset = load_text_dataset(path)
    assert dataset.texts == ("hello there", "good night")
    assert dataset.labels.tolist() == [1, 0]


def test_extra_json_keys_are_ignored(tmp_path: Path) -> None:
    path = support.write_jsonl(tmp_path / "d.jsonl", [{**GOOD, "id": 3, "source": "sms"}])
    assert load_text_dataset(path).texts == (GOOD["text"],)


def test_blank_lines_are_skipped_and_lines_are_remembered(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    path.write_text(f"{json.dumps(GOOD)}\n\n   \n{json.dumps(GOOD)}\n", encoding="utf-8")
    assert load_text_dataset(path).lines == (1, 4)


def test_a_utf8_byte_order_mark_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps(GOOD).encode())
    assert len(load_text_dataset(path)) == 1


def test_the_format_is_sniffed_when_the_suffix_says_nothing(tmp_path: Path) -> None:
    jsonl = support.write_jsonl(tmp_path / "upload-1", [GOOD])
    csv_file = support.write_csv(tmp_path / "upload-2", [GOOD])
    assert (detect_format(jsonl), detect_format(csv_file)) == ("jsonl", "csv")


def test_a_line_that_is_not_json_is_named(tmp_path: Path) -> None:
    with pytest.raises(InvalidData, match=r"line 3: not JSON"):
        load_text_dataset(jsonl_with(tmp_path, '{"text": "hi", "label": 1'))


def test_a_line_that_is_json_but_not_an_object_is_named(tmp_path: Path) -> None:
    with pytest.raises(InvalidData, match=r"line 3: a JSON list, not an object"):
        load_text_dataset(jsonl_with(tmp_path, '["hi", 1]'))


def test_a_json_array_file_is_told_to_become_json_lines(tmp_path: Path) -> None:
    path = tmp_path / "data.json"
    path.write_text(json.dumps([GOOD, GOOD], indent=1), encoding="utf-8")
    with pytest.raises(InvalidData, match=r"line 1: the file starts a JSON array; send JSON Lines"):
        load_text_dataset(path)


def test_a_json_array_without_a_suffix_is_still_read_as_json(tmp_path: Path) -> None:
    path = tmp_path / "upload"
    path.write_text(json.dumps([GOOD]), encoding="utf-8")
    assert detect_format(path) == "jsonl"


def test_a_missing_label_is_named(tmp_path: Path) -> None:
    with pytest.raises(InvalidData, match=r"line 3: missing key 'label'"):
        load_text_dataset(jsonl_with(tmp_path, '{"text": "hi"}'))


def test_a_missing_text_is_named(tmp_path: Path) -> None:
    with pytest.raises(InvalidData, match=r"line 3: missing key 'text'"):
        load_text_dataset(jsonl_with(tmp_path, '{"sentence": "hi", "label": 0}'))


def test_a_text_that_is_not_a_string_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidData, match=r"line 3: 'text' must be a string, got a list"):
        load_text_dataset(jsonl_with(tmp_path, '{"text": ["hi"], "label": 0}'))


def test_an_empty_text_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidData, match=r"line 3: 'text' is empty"):
        load_text_dataset(jsonl_with(tmp_path, '{"text": "  \\t ", "label": 0}'))


def test_a_text_with_an_unpaired_surrogate_escape_is_refused_by_line(tmp_path: Path) -> None:
    """JSON may escape half a surrogate pair; the tokenizer cannot encode it, so a worker would
    fail on it after the submit-time check (which encodes the first texts only) let it by."""
    with pytest.raises(InvalidData, match=r"line 3: 'text' holds an unpaired surrogate \(U\+D800"):
        load_text_dataset(jsonl_with(tmp_path, '{"text": "the \\ud800 cat", "label": 0}'))


def test_a_surrogate_pair_escape_is_one_character_of_text(tmp_path: Path) -> None:
    dataset = load_text_dataset(jsonl_with(tmp_path, '{"text": "a \\ud83d\\ude00", "label": 0}'))

    assert dataset.texts[2] == "a \U0001f600"


@pytest.mark.parametrize(
    ("label", "kind"), [("1.5", "a number"), ('"1"', "a string"), ("true", "a boolean")]
)
def test_a_label_that_is_not_an_integer_is_refused(tmp_path: Path, label: str, kind: str) -> None:
    with pytest.raises(InvalidData, match=rf"line 3: 'label' must be an integer .*got {kind}"):
        load_text_dataset(jsonl_with(tmp_path, f'{{"text": "hi", "label": {label}}}'))


def test_a_label_with_thousands_of_digits_is_refused_by_line(tmp_path: Path) -> None:
    path = jsonl_with(tmp_path, '{"text": "hi", "label": 1' + "0" * 5000 + "}")
    with pytest.raises(InvalidData, match=r"line 3: not JSON \(a number with too many digits\)"):
        load_text_dataset(path)


def test_a_csv_label_with_thousands_of_digits_is_refused_by_line(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    path.write_text("text,label\nfine,0\nhi,1" + "0" * 5000 + "\n", encoding="utf-8")
    with pytest.raises(InvalidData, match=r"line 3: 'label' must be an integer"):
        load_text_dataset(path)


def test_a_negative_label_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidData, match=r"line 3: label -1 is negative"):
        load_text_dataset(jsonl_with(tmp_path, '{"text": "hi", "label": -1}'))


def test_bytes_that_are_not_utf8_are_named_by_line(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    path.write_bytes(json.dumps(GOOD).encode() + b'\n{"text": "caf\xe9", "label": 0}\n')
    with pytest.raises(InvalidData, match=r"line 2: not UTF-8 text \(byte 0xe9 at column 14\)"):
        load_text_dataset(path)


def test_a_csv_without_the_header_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    path.write_text("hello there,1\n", encoding="utf-8")
    with pytest.raises(InvalidData, match=r"line 1: the CSV header must name .*'text', 'label'"):
        load_text_dataset(path)


def test_a_csv_row_with_a_stray_comma_is_named(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    path.write_text("text,label\nfine,0\nhello, there,1\n", encoding="utf-8")
    with pytest.raises(InvalidData, match=r"line 3: 3 fields where the header has 2"):
        load_text_dataset(path)


def test_a_csv_label_that_is_not_an_integer_is_named(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    path.write_text("text,label\nfine,0\nspam here,spam\n", encoding="utf-8")
    with pytest.raises(InvalidData, match=r"line 3: 'label' must be an integer .*'spam'"):
        load_text_dataset(path)


def test_a_csv_field_beyond_the_csv_readers_limit_is_named(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    path.write_text(f"text,label\nfine,0\n{'x' * 200_000},1\n", encoding="utf-8")
    with pytest.raises(InvalidData, match=r"line 3: a field is longer than the CSV reader's"):
        load_text_dataset(path)


def test_a_csv_negative_label_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    path.write_text("text,label\nfine,-2\n", encoding="utf-8")
    with pytest.raises(InvalidData, match=r"line 2: label -2 is negative"):
        load_text_dataset(path)


def test_a_csv_empty_text_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    path.write_text('text,label\n"",1\n', encoding="utf-8")
    with pytest.raises(InvalidData, match=r"line 2: 'text' is empty"):
        load_text_dataset(path)


def test_an_empty_file_holds_no_examples(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    path.write_text("\n", encoding="utf-8")
    with pytest.raises(InvalidData, match="holds no examples"):
        load_text_dataset(path)


def test_a_file_over_the_size_limit_is_refused(tmp_path: Path) -> None:
    path = support.write_jsonl(tmp_path / "d.jsonl", support.labelled(20))
    with pytest.raises(InvalidData, match=r"too large: .* the limit is 100"):
        load_text_dataset(path, limits=Limits(max_file_bytes=100))


def test_a_line_over_the_line_limit_is_refused_by_number_without_reading_it_all(
    tmp_path: Path,
) -> None:
    path = jsonl_with(tmp_path, json.dumps({"text": "cat " * 2000, "label": 0}))
    with pytest.raises(InvalidData, match=r"line 3 is longer than 1,000 bytes; a text may have"):
        load_text_dataset(path, limits=Limits(max_line_bytes=1000))


def test_a_csv_line_over_the_line_limit_is_refused_by_number(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    path.write_text("text,label\nfine,1\n" + "cat " * 2000 + ",0\n", encoding="utf-8")
    with pytest.raises(InvalidData, match=r"line 3 is longer than 1,000 bytes"):
        load_text_dataset(path, limits=Limits(max_line_bytes=1000))


def test_a_line_at_the_line_limit_is_read(tmp_path: Path) -> None:
    line = json.dumps({"text": "the cat", "label": 1, "id": ""})
    padded = line.replace('"id": ""', '"id": "' + "x" * (1000 - len(line) - 1) + '"')
    path = jsonl_with(tmp_path, padded)

    assert len(load_text_dataset(path, limits=Limits(max_line_bytes=1000))) == 4


def test_more_examples_than_the_limit_are_refused(tmp_path: Path) -> None:
    path = support.write_jsonl(tmp_path / "d.jsonl", support.labelled(20))
    with pytest.raises(InvalidData, match=r"more than 10 examples \(line 11\)"):
        load_text_dataset(path, limits=Limits(max_examples=10))


def test_a_text_over_the_character_limit_is_refused(tmp_path: Path) -> None:
    path = jsonl_with(tmp_path, json.dumps({"text": "x" * 51, "label": 0}))
    with pytest.raises(InvalidData, match="line 3: the text has 51 characters, the limit is 50"):
        load_text_dataset(path, limits=Limits(max_text_chars=50))


def test_labels_inside_the_models_classes_pass(tmp_path: Path) -> None:
    dataset = load_text_dataset(support.write_jsonl(tmp_path / "d.jsonl", support.labelled(20)))
    check_labels(dataset, num_classes=2)


def test_a_label_the_model_has_no_class_for_is_named_by_line(tmp_path: Path) -> None:
    rows = [GOOD, {"text": "a", "label": 0}, {"text": "b", "label": 4}, {"text": "c", "label": 3}]
    dataset = load_text_dataset(support.write_jsonl(tmp_path / "d.jsonl", rows))
    with pytest.raises(
        InvalidData, match=r"line 3: label 4 is out of range for a model with 3 classes"
    ) as caught:
        check_labels(dataset, num_classes=3)
    assert "2 example(s)" in str(caught.value)
