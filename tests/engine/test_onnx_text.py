"""Text classifiers read from ONNX: parity with onnxruntime for the usual architectures, the
token input and its attention mask, the embedding-space view (embed / classify_embedded),
training and write-back, and refusals.

Each model is tiny and exported in the test with torch.onnx.export (classic exporter, opset 17,
batch 2, a dynamic batch and sequence axis unless said otherwise); it runs at batch 5 and, where
the sequence axis is dynamic, at another length than the exported one.
"""

from __future__ import annotations

import contextlib
import io
import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper
from torch import Tensor, nn

from workers.engine.errors import InvalidData, UnsupportedModel, float_input_required
from workers.engine.models.onnx import OnnxClassifier, load_onnx_classifier, write_trained_onnx

VOCAB, DIM, CLASSES = 50, 8, 3
EXPORT_BATCH, EXPORT_LENGTH = 2, 6
RUN_BATCH, RUN_LENGTH = 5, 9
TOLERANCE = 1e-5


# --------------------------------------------------------------------------------------------
# Models
# --------------------------------------------------------------------------------------------


class PooledEmbeddings(nn.Module):
    def __init__(self, pool: str) -> None:
        super().__init__()
        self.embedding = nn.Embedding(VOCAB, DIM)
        self.head = nn.Linear(DIM, CLASSES)
        self.pool = pool

    def forward(self, ids: Tensor) -> Tensor:
        x = self.embedding(ids)
        return self.head(x.mean(dim=1) if self.pool == "mean" else x.amax(dim=1))


