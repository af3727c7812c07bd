"""Build the synonym table of the word-level text attack from WordNet 3.0.

Reads the WordNet database files that Debian's ``wordnet-base`` package installs
(``apt-get install -y wordnet-base``: ``/usr/share/wordnet/index.*`` and ``data.*``) directly,
without nltk, and writes into ``workers/engine/text/``:

- ``wordnet_synonyms.tsv.gz``: one line per word, ``word<TAB>syn1 syn2 ...``, sorted by word;
- ``WORDNET-LICENSE.txt``: the WordNet 3.0 licence, taken from the package's copyright file.

Which words: a word's synonyms are the other lemmas of the synsets (nouns, verbs, adjectives
with their satellites, adverbs) in which the word itself is written in lower case, so that a
proper noun or an acronym ("US", "Bill") lends nothing to a common word ("us", "bill"). Only
single words of two or more ASCII letters are kept, as keys and as synonyms; multiword lemmas
("take_off") and anything with a digit, hyphen or dot are dropped. Synonyms come in the order of
WordNet's sense ranking (the index files list a word's synsets most frequent first), first
senses of every part of speech before second senses, at most ``--per-word`` of them.

WordNet holds base forms only; the table adds the -s forms, the commonest inflection in text:
a noun's plural (regular, or from WordNet's ``noun.exc``: "children") and a verb's third
person ("says") are keys too, with the same inflection of the synonyms of the base's noun and
verb senses ("movies" -> "films"). A synonym whose plural a simple rule may get wrong (nouns in
-o, in -s, -man compounds) is left out there. Past tenses and participles are not added.

Deterministic: the gzip header carries no name and no time, so the same WordNet files give the
same bytes::

    python scripts/build_synonyms.py [--wordnet /usr/share/wordnet] [--per-word 20]
"""

from __future__ import annotations

import argparse
import gzip
import re
from collections.abc import Iterator
from pathlib import Path

PARTS_OF_SPEECH = ("noun", "verb", "adj", "adv")
WORD = re.compile(r"[a-z]{2,}")
_ADJECTIVE_MARKER = re.compile(r"\((?:a|p|ip)\)$")
OUT = Path(__file__).resolve().parents[1] / "workers" / "engine" / "text"
COPYRIGHT = Path("/usr/share/doc/wordnet-base/copyright")


def database_lines(path: Path) -> Iterator[str]:
    """The lines of a WordNet database file after its licence header (lines that start with
    two spaces)."""
    with path.open(encoding="latin-1") as handle:
        for line in handle:
            if not line.startswith("  "):
                yield line


def synset_lemmas(path: Path) -> dict[int, list[str]]:
    """Synset offset -> its lemmas as written (case kept, adjective markers dropped)."""
    synsets: dict[int, list[str]] = {}
    for line in database_lines(path):
        fields = line.split()
        count = int(fields[3], 16)
        words = fields[4 : 4 + 2 * count : 2]
        synsets[int(fields[0])] = [_ADJECTIVE_MARKER.sub("", word) for word in words]
    return synsets


def sense_ranking(path: Path) -> dict[str, list[int]]:
    """Lemma -> its synset offsets, most frequent sense first (the index file's order)."""
    senses: dict[str, list[int]] = {}
    for line in database_lines(path):
        fields = line.split()
        synset_count = int(fields[2])
        senses[fields[0]] = [int(offset) for offset in fields[-synset_count:]]
    return senses


Sense = tuple[int, int, list[str]]
"""A synset a word belongs to: its rank among the word's senses, its part of speech (the
index in PARTS_OF_SPEECH) and its lemmas."""

NOUN, VERB = PARTS_OF_SPEECH.index("noun"), PARTS_OF_SPEECH.index("verb")
_VOWELS = frozenset("aeiou")


def build_table(wordnet: Path, per_word: int) -> dict[str, list[str]]:
    """Base forms with their synonyms, and the -s forms (plural nouns, third-person verbs)
    with the -s forms of their nouns' and verbs' synonyms."""
    ranked = ranked_senses(wordnet)
    table = {word: chosen for word, senses in ranked.items() if (chosen := pick(senses))}
    irregular = irregular_plurals(wordnet / "noun.exc")
    for form, senses in s_form_senses(ranked, irregular).items():
        if form not in ranked and (chosen := pick(senses)):
            table[form] = chosen
    return {word: synonyms[:per_word] for word, synonyms in table.items()}


def ranked_senses(wordnet: Path) -> dict[str, list[Sense]]:
    """Each single-word lemma -> the synsets in which it is written in lower case."""
    ranked: dict[str, list[Sense]] = {}
    for pos_order, pos in enumerate(PARTS_OF_SPEECH):
        synsets = synset_lemmas(wordnet / f"data.{pos}")
        for lemma, offsets in sense_ranking(wordnet / f"index.{pos}").items():
            for rank, offset in enumerate(offsets):
                if WORD.fullmatch(lemma) and lemma in synsets[offset]:
                    others = [other for other in synsets[offset] if other != lemma]
                    ranked.setdefault(lemma, []).append((rank, pos_order, others))
    return ranked


