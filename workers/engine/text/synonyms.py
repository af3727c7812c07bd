"""WordNet synonyms for the word-level attack, and the words it must leave alone.

The table ships with the package (``wordnet_synonyms.tsv.gz``, built from WordNet 3.0 by
``scripts/build_synonyms.py``; licence in ``WORDNET-LICENSE.txt`` beside it). It is read once,
on the first look-up. Keys and synonyms are lower case: callers look a word up in any case and
restore the case of the word they replace.
"""

from __future__ import annotations

import functools
import gzip
from importlib import resources

TABLE_NAME = "wordnet_synonyms.tsv.gz"
_PACKAGE = __name__.rpartition(".")[0]


def _words(*groups: str) -> frozenset[str]:
    return frozenset(word for group in groups for word in group.split())


STOPWORDS: frozenset[str] = _words(
    # articles, determiners and quantifiers
    "a an the this that these those some any each every all both either neither such many"
    " much more most few less own other another",
    # pronouns and possessives
    "i me my mine we us our ours you your yours he him his she her hers it its they them their"
    " theirs myself yourself himself herself itself ourselves themselves who whom whose which"
    " what",
    # auxiliaries and modals
    "am is are was were be been being have has had having do does did doing will would shall"
    " should can could may might must",
    # negation: substituting it flips the meaning
    "not no nor never none nothing nobody nowhere cannot",
    # prepositions and particles
    "of in on at by for with about against between into through during before after above"
    " below to from up down out off over under again further than as per via",
    # conjunctions and connectives
    "and or but if then else because while until unless although though so yet also",
    # adverbs of place, time and degree that carry grammar rather than content
    "here there when where why how just only very too once now",
    # pieces of contractions left by word segmentation ("don't" -> "don", "t")
    "s t d ll m re ve don doesn didn isn aren wasn weren won wouldn shouldn couldn",
)
"""Function words the word attack does not substitute: swapping them changes grammar or
negation, not word choice."""


@functools.cache
def _table() -> dict[str, tuple[str, ...]]:
    data = resources.files(_PACKAGE).joinpath(TABLE_NAME).read_bytes()
    table: dict[str, tuple[str, ...]] = {}
    for line in gzip.decompress(data).decode("ascii").splitlines():
        word, _, rest = line.partition("\t")
        table[word] = tuple(rest.split())
    return table


def synonyms(word: str) -> tuple[str, ...]:
    """WordNet synonyms of ``word`` (any case), lower case, most frequent senses first; empty
    for a word WordNet does not know."""
    return _table().get(word.lower(), ())


def is_stopword(word: str) -> bool:
    return word.lower() in STOPWORDS


def substitutes(word: str) -> tuple[str, ...]:
    """Candidates to replace ``word`` with: its synonyms, none for a stopword. Fits the
    word attack's ``Callable[[str], Sequence[str]]``."""
    return () if is_stopword(word) else synonyms(word)
