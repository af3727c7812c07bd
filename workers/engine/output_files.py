"""The names of the files a hardening job leaves behind: one place, read by the engine that
writes them (:mod:`workers.engine.outputs`) and by the server that serves them. It imports
nothing, so the server reads it without torch."""

MODEL_FILE = "hardened.onnx"
MODEL_BUNDLE_FILE = "hardened.onnx.tar"
"""The hardened model when its weights are over the inline limit: an ONNX bundle (an
uncompressed tar of ``hardened.onnx`` and ``hardened.onnx.data``, docs/model-bundles.md)."""
REPORT_FILE = "report.json"
CARD_FILE = "model_card.md"
PLOT_FILE = "robustness_curve.png"
"""The model card links the plot by this name."""
TOKENIZER_FILE = "tokenizer.json"
"""A text model's tokenizer, returned beside the model it encodes texts for."""
FEATURE_SCHEMA_FILE = "feature_schema.json"
"""A tabular model's feature schema, returned unchanged beside the model whose inputs it
describes."""
