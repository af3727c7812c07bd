"""Issue 13's figure with the defaults a user gets: a text classifier trained plainly in this
script, sent as ONNX through the engine's one entry point with nothing but its tokenizer and
data, against itself before hardening, in one process.

The plain reference is the model a user would send: a Kim CNN (embedding 64, convolutions of
widths 3 and 5, max over the words) trained with cross-entropy on the fortunes corpus
(bench/text_corpus.py, `apt-get install fortunes`) by the engine's own text loop, and exported
with torch.onnx.export. ``pipeline.harden`` then gets a request that names only the model, the
tokenizer (word level, lower case, cut at 64 tokens, learnt from the training texts), the
training texts and the test texts: method, epochs, rates, budgets and the number of scored
texts are the engine's defaults. The report scores the model sent and the hardened one on the
same test texts; this script prints both, and then times each attack alone on the hardened
model, per 1,000 texts, on one thread.

    python bench/text_defaults.py
    python bench/text_defaults.py --json /tmp/text-defaults.json
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from text_corpus import CorpusMissing, describe, load_corpus, write_jsonl
from text_setup import MAX_LENGTH, plain_model, word_tokenizer

from workers.engine.models.onnx import load_onnx_classifier
from workers.engine.pipeline import harden
from workers.engine.progress import ProgressEvent, Reporter
from workers.engine.spec import HardeningRequest, ModelFormat, ModelSource
from workers.engine.text.attacks import CharAttack, TextAttack, WordAttack, run_attacks
from workers.engine.text.data import TextDataset
from workers.engine.text.embedding_attack import EmbeddingAttack, run_embedding_attack
from workers.engine.text.model import export_token_classifier
from workers.engine.text.synonyms import STOPWORDS, synonyms
from workers.engine.text.tokenizer import TextTokenizer
from workers.engine.text.victim import TextVictim


def main() -> None:
    args = _parse()
    torch.set_num_threads(args.threads)
    try:
        corpus = load_corpus()
    except CorpusMissing as exc:
        raise SystemExit(str(exc)) from None
    print(describe(corpus))
    with tempfile.TemporaryDirectory(prefix="text-defaults-") as folder:
        work = Path(folder)
        tokenizer = word_tokenizer(
            corpus.train.texts, work / "tokenizer.json", max_length=MAX_LENGTH
        )
        started = time.monotonic()
        plain = plain_model(corpus.train, tokenizer, args.seed)
        print(f"plain model trained in {time.monotonic() - started:.0f} s")
        request = HardeningRequest(
            model=ModelSource(
                export_token_classifier(plain, work / "plain.onnx"), ModelFormat.ONNX
            ),
            train_data=write_jsonl(corpus.train, work / "train.jsonl"),
            eval_data=write_jsonl(corpus.test, work / "test.jsonl"),
            tokenizer=work / "tokenizer.json",
            seed=args.seed,
        )
        started = time.monotonic()
        result = harden(request, work / "out", Reporter(callback=_print_stage))
        job_seconds = time.monotonic() - started
        costs = _attack_costs(result.model_path, tokenizer, corpus.test, args.cost_texts)
    figures = _figures(result.report, job_seconds, costs)
    print(json.dumps(figures, indent=2))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")


def _parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--cost-texts", type=int, default=200, help="test texts each attack is timed on alone"
    )
    parser.add_argument("--json", type=Path, default=None)
    return parser.parse_args()


def _print_stage(event: ProgressEvent) -> None:
    if event.message:
        print(f"  [{event.stage}] {event.message}", flush=True)


def _attack_costs(
    model_path: Path, tokenizer: TextTokenizer, test: TextDataset, count: int
) -> dict[str, float]:
    """Seconds per 1,000 texts of each attack alone on the hardened model, one thread."""
    model = load_onnx_classifier(model_path).eval()
    texts, labels = list(test.texts[:count]), [int(y) for y in test.labels[:count]]
    victim = TextVictim(model, tokenizer, max_length=MAX_LENGTH)
    attacks: dict[str, TextAttack] = {
        "char": CharAttack(),
        "word": WordAttack(synonyms, STOPWORDS),
    }
    costs = {}
    for name, attack in attacks.items():
        started = time.process_time()
        run_attacks(texts, labels, victim, [attack])
        costs[name] = 1000 * (time.process_time() - started) / len(texts)
    ids, mask = victim.encoder.encode(texts)
    started = time.process_time()
    run_embedding_attack(model, ids, mask, test.labels[:count], EmbeddingAttack(eps=0.03))
    costs["embedding-pgd"] = 1000 * (time.process_time() - started) / len(texts)
    return {name: round(seconds, 1) for name, seconds in costs.items()}


def _figures(report: dict[str, Any], job_seconds: float, costs: dict[str, float]) -> dict[str, Any]:
    def scores(which: str) -> dict[str, Any]:
        section = report[which]
        by_name = {a["name"]: a["robust_accuracy"] for a in section["attacks"]}
        return {
            "clean": section["clean_accuracy"],
            "word": by_name["word"],
            "char": by_name["char"],
            "worst_case": section["robust_accuracy"],
            "embedding_upper_bound": by_name["embedding-pgd"],
        }

    original, hardened = scores("original"), scores("hardened")
    gain = {
        key: round(100 * (hardened[key]["value"] - original[key]["value"]), 1)
        for key in ("clean", "word", "char", "worst_case")
    }
    return {
        "texts_scored": report["evaluation"]["samples"],
        "training": report["training"]["config"],
        "selected_epoch": report["training"]["selected_epoch"],
        "job_seconds": round(job_seconds),
        "original": original,
        "hardened": hardened,
        "points_gained": gain,
        "cpu_seconds_per_1000_texts_one_thread": costs,
    }


if __name__ == "__main__":
    main()
