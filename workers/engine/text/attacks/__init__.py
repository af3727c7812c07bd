"""Discrete, meaning-preserving attacks that score a text classifier as a black box.

The classifier is a function from a batch of texts to class probabilities; every text it scores
is a query and is counted. These attacks grade models; training-time augmentation is written
separately, so that no model is graded by the code that trained it (docs/text-evaluation.md).
"""

from workers.engine.text.attacks.budget import WordBudget
from workers.engine.text.attacks.char import CharAttack
from workers.engine.text.attacks.result import AttackResult
from workers.engine.text.attacks.run import TextAttack, TextEvaluation, run_attacks
from workers.engine.text.attacks.segment import Segmentation, segment
from workers.engine.text.attacks.summary import AttackSummary
from workers.engine.text.attacks.victim import CountingVictim, Victim
from workers.engine.text.attacks.word import WordAttack

__all__ = [
    "AttackResult",
    "AttackSummary",
    "CharAttack",
    "CountingVictim",
    "Segmentation",
    "TextAttack",
    "TextEvaluation",
    "Victim",
    "WordAttack",
    "WordBudget",
    "run_attacks",
    "segment",
]