class KimCNN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embedding = nn.Embedding(VOCAB, DIM)
        self.convs = nn.ModuleList(nn.Conv1d(DIM, 4, k, padding=k // 2) for k in (2, 3))
        self.head = nn.Linear(8, CLASSES)

    def forward(self, ids: Tensor) -> Tensor:
        x = self.embedding(ids).transpose(1, 2)
        pooled = [torch.relu(conv(x)).amax(dim=2) for conv in self.convs]
        return self.head(torch.cat(pooled, dim=1))


class Recurrent(nn.Module):
    def __init__(self, cell: str, layers: int, bidirectional: bool, readout: str) -> None:
        super().__init__()
        self.embedding = nn.Embedding(VOCAB, DIM)
        rnn = nn.LSTM if cell == "lstm" else nn.GRU
        self.rnn = rnn(DIM, 5, num_layers=layers, bidirectional=bidirectional, batch_first=True)
        self.head = nn.Linear(5 * (2 if bidirectional else 1), CLASSES)
        self.readout = readout

    def forward(self, ids: Tensor) -> Tensor:
        out, state = self.rnn(self.embedding(ids))
        if self.readout == "mean":
            return self.head(out.mean(dim=1))
        h = state[0] if isinstance(state, tuple) else state
        return self.head(torch.cat([h[-2], h[-1]], dim=1) if self.rnn.bidirectional else h[-1])


class SmallTransformer(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embedding = nn.Embedding(VOCAB, DIM)
        layer = nn.TransformerEncoderLayer(DIM, 2, dim_feedforward=16, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
        self.head = nn.Linear(DIM, CLASSES)

    def forward(self, ids: Tensor, attention_mask: Tensor) -> Tensor:
        x = self.encoder(self.embedding(ids), src_key_padding_mask=attention_mask == 0)
        keep = attention_mask.unsqueeze(-1).to(x.dtype)
        return self.head((x * keep).sum(dim=1) / keep.sum(dim=1).clamp(min=1.0))


class SelfAttention(nn.Module):
    def __init__(self, hidden: int, heads: int) -> None:
        super().__init__()
        self.heads, self.size = heads, hidden // heads
        self.qkv = nn.Linear(hidden, 3 * hidden)
        self.out = nn.Linear(hidden, hidden)

    def forward(self, x: Tensor, additive_mask: Tensor) -> Tensor:
        b, t, _ = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.heads, self.size).permute(2, 0, 3, 1, 4)
        scores = q @ k.transpose(-1, -2) / math.sqrt(self.size) + additive_mask
        context = torch.softmax(scores, dim=-1) @ v
        return self.out(context.transpose(1, 2).reshape(b, t, -1))


class EncoderBlock(nn.Module):
    def __init__(self, hidden: int, heads: int) -> None:
        super().__init__()
        self.attention = SelfAttention(hidden, heads)
        self.norm1 = nn.LayerNorm(hidden)
        self.ff1 = nn.Linear(hidden, 2 * hidden)
        self.ff2 = nn.Linear(2 * hidden, hidden)
        self.norm2 = nn.LayerNorm(hidden)

    def forward(self, x: Tensor, additive_mask: Tensor) -> Tensor:
        x = self.norm1(x + self.attention(x, additive_mask))
        h = self.ff1(x)
        h = 0.5 * h * (1.0 + torch.erf(h / math.sqrt(2.0)))
        return self.norm2(x + self.ff2(h))


class TinyBert(nn.Module):
    """BERT's shape by hand: word + position + token-type embeddings, post-norm encoder blocks
    with an additive attention mask, a Tanh pooler on the first token and a classifier."""

    def __init__(self, mask_style: str, vocab: int = 1000, hidden: int = 32) -> None:
        super().__init__()
        self.words = nn.Embedding(vocab, hidden)
        self.positions = nn.Embedding(64, hidden)
        self.token_types = nn.Embedding(2, hidden)
        self.norm = nn.LayerNorm(hidden)
        self.blocks = nn.ModuleList(EncoderBlock(hidden, 2) for _ in range(2))
        self.pooler = nn.Linear(hidden, hidden)
        self.classifier = nn.Linear(hidden, CLASSES)
        self.mask_style = mask_style

    def forward(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        t = input_ids.shape[1]
        positions = torch.arange(t, device=input_ids.device).unsqueeze(0)
        x = self.words(input_ids) + self.positions(positions)
        x = self.norm(x + self.token_types(torch.zeros_like(input_ids)))
        if self.mask_style == "mul":
            additive = (1.0 - attention_mask[:, None, None, :].to(x.dtype)) * -10000.0
        else:
            keep = attention_mask[:, None, None, :].bool().expand(-1, 1, t, -1)
            additive = torch.where(keep, 0.0, torch.finfo(x.dtype).min)
        for block in self.blocks:
            x = block(x, additive)
        return self.classifier(torch.tanh(self.pooler(x[:, 0])))


@dataclass(frozen=True)
class Arch:
    name: str
    build: Callable[[], nn.Module]
    masked: bool = False
    vocab: int = VOCAB
    dynamic_length: bool = True

    def __str__(self) -> str:
        return self.name


ARCHS = {
    arch.name: arch
    for arch in (
        Arch("embedding-mean", lambda: PooledEmbeddings("mean")),
        Arch("embedding-max", lambda: PooledEmbeddings("max")),
        Arch("kim-cnn", KimCNN),
        Arch("lstm-last", lambda: Recurrent("lstm", 1, False, "last")),
        Arch("lstm-2-layers-bidirectional-last", lambda: Recurrent("lstm", 2, True, "last")),
        Arch("lstm-bidirectional-mean", lambda: Recurrent("lstm", 1, True, "mean")),
        Arch("gru-mean", lambda: Recurrent("gru", 1, False, "mean")),
        Arch("gru-2-layers-bidirectional-last", lambda: Recurrent("gru", 2, True, "last")),
        # the classic exporter hard-codes the sequence length in nn.MultiheadAttention
        Arch("transformer-encoder", SmallTransformer, masked=True, dynamic_length=False),
        Arch("bert-mask-mul", lambda: TinyBert("mul"), masked=True, vocab=1000),
        Arch("bert-mask-where", lambda: TinyBert("where"), masked=True, vocab=1000),
    )
}


# --------------------------------------------------------------------------------------------
# Exports and runs
# --------------------------------------------------------------------------------------------


def _export(
    arch: Arch, path: Path, *, dynamic_length: bool | None = None, dynamo: bool = False
) -> Path:
    torch.manual_seed(0)
    module = arch.build().eval()
    ids, mask = _tokens(EXPORT_BATCH, EXPORT_LENGTH, arch.vocab)
    args = (ids, mask) if arch.masked else (ids,)
    names = ["input_ids", "attention_mask"][: len(args)]
    dynamic = arch.dynamic_length if dynamic_length is None else dynamic_length
    axes = {0: "batch", 1: "sequence"} if dynamic else {0: "batch"}
    with (
        contextlib.redirect_stdout(io.StringIO()),
        contextlib.redirect_stderr(io.StringIO()),
        warnings.catch_warnings(),
    ):
        warnings.simplefilter("ignore")
        if dynamo:
            batch, length = torch.export.Dim("batch"), torch.export.Dim("sequence", max=60)
            shapes = {0: batch, 1: length} if dynamic else {0: batch}
            torch.onnx.export(
                module,
                args,
                path,
                input_names=names,
                output_names=["logits"],
                dynamo=True,
                external_data=False,
                dynamic_shapes=tuple(shapes for _ in args),
            )
        else:
            torch.onnx.export(
                module,
                args,
                path,
                input_names=names,
                output_names=["logits"],
                opset_version=17,
                dynamo=False,
                dynamic_axes=dict.fromkeys(names, axes),
            )
    return path


def _tokens(batch: int, length: int, vocab: int, seed: int = 0) -> tuple[Tensor, Tensor]:
    """Random ids and a mask whose rows keep 2..length leading tokens, padding with id 0."""
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, vocab, (batch, length), generator=generator)
    kept = torch.randint(2, length + 1, (batch,), generator=generator)
    kept[0] = length
    mask = (torch.arange(length)[None, :] < kept[:, None]).to(torch.int64)
    return ids * mask, mask


def _run_length(arch: Arch) -> int:
    return RUN_LENGTH if arch.dynamic_length else EXPORT_LENGTH


def _feeds(arch: Arch, ids: Tensor, mask: Tensor) -> dict[str, np.ndarray]:
    feeds = {"input_ids": ids.numpy()}
    if arch.masked:
        feeds["attention_mask"] = mask.numpy()
    return feeds


def _ort_logits(model: Path | onnx.ModelProto, feeds: dict[str, np.ndarray]) -> np.ndarray:
    source = str(model) if isinstance(model, Path) else model.SerializeToString()
    session = ort.InferenceSession(source, providers=["CPUExecutionProvider"])
    return np.asarray(session.run(None, feeds)[0])


def _logits(model: OnnxClassifier, arch: Arch, ids: Tensor, mask: Tensor) -> np.ndarray:
    with torch.no_grad():
        return model.eval()(ids, mask if arch.masked else None).numpy()


@pytest.fixture
def bert(tmp_path: Path) -> tuple[Path, OnnxClassifier]:
    path = _export(ARCHS["bert-mask-mul"], tmp_path / "bert.onnx")
    return path, load_onnx_classifier(path)


# --------------------------------------------------------------------------------------------
# Parity
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("arch", ARCHS.values(), ids=str)
def test_text_classifier_matches_onnxruntime(tmp_path: Path, arch: Arch) -> None:
    path = _export(arch, tmp_path / "model.onnx")
    model = load_onnx_classifier(path)
    ids, mask = _tokens(RUN_BATCH, _run_length(arch), arch.vocab, seed=1)

    np.testing.assert_allclose(
        _logits(model, arch, ids, mask),
        _ort_logits(path, _feeds(arch, ids, mask)),
        rtol=TOLERANCE,
        atol=TOLERANCE,
    )


@pytest.mark.slow
@pytest.mark.parametrize(
    "name", ["lstm-2-layers-bidirectional-last", "transformer-encoder", "bert-mask-where"]
)
def test_dynamo_export_matches_onnxruntime(tmp_path: Path, name: str) -> None:
    arch = ARCHS[name]
    path = _export(arch, tmp_path / "model.onnx", dynamic_length=True, dynamo=True)
    model = load_onnx_classifier(path)
    assert model.token_input is not None
    length = model.token_input.max_length or RUN_LENGTH
    ids, mask = _tokens(RUN_BATCH, length, arch.vocab, seed=1)

    np.testing.assert_allclose(
        _logits(model, arch, ids, mask),
        _ort_logits(path, _feeds(arch, ids, mask)),
        rtol=TOLERANCE,
        atol=TOLERANCE,
    )


def test_masked_positions_do_not_change_the_logits(bert: tuple[Path, OnnxClassifier]) -> None:
    model = bert[1].eval()
    ids, mask = _tokens(RUN_BATCH, RUN_LENGTH, 1000, seed=2)
    other = torch.where(mask.bool(), ids, torch.full_like(ids, 7))

    with torch.no_grad():
        torch.testing.assert_close(model(ids, mask), model(other, mask))


# --------------------------------------------------------------------------------------------
# The token input
# --------------------------------------------------------------------------------------------


def test_bert_token_input_is_the_word_embedding_lookup_with_its_mask(
    bert: tuple[Path, OnnxClassifier],
) -> None:
    path, model = bert
    token = model.token_input
    graph = onnx.load(path).graph
    word_lookup = next(n for n in graph.node if n.op_type == "Gather" and "words.weight" in n.input)

    assert token is not None
    assert (token.ids_name, token.mask_name) == ("input_ids", "attention_mask")
    assert (token.vocab_size, token.embedding_dim) == (1000, 32)
    assert token.embedding_table == "words.weight"
    assert token.embedding_output == word_lookup.output[0]
    assert token.max_length is None
    assert not token.ids_read_elsewhere


def test_model_without_mask_has_no_mask_input(tmp_path: Path) -> None:
    model = load_onnx_classifier(_export(ARCHS["lstm-last"], tmp_path / "lstm.onnx"))

    assert model.token_input is not None
    assert model.token_input.mask_name is None


def test_static_sequence_axis_gives_max_length(tmp_path: Path) -> None:
    path = _export(ARCHS["kim-cnn"], tmp_path / "kim.onnx", dynamic_length=False)
    model = load_onnx_classifier(path)

    assert model.token_input is not None
    assert model.token_input.max_length == EXPORT_LENGTH
    with pytest.raises(InvalidData, match="sequences of length 6"):
        model(torch.ones(2, EXPORT_LENGTH + 1, dtype=torch.int64))


def test_image_classifier_has_no_token_input_and_no_embedding_view(tmp_path: Path) -> None:
    net = nn.Sequential(nn.Flatten(), nn.Linear(12, 3)).eval()
    path = tmp_path / "mlp.onnx"
    with contextlib.redirect_stdout(io.StringIO()):
        torch.onnx.export(net, (torch.randn(2, 3, 4),), path, dynamo=False, input_names=["x"])
    model = load_onnx_classifier(path)

    assert model.token_input is None
    with pytest.raises(TypeError, match="not a text classifier"):
        model.embed(torch.zeros(2, 4, dtype=torch.int64))


def test_embedding_tables_and_recurrent_weights_are_trainable(tmp_path: Path) -> None:
    lstm = load_onnx_classifier(_export(ARCHS["lstm-last"], tmp_path / "lstm.onnx"))
    graph = onnx.load(tmp_path / "lstm.onnx").graph
    node = next(n for n in graph.node if n.op_type == "LSTM")
    bert = load_onnx_classifier(_export(ARCHS["bert-mask-mul"], tmp_path / "bert.onnx"))

    assert {"embedding.weight", *node.input[1:4]} <= set(lstm.trainable_parameter_names)
    assert {"words.weight", "positions.weight", "token_types.weight"} <= set(
        bert.trainable_parameter_names
    )


# --------------------------------------------------------------------------------------------
# The embedding-space view
# --------------------------------------------------------------------------------------------


def test_forward_is_classify_embedded_of_embed(bert: tuple[Path, OnnxClassifier]) -> None:
    model = bert[1].eval()
    ids, mask = _tokens(RUN_BATCH, RUN_LENGTH, 1000, seed=3)

    with torch.no_grad():
        embedded = model.embed(ids)
        torch.testing.assert_close(model.classify_embedded(embedded, mask), model(ids, mask))
    assert embedded.shape == (RUN_BATCH, RUN_LENGTH, 32)


def test_embed_reads_the_word_embedding_table(bert: tuple[Path, OnnxClassifier]) -> None:
    model = bert[1]
    ids = torch.tensor([[3, 999, 0]])

    table = model.onnx_tensor("words.weight")
    torch.testing.assert_close(model.embed(ids)[0], table[[3, 999, 0]])


def test_gradient_flows_to_the_embedded_input(bert: tuple[Path, OnnxClassifier]) -> None:
    model = bert[1].eval()
    ids, mask = _tokens(RUN_BATCH, RUN_LENGTH, 1000, seed=4)
    embedded = model.embed(ids).detach().requires_grad_(True)

    loss = nn.functional.cross_entropy(model.classify_embedded(embedded, mask), ids[:, 0] % 3)
    loss.backward()

    assert embedded.grad is not None
    assert torch.isfinite(embedded.grad).all()
    assert float(embedded.grad.abs().sum()) > 0


def test_gradient_of_embed_reaches_the_table(tmp_path: Path) -> None:
    model = load_onnx_classifier(_export(ARCHS["gru-mean"], tmp_path / "gru.onnx"))
    ids, _ = _tokens(RUN_BATCH, RUN_LENGTH, VOCAB, seed=5)

    model(ids).sum().backward()

    grad = model.onnx_tensor("embedding.weight").grad
    assert grad is not None
    assert float(grad[ids.unique()].abs().sum()) > 0


def test_mask_defaults_to_all_tokens(bert: tuple[Path, OnnxClassifier]) -> None:
    model = bert[1].eval()
    ids, _ = _tokens(RUN_BATCH, RUN_LENGTH, 1000, seed=6)

    with torch.no_grad():
        torch.testing.assert_close(model(ids), model(ids, torch.ones_like(ids)))


# --------------------------------------------------------------------------------------------
# Training and write-back
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["lstm-2-layers-bidirectional-last", "gru-mean", "bert-mask-where"]
)
def test_written_model_after_a_training_step_matches_the_module(tmp_path: Path, name: str) -> None:
    arch = ARCHS[name]
    path = _export(arch, tmp_path / "model.onnx")
    model = load_onnx_classifier(path).train()
    ids, mask = _tokens(8, RUN_LENGTH, arch.vocab, seed=7)
    before = {n: model.onnx_tensor(n).detach().clone() for n in model.trainable_parameter_names}

    optimiser = torch.optim.SGD(model.parameters(), lr=0.5)
    loss = nn.functional.cross_entropy(model(ids, mask if arch.masked else None), ids[:, 0] % 3)
    loss.backward()
    optimiser.step()
    written = tmp_path / "trained.onnx"
    write_trained_onnx(model, written)

    changed = [n for n, t in before.items() if not torch.equal(t, model.onnx_tensor(n))]
    assert len(changed) == len(before)
    original, trained = onnx.load(path).graph, onnx.load(written).graph
    assert _signature(trained.input) == _signature(original.input)
    assert _signature(trained.output) == _signature(original.output)
    ids, mask = _tokens(RUN_BATCH, RUN_LENGTH, arch.vocab, seed=8)
    np.testing.assert_allclose(
        _logits(model, arch, ids, mask),
        _ort_logits(written, _feeds(arch, ids, mask)),
        rtol=TOLERANCE,
        atol=TOLERANCE,
    )


def _signature(values: Sequence[onnx.ValueInfoProto]) -> list[tuple[str, int, int]]:
    """Name, element type and rank of each value."""
    types = [v.type.tensor_type for v in values]
    return [(v.name, t.elem_type, len(t.shape.dim)) for v, t in zip(values, types, strict=True)]


# --------------------------------------------------------------------------------------------
# Refusals
# --------------------------------------------------------------------------------------------


def _text_graph(inputs: list[onnx.ValueInfoProto], nodes: list[onnx.NodeProto]) -> onnx.ModelProto:
    """Inputs -> nodes -> 'pooled' [N, 4] -> Gemm -> y [N, 3], with a 10 x 4 table 'table'."""
    rng = np.random.default_rng(0)
    inits = {
        "table": rng.standard_normal((10, 4)).astype(np.float32),
        "w": rng.standard_normal((4, 3)).astype(np.float32),
    }
    graph = helper.make_graph(
        [*nodes, helper.make_node("Gemm", ["pooled", "w"], ["y"])],
        "g",
        inputs,
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])],
        [numpy_helper.from_array(v, k) for k, v in inits.items()],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def _ids(
    name: str = "ids", elem: int = TensorProto.INT64, shape: list[int | str] | None = None
) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, elem, shape or ["N", "T"])


