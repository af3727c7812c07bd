"""Scale a classifier's logits by rewriting its output layer, checked numerically.

Defensive distillation trains at temperature T and deploys the same network at T = 1, so a
distilled network's logits are T times those of a network trained plainly. Started from the
upload, teacher and student would first have to grow their logits a hundredfold, and on small
data they lost several points of clean accuracy on the way (94.5% -> 78.8% at T = 100). Started
from the upload with its output layer multiplied by T, both begin where the upload is: the same
predictions, the same probabilities at temperature T.

The output layer of a graph read from ONNX has no name we can trust, so the candidates are the
parameters shaped like an output layer (a matrix with a side of ``num_classes``, a bias of
``num_classes``), and a candidate is kept only if scaling it scales the logits on real inputs.
"""

from __future__ import annotations

import itertools

import torch
from torch import Tensor, nn

TOLERANCE = 1e-4


def scale_logits(model: nn.Module, factor: float, probe: Tensor, num_classes: int) -> bool:
    """Multiply ``model``'s logits by ``factor`` in place, by scaling its output layer. Returns
    False, with the model unchanged, when no set of parameters does that exactly."""
    was_training = model.training
    model.eval()
    with torch.no_grad():
        reference = model(probe).float()
        for group in _candidates(model, num_classes):
            for parameter in group:
                parameter.mul_(factor)
            if _scaled(model(probe).float(), reference, factor):
                model.train(was_training)
                return True
            for parameter in group:
                parameter.div_(factor)
    model.train(was_training)
    return False


def _candidates(model: nn.Module, num_classes: int) -> list[list[nn.Parameter]]:
    """Output-layer shaped groups, the last-registered weights first: a weight alone, or with
    one bias of ``num_classes`` values."""
    parameters = list(model.parameters())
    weights = [p for p in reversed(parameters) if p.dim() == 2 and num_classes in p.shape]
    biases = [p for p in reversed(parameters) if p.dim() == 1 and p.shape[0] == num_classes]
    groups: list[list[nn.Parameter]] = []
    for weight, bias in itertools.product(weights[:3], [None, *biases[:3]]):
        groups.append([weight] if bias is None else [weight, bias])
    return groups


def _scaled(logits: Tensor, reference: Tensor, factor: float) -> bool:
    expected = reference * factor
    scale = float(expected.abs().max()) or 1.0
    return bool((logits - expected).abs().max() <= TOLERANCE * scale)
