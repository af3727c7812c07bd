"""Types shared by the evaluation attacks.

The evaluation attacks are written independently of the training-time perturbations in
``workers.engine.attacks``: a defended model graded by the code that trained it is not graded.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

Classifier = Callable[[Tensor], Tensor]
"""Maps a batch of inputs to logits (pre-softmax scores), in eval mode."""

NormName = Literal["linf", "l2"]


@dataclass(frozen=True)
class Box:
    """The input domain: elementwise ``lower <= x <= upper``.

    ``lower`` and ``upper`` broadcast against one batch of inputs: a scalar tensor, or one value
    per channel shaped ``(1, C, 1, 1)``, or per feature shaped ``(1, F)``.
    """

    lower: Tensor
    upper: Tensor

    def clamp(self, x: Tensor) -> Tensor:
        return torch.maximum(torch.minimum(x, self.upper), self.lower)

    def to(self, device: torch.device | str) -> Box:
        return Box(self.lower.to(device), self.upper.to(device))
