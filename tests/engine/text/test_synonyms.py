"""The shipped WordNet synonym table, its look-up, and the stopwords the attack leaves alone."""

from __future__ import annotations

import gzip
import re
from importlib import resources

import pytest

from workers.engine.text import synonyms as synonyms_module
from workers.engine.text.synonyms import STOPWORDS, is_stopword, substitutes, synonyms

PACKAGE = resources.files("workers.engine.text")


def shipped_lines() -> list[str]:
    return (
        gzip.decompress(PACKAGE.joinpath("wordnet_synonyms.tsv.gz").read_bytes())
        .decode("ascii")
        .splitlines()
    )


def test_a_common_word_has_its_wordnet_synonyms() -> None:
    assert {"film", "picture", "flick"} <= set(synonyms("movie"))


def test_a_plural_has_the_plurals_of_its_synonyms() -> None:
    assert {"films", "pictures", "flicks"} <= set(synonyms("movies"))


def test_look_up_ignores_case() -> None:
    assert synonyms("Movie") == synonyms("MOVIE") == synonyms("movie")


def test_a_word_wordnet_does_not_know_has_none() -> None:
    assert synonyms("qwxzzyv") == ()


def test_proper_nouns_lend_nothing_to_common_words() -> None:
    assert "america" not in synonyms("us")


def test_every_entry_is_a_lowercase_single_word_other_than_its_key() -> None:
    word = re.compile(r"[a-z]{2,}")
    for line in shipped_lines():
        key, _, rest = line.partition("\t")
        values = rest.split(" ")
        assert word.fullmatch(key), line
        assert all(word.fullmatch(v) for v in values), line
        assert key not in values, line
        assert len(values) == len(set(values)) <= 20, line


def test_the_table_is_small_and_sorted_by_word() -> None:
    lines = shipped_lines()
    assert len(PACKAGE.joinpath("wordnet_synonyms.tsv.gz").read_bytes()) < 2 * 2**20
    assert len(lines) > 30_000
    keys = [line.partition("\t")[0] for line in lines]
    assert keys == sorted(keys)


def test_the_wordnet_licence_ships_beside_the_table() -> None:
    licence = PACKAGE.joinpath("WORDNET-LICENSE.txt").read_text(encoding="utf-8")
    assert "WordNet 3.0 Copyright 2006 by Princeton University" in licence


def test_the_table_is_read_once() -> None:
    synonyms("movie")
    before = synonyms_module._table.cache_info()
    synonyms("film")
    after = synonyms_module._table.cache_info()
    assert (after.misses, after.hits) == (before.misses, before.hits + 1)


@pytest.mark.parametrize("word", ["the", "not", "never", "and", "of", "is", "their", "The"])
def test_stopwords_get_no_substitutes(word: str) -> None:
    assert is_stopword(word)
    assert substitutes(word) == ()


def test_content_words_are_substituted_with_their_synonyms() -> None:
    assert not is_stopword("terrible")
    assert substitutes("terrible") == synonyms("terrible") != ()


def test_the_stopword_list_is_short_and_lowercase() -> None:
    assert len(STOPWORDS) < 250
    assert all(word == word.lower() for word in STOPWORDS)
