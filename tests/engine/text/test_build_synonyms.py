"""scripts/build_synonyms.py: how the synonym table is derived from WordNet's files."""

from __future__ import annotations

import gzip
from importlib import resources
from pathlib import Path

import pytest

from scripts.build_synonyms import (
    NOUN,
    VERB,
    build_table,
    main,
    s_form,
    wordnet_licence,
    write_table,
)

HEADER = "  1 This software and database is provided under the WordNet licence.\n"
DATA = {
    "noun": [
        "00000010 10 n 03 film 0 movie 0 moving_picture 0 000 | a motion picture",
        "00000020 15 n 02 US 0 America 0 000 | the country",
        "00000060 06 n 03 film 0 photographic_film 0 celluloid 0 000 | a light-sensitive strip",
        "00000070 06 n 02 child 0 kid 0 000 | a young person",
        "00000080 10 n 02 movies 0 cinema 0 000 | a showing of a motion picture",
    ],
    "verb": ["00000050 36 v 03 film 0 shoot 0 take 0 000 | record on film"],
    "adj": ["00000040 00 s 03 quick(a) 0 speedy 0 Q 0 000 | moving fast"],
    "adv": [],
}
INDEX = {
    "noun": [
        "film n 2 0 2 0 00000010 00000060",
        "movie n 1 0 1 0 00000010",
        "us n 1 0 1 0 00000020",
        "child n 1 0 1 0 00000070",
        "kid n 1 0 1 0 00000070",
        "movies n 1 0 1 0 00000080",
    ],
    "verb": ["film v 1 0 1 0 00000050"],
    "adj": ["quick a 1 0 1 0 00000040"],
    "adv": [],
}


@pytest.fixture
def wordnet(tmp_path: Path) -> Path:
    for pos in DATA:
        (tmp_path / f"data.{pos}").write_text(HEADER + "".join(f"{line}\n" for line in DATA[pos]))
        (tmp_path / f"index.{pos}").write_text(HEADER + "".join(f"{ln}\n" for ln in INDEX[pos]))
    (tmp_path / "noun.exc").write_text("children child\n")
    return tmp_path


def test_synonyms_follow_the_sense_ranking_across_parts_of_speech(wordnet: Path) -> None:
    assert build_table(wordnet, per_word=20)["film"] == ["movie", "shoot", "take", "celluloid"]


def test_the_number_of_synonyms_per_word_is_capped(wordnet: Path) -> None:
    assert build_table(wordnet, per_word=2)["film"] == ["movie", "shoot"]


def test_multiword_lemmas_are_dropped(wordnet: Path) -> None:
    assert build_table(wordnet, per_word=20)["movie"] == ["film"]


def test_adjective_satellites_count_and_their_markers_are_stripped(wordnet: Path) -> None:
    assert build_table(wordnet, per_word=20)["quick"] == ["speedy"]


def test_a_synset_where_the_word_is_only_a_proper_noun_lends_nothing(wordnet: Path) -> None:
    assert "us" not in build_table(wordnet, per_word=20)


def test_an_s_form_gets_the_s_forms_of_its_noun_and_verb_synonyms(wordnet: Path) -> None:
    expected = ["movies", "shoots", "takes", "celluloids"]
    assert build_table(wordnet, per_word=20)["films"] == expected


def test_an_irregular_plural_comes_from_the_exception_list(wordnet: Path) -> None:
    table = build_table(wordnet, per_word=20)
    assert (table["children"], table["kids"]) == (["kids"], ["children"])


def test_a_plural_that_is_a_lemma_of_its_own_keeps_its_own_synonyms(wordnet: Path) -> None:
    assert build_table(wordnet, per_word=20)["movies"] == ["cinema"]


@pytest.mark.parametrize(
    ("word", "pos", "expected"),
    [
        ("box", NOUN, "boxes"),
        ("city", NOUN, "cities"),
        ("day", NOUN, "days"),
        ("glass", NOUN, "glasses"),
        ("woman", NOUN, "women"),
        ("potato", NOUN, None),
        ("chairman", NOUN, None),
        ("series", NOUN, None),
        ("take_off", NOUN, None),
        ("go", VERB, "goes"),
        ("carry", VERB, "carries"),
        ("be", VERB, "is"),
    ],
)
def test_s_forms_follow_the_spelling_rules_or_are_left_out(
    word: str, pos: int, expected: str | None
) -> None:
    assert s_form(word, pos, {"child": ["children"]}) == expected


def test_the_written_table_is_sorted_tab_separated_and_byte_stable(tmp_path: Path) -> None:
    table = {"movie": ["film"], "film": ["movie", "shoot"]}
    first, second = tmp_path / "a.tsv.gz", tmp_path / "b.tsv.gz"
    write_table(table, first)
    write_table(table, second)
    assert gzip.decompress(first.read_bytes()) == b"film\tmovie shoot\nmovie\tfilm\n"
    assert first.read_bytes() == second.read_bytes()


def test_the_licence_is_the_wordnet_paragraph_of_a_debian_copyright_file(tmp_path: Path) -> None:
    copyright_file = tmp_path / "copyright"
    copyright_file.write_text(
        "Files: *\nLicense: WordNet3.0\n First paragraph.\n .\n Second.\n"
        "\nFiles: debian/*\nLicense: GPL-2+\n Not this.\n"
    )
    assert wordnet_licence(copyright_file) == "First paragraph.\n\nSecond.\n"


@pytest.mark.skipif(
    not Path("/usr/share/wordnet/data.noun").exists(),
    reason="WordNet is not installed (apt-get install -y wordnet-base)",
)
def test_the_shipped_table_is_what_the_script_builds_from_wordnet(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("sys.argv", ["build_synonyms.py", "--out", str(tmp_path)])
    main()
    shipped = resources.files("workers.engine.text").joinpath("wordnet_synonyms.tsv.gz")
    assert (tmp_path / "wordnet_synonyms.tsv.gz").read_bytes() == shipped.read_bytes()