_LOOKUP = helper.make_node("Gather", ["table", "ids"], ["e"])
_POOL = helper.make_node("ReduceMean", ["e"], ["pooled"], axes=[1], keepdims=0)


def test_hand_built_lookup_is_read_as_a_text_classifier() -> None:
    model = OnnxClassifier(_text_graph([_ids()], [_LOOKUP, _POOL]))

    assert model.token_input is not None
    assert (model.token_input.vocab_size, model.token_input.embedding_dim) == (10, 4)


def test_integer_input_without_embedding_lookup_needs_a_float_input() -> None:
    cast = helper.make_node("Cast", ["ids"], ["pooled"], to=TensorProto.FLOAT)

    with pytest.raises(UnsupportedModel) as refused:
        OnnxClassifier(_text_graph([_ids(shape=["N", 4])], [cast]))
    assert str(refused.value) == float_input_required("ids", "INT64")
    assert "token ids that feed an embedding lookup" in str(refused.value)


def test_float_input_beside_token_ids_is_refused_by_name() -> None:
    extra = helper.make_tensor_value_info("scale", TensorProto.FLOAT, ["N", "T"])
    nodes = [_LOOKUP, helper.make_node("ReduceMean", ["e"], ["pooled"], axes=[1], keepdims=0)]

    with pytest.raises(UnsupportedModel, match=r"input 'scale' .* cannot be placed"):
        OnnxClassifier(_text_graph([_ids(), extra], nodes))


