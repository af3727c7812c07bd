"""A BERT exported from Hugging Face transformers reads with onnxruntime's parity.

The model is built from a tiny config with random weights: nothing is downloaded. Its classic
export carries what BERT-family graphs carry (Gather on the word table, LayerNorm, Erf,
attention masking through Where/Expand, and GatherElements and IsNaN from the attention code).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime
import pytest
import torch

from workers.engine.models.onnx import load_onnx_classifier
from workers.engine.text.model import export_token_classifier

transformers = pytest.importorskip("transformers")

VOCAB = 200


class _Logits(torch.nn.Module):
    """Hugging Face models return an output object; users export its logits."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=input_ids, attention_mask=attention_mask).logits


@pytest.fixture(scope="module")
def bert_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    config = transformers.BertConfig(
        vocab_size=VOCAB,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=64,
        num_labels=3,
    )
    model = _Logits(transformers.BertForSequenceClassification(config))
    return export_token_classifier(model, tmp_path_factory.mktemp("bert") / "bert.onnx")


def test_a_hugging_face_bert_reads_as_a_text_model(bert_onnx: Path) -> None:
    model = load_onnx_classifier(bert_onnx)
    assert model.token_input is not None
    assert (model.token_input.vocab_size, model.token_input.embedding_dim) == (VOCAB, 32)
    assert model.token_input.mask_name == "attention_mask"


def test_a_hugging_face_bert_matches_onnxruntime_on_padded_batches(bert_onnx: Path) -> None:
    generator = torch.Generator().manual_seed(1)
    ids = torch.randint(0, VOCAB, (4, 11), generator=generator)
    mask = torch.ones(4, 11, dtype=torch.int64)
    mask[1, 6:] = 0
    mask[3, 2:] = 0
    model = load_onnx_classifier(bert_onnx).eval()
    with torch.no_grad():
        ours = model(ids, mask).numpy()
    session = onnxruntime.InferenceSession(str(bert_onnx), providers=["CPUExecutionProvider"])
    (theirs,) = session.run(None, {"input_ids": ids.numpy(), "attention_mask": mask.numpy()})
    np.testing.assert_allclose(ours, theirs, atol=1e-5)
