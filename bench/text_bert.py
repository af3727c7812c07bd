"""Issue 13's BERT figure: a BERT-shaped ONNX from Hugging Face converts with parity and runs one
hardening epoch on the CPU.

A tiny ``BertForSequenceClassification`` (hidden 64, 2 layers, 4 heads, randomly initialised
from a config: nothing is downloaded) gets a WordPiece tokenizer learnt from the fortunes
corpus's training texts (bench/text_corpus.py), and is exported twice as users export it: with
the TorchScript-based exporter and with dynamo (weights kept inside the file). Each export is
read by the engine and compared with onnxruntime on 256 real texts, padded. The classic export
then goes through ``pipeline.harden`` with one epoch and 200 scored texts, all else default.

    python bench/text_bert.py
    python bench/text_bert.py --json /tmp/text-bert.json
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime
import torch
from text_corpus import CorpusMissing, load_corpus, write_jsonl
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers

from workers.engine.models.onnx import load_onnx_classifier
from workers.engine.pipeline import harden
from workers.engine.spec import (
    EvaluationConfig,
    HardeningRequest,
    ModelFormat,
    ModelSource,
    TrainingConfig,
)
from workers.engine.text.model import export_token_classifier
from workers.engine.text.tokenizer import load_tokenizer
from workers.engine.text.training import Encoder

MAX_LENGTH = 64
PARITY_TEXTS = 256


class _Logits(torch.nn.Module):
    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=input_ids, attention_mask=attention_mask).logits


def main() -> None:
    args = _parse()
    torch.set_num_threads(args.threads)
    try:
        import transformers
    except ImportError:
        raise SystemExit("needs transformers: pip install -e '.[dev]'") from None
    try:
        corpus = load_corpus()
    except CorpusMissing as exc:
        raise SystemExit(str(exc)) from None
    figures: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="text-bert-") as folder:
        work = Path(folder)
        tokenizer_path = _wordpiece(corpus.train.texts, work / "tokenizer.json")
        vocab = load_tokenizer(tokenizer_path).max_id + 1
        torch.manual_seed(args.seed)
        config = transformers.BertConfig(
            vocab_size=vocab,
            hidden_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            intermediate_size=128,
            max_position_embeddings=128,
        )
        config.num_labels = 2
        bert = _Logits(transformers.BertForSequenceClassification(config)).eval()
        exports = {
            "classic": export_token_classifier(bert, work / "classic.onnx"),
            "dynamo": _export_dynamo(bert, work / "dynamo.onnx"),
        }
        texts = list(corpus.test.texts[:PARITY_TEXTS])
        for name, path in exports.items():
            figures[f"{name}_export"] = _parity(path, tokenizer_path, texts)
            print(name, figures[f"{name}_export"], flush=True)
        request = HardeningRequest(
            model=ModelSource(exports["classic"], ModelFormat.ONNX),
            train_data=write_jsonl(corpus.train, work / "train.jsonl"),
            eval_data=write_jsonl(corpus.test, work / "test.jsonl"),
            tokenizer=tokenizer_path,
            training=TrainingConfig(epochs=1),
            evaluation=EvaluationConfig(samples=args.eval_samples),
            seed=args.seed,
        )
        started, cpu = time.monotonic(), time.process_time()
        report = harden(request, work / "out").report
        figures["hardening"] = _hardening(report, time.monotonic() - started, cpu)
    print(json.dumps(figures, indent=2))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")


def _parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--eval-samples", type=int, default=200)
    parser.add_argument("--json", type=Path, default=None)
    return parser.parse_args()


def _wordpiece(texts: tuple[str, ...], path: Path) -> Path:
    """BERT's way: lower case, WordPiece, [CLS] text [SEP], cut at 64 tokens."""
    tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    special = ["[PAD]", "[UNK]", "[CLS]", "[SEP]"]
    tokenizer.train_from_iterator(
        texts, trainers.WordPieceTrainer(vocab_size=4000, special_tokens=special)
    )
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)]
    )
    tokenizer.enable_truncation(MAX_LENGTH)
    tokenizer.save(str(path))
    return path


def _export_dynamo(model: torch.nn.Module, path: Path) -> Path:
    ids = torch.ones(2, 8, dtype=torch.int64)
    batch, sequence = torch.export.Dim("batch"), torch.export.Dim("sequence", max=MAX_LENGTH)
    program = torch.onnx.export(
        model,
        (ids, torch.ones_like(ids)),
        dynamo=True,
        input_names=["input_ids", "attention_mask"],
        output_names=["logits"],
        dynamic_shapes=({0: batch, 1: sequence}, {0: batch, 1: sequence}),
        external_data=False,
    )
    assert program is not None
    program.save(str(path), external_data=False)
    return path


def _parity(path: Path, tokenizer_path: Path, texts: list[str]) -> dict[str, Any]:
    started = time.process_time()
    model = load_onnx_classifier(path).eval()
    read_seconds = time.process_time() - started
    ids, mask = Encoder(load_tokenizer(tokenizer_path), MAX_LENGTH).encode(texts)
    with torch.no_grad():
        ours = model(torch.from_numpy(ids), torch.from_numpy(mask)).numpy()
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (theirs,) = session.run(None, {"input_ids": ids, "attention_mask": mask})
    return {
        "texts": len(texts),
        "max_abs_diff": float(np.max(np.abs(ours - theirs))),
        "read_cpu_seconds": round(read_seconds, 2),
        "operators": sorted({n.op_type for n in onnx.load(str(path)).graph.node}),
    }


def _hardening(report: dict[str, Any], seconds: float, cpu_started: float) -> dict[str, Any]:
    history = report["training"]["history"]
    return {
        "epochs": report["training"]["epochs"],
        "train_accuracy_after_epoch_1": history[0]["train_accuracy"] if history else None,
        "texts_scored": report["evaluation"]["samples"],
        "export_check": report["export"],
        "clean": [report[s]["clean_accuracy"]["value"] for s in ("original", "hardened")],
        "worst_case": [report[s]["robust_accuracy"]["value"] for s in ("original", "hardened")],
        "job_wall_seconds": round(seconds),
        "job_cpu_seconds": round(time.process_time() - cpu_started),
    }


if __name__ == "__main__":
    main()