def pick(senses: list[Sense]) -> list[str]:
    """The distinct single-word lemmas of the senses, most frequent sense first, first senses
    of every part of speech before second senses."""
    chosen: list[str] = []
    for _, _, lemmas in sorted(senses, key=lambda sense: sense[:2]):
        chosen.extend(lemma for lemma in lemmas if WORD.fullmatch(lemma) and lemma not in chosen)
    return chosen


def irregular_plurals(path: Path) -> dict[str, list[str]]:
    """Noun -> its irregular plurals, from WordNet's exception list (``children child``)."""
    plurals: dict[str, list[str]] = {}
    for line in path.read_text(encoding="latin-1").splitlines():
        inflected, *bases = line.split()
        for base in bases:
            plurals.setdefault(base, []).append(inflected)
    return plurals


def s_form_senses(
    ranked: dict[str, list[Sense]], irregular: dict[str, list[str]]
) -> dict[str, list[Sense]]:
    """The -s forms of the nouns and verbs, each with its base's noun and verb senses, the
    lemmas of which are put in their -s form too (dropped where that form is uncertain)."""
    inflected: dict[str, list[Sense]] = {}
    for base, senses in ranked.items():
        for rank, pos_order, lemmas in senses:
            if pos_order not in (NOUN, VERB):
                continue
            forms = {s_form(base, pos_order, irregular)}
            if pos_order == NOUN:
                forms.update(irregular.get(base, []))
            others = [s_form(lemma, pos_order, irregular) for lemma in lemmas]
            for form in forms:
                if form is not None and WORD.fullmatch(form):
                    synonyms = [o for o in others if o is not None and o != form]
                    inflected.setdefault(form, []).append((rank, pos_order, synonyms))
    return inflected


def s_form(word: str, pos_order: int, irregular: dict[str, list[str]]) -> str | None:
    """The plural of a noun or the third person singular of a verb; None where a simple rule
    would likely be wrong (a noun in -o or in -s, an -man compound, several irregular
    plurals)."""
    if not WORD.fullmatch(word):
        return None
    if pos_order == VERB:
        return {"be": "is", "have": "has"}.get(word) or _regular_s(word, verb=True)
    listed = irregular.get(word, [])
    if listed:
        return listed[0] if len(listed) == 1 else None
    if word in ("man", "woman"):
        return word[:-3] + "men"
    if (
        word.endswith("man")
        or word[-1] == "o"
        or (word[-1] == "s" and word[-2:] not in ("ss", "us"))
    ):
        return None
    return _regular_s(word, verb=False)


def _regular_s(word: str, *, verb: bool) -> str:
    if word.endswith(("s", "x", "z", "ch", "sh")) or (verb and word[-1] == "o"):
        return word + "es"
    if word[-1] == "y" and word[-2] not in _VOWELS:
        return word[:-1] + "ies"
    return word + "s"


def write_table(table: dict[str, list[str]], path: Path) -> None:
    text = "".join(f"{word}\t{' '.join(table[word])}\n" for word in sorted(table))
    with (
        path.open("wb") as raw,
        gzip.GzipFile(filename="", mode="wb", fileobj=raw, compresslevel=9, mtime=0) as handle,
    ):
        handle.write(text.encode("ascii"))


def wordnet_licence(copyright_file: Path) -> str:
    """The ``License: WordNet3.0`` paragraph of a Debian copyright file, as plain text."""
    lines = copyright_file.read_text(encoding="utf-8").splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("License: WordNet"))
    body: list[str] = []
    for line in lines[start + 1 :]:
        if not line.startswith(" "):
            break
        body.append("" if line.strip() == "." else line[1:])
    return "\n".join(body).strip() + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wordnet", type=Path, default=Path("/usr/share/wordnet"))
    parser.add_argument("--copyright", type=Path, default=COPYRIGHT)
    parser.add_argument("--per-word", type=int, default=20)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    table = build_table(args.wordnet, args.per_word)
    write_table(table, args.out / "wordnet_synonyms.tsv.gz")
    header = "The synonym table wordnet_synonyms.tsv.gz is derived from WordNet 3.0.\n\n"
    (args.out / "WORDNET-LICENSE.txt").write_text(
        header + wordnet_licence(args.copyright), encoding="utf-8"
    )
    pairs = sum(len(synonyms) for synonyms in table.values())
    print(f"{len(table)} words, {pairs} synonyms -> {args.out / 'wordnet_synonyms.tsv.gz'}")


if __name__ == "__main__":
    main()
