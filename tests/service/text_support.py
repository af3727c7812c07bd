"""Text models, tokenizers and labelled texts for the service's tests, and the raw gRPC calls
that upload them (tiny ones, from :mod:`tests.engine.text.support`)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tempering.v1 import hardening_pb2 as pb
from tempering.v1 import hardening_pb2_grpc as pb_grpc

from tests.engine.text import support
from tests.shared_support import chunked, sha256


@dataclass(frozen=True)
class TextInputs:
    model: Path
    tokenizer: Path
    train: Path
    test: Path
    vocab_size: int


def make_text_inputs(folder: Path) -> TextInputs:
    """A 2-class embedding-bag model, the word-level tokenizer it was made for, and JSON Lines
    of 80 training and 30 test texts."""
    folder.mkdir(parents=True, exist_ok=True)
    trained = support.word_level_tokenizer(support.sentences(50))
    tokenizer = folder / "tokenizer.json"
    trained.save(str(tokenizer))
    vocab = trained.get_vocab_size()
    return TextInputs(
        model=support.export_text_model(folder / "text.onnx", vocab),
        tokenizer=tokenizer,
        train=support.write_jsonl(folder / "train.jsonl", support.labelled(80, seed=1)),
        test=support.write_jsonl(folder / "test.jsonl", support.labelled(30, seed=2)),
        vocab_size=vocab,
    )


def tokenizer_requests(
    data: bytes, *, size: int | None = None
) -> Iterator[pb.UploadTokenizerRequest]:
    yield pb.UploadTokenizerRequest(
        header=pb.TokenizerUploadHeader(
            name="tokenizer.json",
            size_bytes=len(data) if size is None else size,
            sha256=sha256(data),
        )
    )
    for chunk in chunked(data):
        yield pb.UploadTokenizerRequest(chunk=chunk)


def upload_tokenizer(stub: pb_grpc.HardeningServiceStub, data: bytes) -> str:
    return stub.UploadTokenizer(tokenizer_requests(data), timeout=60).artifact_id


def upload_texts(
    stub: pb_grpc.HardeningServiceStub, data: bytes, fmt: int = pb.DATASET_FORMAT_JSONL
) -> str:
    def requests() -> Iterator[pb.UploadDatasetRequest]:
        yield pb.UploadDatasetRequest(
            header=pb.DatasetUploadHeader(
                name="texts", format=fmt, size_bytes=len(data), sha256=sha256(data)
            )
        )
        for chunk in chunked(data):
            yield pb.UploadDatasetRequest(chunk=chunk)

    return stub.UploadDataset(requests(), timeout=60).artifact_id


def text_spec(
    model_id: str,
    train_id: str,
    tokenizer_id: str = "",
    eval_id: str = "",
    max_length: int | None = None,
) -> pb.JobSpec:
    """A pgd text job of one epoch, scored on a dozen texts."""
    return pb.JobSpec(
        model_id=model_id,
        train_dataset_id=train_id,
        eval_dataset_id=eval_id,
        tokenizer_id=tokenizer_id,
        training=pb.Training(epochs=1, pgd=pb.Pgd()),
        evaluation=pb.Evaluation(samples=12),
        text_threat_model=pb.TextThreatModel(max_length=max_length),
    )
