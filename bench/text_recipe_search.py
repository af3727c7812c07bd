"""Choose the text recipe's defaults on validation texts, never on the test texts.

The training texts of the fortunes corpus (bench/text_corpus.py) are split again by a hash of
each text: 80% to fit, 20% to validate. The plain Kim CNN a user would send is trained on the
fit texts (bench/text_setup.py) and exported to ONNX; each variant of the recipe then hardens a
fresh read of that ONNX through ``harden_text``, the code users run, and both models are
scored on the validation texts. The variant with the largest gain under the synonym attack,
with clean accuracy within 2 points of the plain model's, becomes the default; the test texts
are scored once, by ``bench/text_defaults.py``, after the choice.

    python bench/text_recipe_search.py --variants session-5 a2t-all a2t-all-eps-0.06
"""

from __future__ import annotations

import argparse
import hashlib
import json
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from text_corpus import CorpusMissing, load_corpus, write_jsonl
from text_setup import MAX_LENGTH, plain_model, word_tokenizer

from workers.engine.device import pick_device
from workers.engine.models.onnx import load_onnx_classifier
from workers.engine.progress import Reporter
from workers.engine.spec import EvaluationConfig, HardeningRequest, Method, ModelFormat, ModelSource
from workers.engine.text.data import TextDataset
from workers.engine.text.model import export_token_classifier
from workers.engine.text.pipeline import harden_text
from workers.engine.text.recipe import text_recipe

_PGD = {"method": Method.PGD, "epochs": 8, "embedding_eps": 0.03, "a2t_share_of_batch": 0.5}
VARIANTS: dict[str, dict[str, Any]] = {
    "session-5": _PGD,
    "trades": {**_PGD, "method": Method.TRADES},
    "a2t-all": {**_PGD, "a2t_share_of_batch": 1.0},
    "trades-a2t-all": {**_PGD, "method": Method.TRADES, "a2t_share_of_batch": 1.0},
    "12-epochs": {**_PGD, "epochs": 12},
    "a2t-words-0.3": {**_PGD, "a2t_share_of_words": 0.3},
    "a2t-0.75": {**_PGD, "a2t_share_of_batch": 0.75},
    "trades-12-epochs": {**_PGD, "method": Method.TRADES, "epochs": 12},
    "a2t-all-eps-0.06": {**_PGD, "a2t_share_of_batch": 1.0, "embedding_eps": 0.06},
    "a2t-all-12-epochs": {**_PGD, "a2t_share_of_batch": 1.0, "epochs": 12},
}
"""Each variant states every setting the search varies (the rest are the recipe's), so that
a name means the same run whatever the defaults are now; ``a2t-all-eps-0.06`` is the default
since session 6."""
VALIDATION_PERCENT = 20


def main() -> None:
    args = _parse()
    torch.set_num_threads(args.threads)
    try:
        corpus = load_corpus()
    except CorpusMissing as exc:
        raise SystemExit(str(exc)) from None
    fit, validation = _split(corpus.train)
    print(f"fit {len(fit)} texts, validation {len(validation)} texts", flush=True)
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="text-search-") as folder:
        work = Path(folder)
        tokenizer_path = work / "tokenizer.json"
        tokenizer = word_tokenizer(fit.texts, tokenizer_path, max_length=MAX_LENGTH)
        plain = plain_model(fit, tokenizer, args.seed)
        request = HardeningRequest(
            model=ModelSource(
                export_token_classifier(plain, work / "plain.onnx"), ModelFormat.ONNX
            ),
            train_data=write_jsonl(fit, work / "fit.jsonl"),
            eval_data=write_jsonl(validation, work / "validation.jsonl"),
            tokenizer=tokenizer_path,
            evaluation=EvaluationConfig(samples=len(validation)),
            seed=args.seed,
        )
        for name in args.variants:
            recipe = replace(text_recipe(request), **VARIANTS[name])
            started = time.monotonic()
            result = harden_text(
                request,
                load_onnx_classifier(request.model.path),
                work / name,
                Reporter(),
                pick_device(),
                recipe,
            )
            results[name] = _figures(result.report, time.monotonic() - started)
            print(name, json.dumps(results[name]), flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


def _parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", type=Path, default=None)
    return parser.parse_args()


def _split(train: TextDataset) -> tuple[TextDataset, TextDataset]:
    """80/20 by a hash of each text, salted apart from the corpus's own test split."""
    held = np.asarray(
        [
            int.from_bytes(hashlib.sha256(b"validation:" + t.encode()).digest()[:4], "big") % 100
            < VALIDATION_PERCENT
            for t in train.texts
        ]
    )
    return train.take(np.flatnonzero(~held)), train.take(np.flatnonzero(held))


def _figures(report: dict[str, Any], seconds: float) -> dict[str, Any]:
    def value(section: str, attack: str | None = None) -> float:
        part = report[section]
        if attack is None:
            return float(part["clean_accuracy"]["value"])
        found = next(a for a in part["attacks"] if a["name"] == attack)
        return float(found["robust_accuracy"]["value"])

    figures = {
        "clean": (value("original"), value("hardened")),
        "word": (value("original", "word"), value("hardened", "word")),
        "char": (value("original", "char"), value("hardened", "char")),
        "worst": (
            float(report["original"]["robust_accuracy"]["value"]),
            float(report["hardened"]["robust_accuracy"]["value"]),
        ),
    }
    return {
        **{key: [round(100 * v, 1) for v in pair] for key, pair in figures.items()},
        "word_gain": round(100 * (figures["word"][1] - figures["word"][0]), 1),
        "clean_change": round(100 * (figures["clean"][1] - figures["clean"][0]), 1),
        "seconds": round(seconds),
    }


if __name__ == "__main__":
    main()