def test_mask_of_another_shape_is_refused_by_name() -> None:
    mask = _ids("mask", shape=["N", 5, 2])

    with pytest.raises(UnsupportedModel, match=r"input 'mask' .* cannot be placed"):
        OnnxClassifier(_text_graph([_ids(shape=["N", 5]), mask], [_LOOKUP, _POOL]))


def test_two_inputs_feeding_embedding_lookups_are_refused() -> None:
    types = helper.make_node("Gather", ["table", "types"], ["f"])
    add = helper.make_node("Add", ["e", "f"], ["s"])
    pool = helper.make_node("ReduceMean", ["s"], ["pooled"], axes=[1], keepdims=0)

    with pytest.raises(UnsupportedModel, match="inputs 'ids', 'types' each feed an embedding"):
        OnnxClassifier(_text_graph([_ids(), _ids("types")], [_LOOKUP, types, add, pool]))


def test_dynamic_sequence_axis_that_does_not_run_at_another_length_is_refused(
    tmp_path: Path,
) -> None:
    path = _export(ARCHS["transformer-encoder"], tmp_path / "t.onnx", dynamic_length=True)

    with pytest.raises(UnsupportedModel, match=r"sequence length 7 .* dynamo=True"):
        load_onnx_classifier(path)


def test_token_ids_outside_the_vocabulary_are_invalid_data(
    bert: tuple[Path, OnnxClassifier],
) -> None:
    with pytest.raises(InvalidData, match=r"\[0, 1000\)"):
        bert[1](torch.tensor([[1, 1000]]), torch.ones(1, 2, dtype=torch.int64))


