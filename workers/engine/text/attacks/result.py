"""What one attack did to one sample."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class AttackResult:
    attack: str
    original_text: str
    adversarial_text: str
    """The text with the attack's accepted edits; the original when it made none."""
    label: int
    original_prediction: int
    final_prediction: int
    """From a fresh query of the victim on ``adversarial_text`` once the search has ended."""
    words_changed: int
    words_total: int
    queries: int
    """Texts the attack had scored, the final re-check included; the clean prediction every
    sample gets once, before any attack, is not counted here."""

    @property
    def originally_correct(self) -> bool:
        return self.original_prediction == self.label

    @property
    def success(self) -> bool:
        """A correctly classified sample whose adversarial text the victim misclassifies."""
        return self.originally_correct and self.final_prediction != self.label

    @property
    def share_changed(self) -> float:
        return self.words_changed / self.words_total if self.words_total else 0.0

    def to_dict(self) -> dict[str, object]:
        return {
            "attack": self.attack,
            "original_text": self.original_text,
            "adversarial_text": self.adversarial_text,
            "label": self.label,
            "original_prediction": self.original_prediction,
            "final_prediction": self.final_prediction,
            "success": self.success,
            "words_changed": self.words_changed,
            "words_total": self.words_total,
            "share_changed": round(self.share_changed, 6),
            "queries": self.queries,
        }
