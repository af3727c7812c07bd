"""Types shared by the evaluation attacks.

The evaluation attacks are written independently of the training-time perturbations in
``workers.engine.attacks``: a defended model graded by the code that trained it is not graded.
Both share only the threat model's geometry (:mod:`workers.engine.geometry`), and the suite
checks every point an attack returns with code of its own.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor

Classifier = Callable[[Tensor], Tensor]
"""Maps a batch of inputs to logits (pre-softmax scores), in eval mode."""