def test_mask_of_another_shape_than_the_ids_is_invalid_data(
    bert: tuple[Path, OnnxClassifier],
) -> None:
    with pytest.raises(InvalidData, match="attention mask has shape"):
        bert[1](torch.ones(2, 4, dtype=torch.int64), torch.ones(2, 3, dtype=torch.int64))


def test_float_token_ids_are_invalid_data(bert: tuple[Path, OnnxClassifier]) -> None:
    with pytest.raises(InvalidData, match="must be integers"):
        bert[1](torch.ones(2, 4))


def test_ids_read_beyond_the_lookup_are_required_by_classify_embedded() -> None:
    pad = helper.make_node("Equal", ["ids", "zero"], ["is_pad"])
    zero = helper.make_node("Constant", [], ["zero"], value_int=0)
    keep = helper.make_node("Not", ["is_pad"], ["keep"])
    weight = helper.make_node("Cast", ["keep"], ["kw"], to=TensorProto.FLOAT)
    expand = helper.make_node("Unsqueeze", ["kw", "last"], ["kw3"])
    last = helper.make_node("Constant", [], ["last"], value_ints=[2])
    masked = helper.make_node("Mul", ["e", "kw3"], ["me"])
    pool = helper.make_node("ReduceSum", ["me", "one"], ["pooled"], keepdims=0)
    one = helper.make_node("Constant", [], ["one"], value_ints=[1])
    nodes = [_LOOKUP, zero, pad, keep, weight, last, expand, masked, one, pool]
    model = OnnxClassifier(_text_graph([_ids()], nodes)).eval()
    ids = torch.tensor([[1, 2, 0], [3, 0, 0]])

    assert model.token_input is not None
    assert model.token_input.ids_read_elsewhere
    with pytest.raises(InvalidData, match="pass ids="):
        model.classify_embedded(model.embed(ids))
    torch.testing.assert_close(model.classify_embedded(model.embed(ids), ids=ids), model(ids))
