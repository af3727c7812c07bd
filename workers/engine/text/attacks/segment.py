"""Split a text into words and the separators between them.

A text becomes ``separators[0] words[0] separators[1] ... words[n-1] separators[n]``, so joining
the pieces gives back the text exactly, and replacing or deleting a word changes nothing else:
the separators (spaces, punctuation, line breaks) are kept as they were.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

WORD = re.compile(r"[^\W_]+(?:['’-][^\W_]+)*")
"""Letters and digits of any script; an apostrophe or hyphen between two of them stays inside
the word (``don't``, ``state-of-the-art``), anywhere else it is a separator."""


@dataclass(frozen=True)
class Segmentation:
    words: tuple[str, ...]
    separators: tuple[str, ...]
    """One more than ``words``: before the first word, between words, after the last."""

    def join(self, edits: Mapping[int, str] | None = None) -> str:
        """The text with ``edits`` (word index -> new word; ``""`` deletes it) applied."""
        edits = edits or {}
        pieces = [self.separators[0]]
        for index, word in enumerate(self.words):
            pieces.append(edits.get(index, word))
            pieces.append(self.separators[index + 1])
        return "".join(pieces)

    def around(self, index: int, edits: Mapping[int, str] | None = None) -> tuple[str, str]:
        """The text before and after word ``index``, with ``edits`` to the other words applied:
        ``before + w + after`` is the text with word ``index`` replaced by ``w``."""
        edits = edits or {}
        words = [edits.get(i, word) for i, word in enumerate(self.words)]
        seps = self.separators
        before = "".join(sep + word for sep, word in zip(seps[:index], words[:index], strict=True))
        after = "".join(
            sep + word for sep, word in zip(seps[index + 1 : -1], words[index + 1 :], strict=True)
        )
        return before + seps[index], after + seps[-1]

    def without(self, index: int) -> str:
        return self.join({index: ""})


def segment(text: str) -> Segmentation:
    words: list[str] = []
    separators: list[str] = []
    end = 0
    for match in WORD.finditer(text):
        separators.append(text[end : match.start()])
        words.append(match.group())
        end = match.end()
    separators.append(text[end:])
    return Segmentation(tuple(words), tuple(separators))
