"""Train an uploaded ONNX classifier in PyTorch, then write the trained weights back into it.

Design decision: we do not use a third-party onnx->torch converter. :class:`OnnxClassifier`
interprets the user's ONNX graph node by node with torch operations, and its trainable weights are
the graph's initializers. After training, :func:`write_trained_onnx` copies the user's own
``ModelProto`` and only replaces the initializer tensors, so the artifact keeps the user's nodes,
names, outputs and final Softmax: the output contract they sent comes back unchanged in structure.
Converters rebuild a different graph (renamed tensors, fused or split operators, a different
output), which would silently change what the user deploys.

The few edits we do make to the user's graph are deliberate and reported in ``notes``:

* a batch size fixed at export becomes the symbolic dimension ``batch``, and Reshape targets that
  hard-code that batch size are rewritten to follow the input (``-1``, or ``0`` = copy);
* an initializer that exporters de-duplicated between a weight and BatchNorm running statistics
  (equal tensors, e.g. an untrained layer) is untied into a new initializer, because running
  statistics are updated in place during training;
* model-local functions are inlined.

Image and tabular classifiers take one float tensor. Text classifiers take token ids (and
optionally an attention mask) that feed an embedding lookup; :class:`TokenInput` describes them
and the module can be split at that lookup for perturbations in embedding space.

See docs/onnx-conversion.md for the operator list and the rules deciding what is trainable.
"""

from workers.engine.models.onnx.module import (
    OnnxClassifier,
    load_onnx_classifier,
    write_trained_onnx,
)
from workers.engine.models.onnx.tokens import TokenInput

__all__ = ["OnnxClassifier", "TokenInput", "load_onnx_classifier", "write_trained_onnx"]
