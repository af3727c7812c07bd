"""The search both discrete attacks share: greedy over words in order of importance.

Each attack supplies only its candidate replacements for a word; this module ranks the words by
leave-one-out importance, tries every candidate of the most important word in one batch, keeps
the best, and moves on until the prediction flips or the word budget is spent. At the end the
adversarial text is scored once more, afresh, and only that score decides success.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from workers.engine.text.attacks.budget import WordBudget
from workers.engine.text.attacks.result import AttackResult
from workers.engine.text.attacks.segment import Segmentation, segment
from workers.engine.text.attacks.victim import CountingVictim, Victim

Candidates = Callable[[str], Sequence[str]]
"""A word's candidate replacements, in a deterministic order."""


def greedy_attack(
    name: str,
    text: str,
    label: int,
    clean_probs: np.ndarray,
    victim: Victim,
    candidates: Candidates,
    budget: WordBudget,
) -> AttackResult:
    """Attack one sample; ``clean_probs`` is the victim's output on ``text``, already paid for."""
    counter = CountingVictim(victim)
    segmentation = segment(text)
    original_prediction = int(np.argmax(clean_probs))
    edits: dict[int, str] = {}
    if original_prediction == label:
        options = _options(segmentation, candidates)
        limit = budget.words_for(len(segmentation.words))
        if options and limit:
            order = importance_order(segmentation, options, label, clean_probs, counter)
            edits = _search(segmentation, options, order, label, clean_probs, counter, limit)
    adversarial = segmentation.join(edits)
    final_prediction = original_prediction
    if edits:
        final_prediction = int(np.argmax(counter([adversarial])[0]))
    return AttackResult(
        attack=name,
        original_text=text,
        adversarial_text=adversarial,
        label=label,
        original_prediction=original_prediction,
        final_prediction=final_prediction,
        words_changed=len(edits),
        words_total=len(segmentation.words),
        queries=counter.queries,
    )


def importance_order(
    segmentation: Segmentation,
    options: dict[int, list[str]],
    label: int,
    clean_probs: np.ndarray,
    victim: Victim,
) -> list[int]:
    """The editable words, most important first: the larger the drop in the true class's
    probability when the word is deleted, the earlier; equal drops keep text order."""
    indices = sorted(options)
    probs = victim([segmentation.without(index) for index in indices])
    drops = clean_probs[label] - probs[:, label]
    ranked = np.argsort(-drops, kind="stable")
    return [indices[int(position)] for position in ranked]


def _options(segmentation: Segmentation, candidates: Candidates) -> dict[int, list[str]]:
    options: dict[int, list[str]] = {}
    for index, word in enumerate(segmentation.words):
        distinct = list(dict.fromkeys(c for c in candidates(word) if c and c != word))
        if distinct:
            options[index] = distinct
    return options


def _search(
    segmentation: Segmentation,
    options: dict[int, list[str]],
    order: list[int],
    label: int,
    clean_probs: np.ndarray,
    victim: Victim,
    limit: int,
) -> dict[int, str]:
    edits: dict[int, str] = {}
    true_prob = float(clean_probs[label])
    for index in order:
        if len(edits) == limit:
            break
        before, after = segmentation.around(index, edits)
        tried = [before + word + after for word in options[index]]
        probs = victim(tried)
        choice = best_candidate(probs, label)
        flips = int(np.argmax(probs[choice])) != label
        if not flips and probs[choice, label] >= true_prob:
            continue
        edits[index] = options[index][choice]
        true_prob = float(probs[choice, label])
        if flips:
            break
    return edits


def best_candidate(probs: np.ndarray, label: int) -> int:
    """Among the candidates that flip the prediction, if any, else among all: the one with the
    lowest probability of the true class; the first such on ties."""
    flipping = np.flatnonzero(np.argmax(probs, axis=1) != label)
    pool = flipping if flipping.size else np.arange(len(probs))
    return int(pool[np.argmin(probs[pool, label])])
