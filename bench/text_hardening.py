"""Text hardening benchmark (issue 13): plain training against the text hardening recipes, one
model shape, one corpus, one process.

A Kim CNN (embedding, convolutions of widths 3 and 5, max over the words, one linear layer) is
trained from the same initial weights on the fortunes corpus (bench/text_corpus.py: quotations
about computing against quotations about people) by each recipe asked for, and every model is
scored on the same test texts by the discrete attacks (the WordNet synonym attack, budget 20%
of the words, and the character attack, budget 10%), their per-sample worst case, and the
white-box embedding-space attack (an upper bound, reported apart). The tokenizer is a
word-level one learnt from the training texts, lower case, as a user's would be.

    python bench/text_hardening.py                      # plain, pgd, a2t, a2t-pgd
    python bench/text_hardening.py --recipes plain trades distillation --json out.json

Recipes: ``plain`` (cross-entropy), ``pgd`` and ``trades`` (embedding space, per-token ball),
``a2t`` (A2T synonym augmentation of half of each batch), ``a2t-pgd`` and ``a2t-trades``
(A2T around the embedding-space step), and
``distillation`` (teacher and student at temperature T). Choose settings with ``--score-on
validation`` (the held-out share of the training texts), never on the test texts' scores;
docs/text.md ("Hardening text models") has the figures and how they were chosen.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from text_corpus import CorpusMissing, describe, load_corpus
from text_setup import kim_cnn, word_tokenizer

from workers.engine.text.attacks import (
    CharAttack,
    TextAttack,
    WordAttack,
    WordBudget,
    run_attacks,
)
from workers.engine.text.embedding_attack import EmbeddingAttack, run_embedding_attack
from workers.engine.text.model import TextClassifier
from workers.engine.text.synonyms import STOPWORDS, synonyms
from workers.engine.text.tokenizer import TextTokenizer, encode
from workers.engine.text.training import (
    DEFAULT_TEXT_EPS,
    A2TAugmenter,
    A2TStep,
    CleanStep,
    EmbeddingPgdStep,
    EmbeddingTradesStep,
    Encoder,
    TextStep,
    TextTrainingData,
    distill_text,
    split_validation,
    train_text,
)
from workers.engine.text.victim import TextVictim
from workers.engine.training.schedules import eps_warmup, one_cycle

RECIPES = ("plain", "pgd", "trades", "a2t", "a2t-pgd", "a2t-trades", "distillation")


@dataclass(frozen=True)
class Setup:
    tokenizer: TextTokenizer
    encoder: Encoder
    data: TextTrainingData
    args: argparse.Namespace


def main() -> None:
    args = _parse()
    torch.set_num_threads(args.threads)
    try:
        corpus = load_corpus()
    except CorpusMissing as exc:
        raise SystemExit(str(exc)) from None
    print(describe(corpus))
    with tempfile.TemporaryDirectory() as tmp:
        tokenizer = word_tokenizer(corpus.train.texts, Path(tmp) / "tokenizer.json")
    encoder = Encoder(tokenizer, args.max_length)
    data = split_validation(corpus.train.texts, corpus.train.labels, encoder, share=0.1)
    setup = Setup(tokenizer, encoder, data, args)
    scored = corpus.test if args.score_on == "test" else data.validation
    rows = np.random.default_rng(args.seed).permutation(len(scored))[: args.eval_samples]
    texts = [scored.texts[int(i)] for i in rows]
    labels = scored.labels[rows]
    print(f"vocabulary {tokenizer.vocab_size}, scoring {len(texts)} {args.score_on} texts\n")
    results = {}
    for recipe in args.recipes:
        model, seconds, notes = _train(recipe, setup)
        print(f"{recipe}: trained in {seconds:.0f} s; {'; '.join(notes)}")
        scores = _score(model, setup, texts, labels)
        results[recipe] = {"train_seconds": round(seconds, 1), **scores}
        _print_row(recipe, results[recipe])
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    _print_table(results)


def _parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--recipes", nargs="+", default=["plain", "pgd", "a2t", "a2t-pgd"], choices=RECIPES
    )
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument(
        "--eps", type=float, default=DEFAULT_TEXT_EPS, help="share of the mean token norm"
    )
    parser.add_argument("--attack-steps", type=int, default=3)
    parser.add_argument("--trades-beta", type=float, default=6.0)
    parser.add_argument("--a2t-share", type=float, default=0.5, help="share of each batch")
    parser.add_argument("--a2t-words", type=float, default=0.2, help="share of a text's words")
    parser.add_argument("--temperature", type=float, default=20.0)
    parser.add_argument("--eval-samples", type=int, default=1000)
    parser.add_argument(
        "--score-eps", type=float, default=0.05, help="the embedding attack's radius, as --eps"
    )
    parser.add_argument(
        "--score-on",
        default="test",
        choices=["test", "validation"],
        help="validation: the held-out share of the training texts, for choosing settings",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", type=Path, default=None)
    return parser.parse_args()


def _train(recipe: str, setup: Setup) -> tuple[TextClassifier, float, list[str]]:
    args = setup.args
    model = kim_cnn(setup.tokenizer, setup.args.seed, setup.args.dim)
    generator = torch.Generator().manual_seed(args.seed)
    started = time.monotonic()
    if recipe == "distillation":
        student, _ = distill_text(
            model,
            setup.data,
            lambda module: torch.optim.Adam(module.parameters(), lr=args.lr),
            args.epochs,
            temperature=args.temperature,
            batch_size=args.batch_size,
            generator=generator,
        )
        return model, time.monotonic() - started, student.notes
    step = _step(recipe, setup, generator)
    outcome = train_text(
        model,
        setup.data,
        step,
        torch.optim.Adam(model.parameters(), lr=args.lr),
        args.epochs,
        batch_size=args.batch_size,
        eps=eps_warmup(args.eps, 1.0),
        lr=one_cycle(args.lr, args.epochs),
        generator=generator,
    )
    best = outcome.history[outcome.selected_epoch - 1]
    note = f"kept epoch {best.epoch}, validation accuracy {best.val_accuracy:.3f}"
    return model, time.monotonic() - started, [note]


def _step(recipe: str, setup: Setup, generator: torch.Generator) -> TextStep:
    args = setup.args
    pgd = EmbeddingPgdStep(generator, steps=args.attack_steps)
    trades = EmbeddingTradesStep(generator, beta=args.trades_beta, steps=args.attack_steps)
    steps: dict[str, Callable[[], TextStep]] = {
        "plain": CleanStep,
        "pgd": lambda: pgd,
        "trades": lambda: trades,
        "a2t": lambda: A2TStep(CleanStep(), _augmenter(setup), generator, share=args.a2t_share),
        "a2t-pgd": lambda: A2TStep(pgd, _augmenter(setup), generator, share=args.a2t_share),
        "a2t-trades": lambda: A2TStep(trades, _augmenter(setup), generator, share=args.a2t_share),
    }
    return steps[recipe]()


def _augmenter(setup: Setup) -> A2TAugmenter:
    return A2TAugmenter(setup.encoder, share_of_words=setup.args.a2t_words)


def _score(
    model: TextClassifier, setup: Setup, texts: list[str], labels: np.ndarray
) -> dict[str, object]:
    victim = TextVictim(model, setup.tokenizer, max_length=setup.args.max_length, batch_size=256)
    attacks: list[TextAttack] = [
        WordAttack(synonyms, STOPWORDS, WordBudget(0.2)),
        CharAttack(WordBudget(0.1)),
    ]
    started = time.monotonic()
    evaluation = run_attacks(texts, labels.tolist(), victim, attacks, seed=setup.args.seed)
    discrete_seconds = time.monotonic() - started
    encoded = encode(setup.tokenizer, texts, setup.args.max_length)
    started = time.monotonic()
    attack = EmbeddingAttack(eps=setup.args.score_eps)
    embedding = run_embedding_attack(model, encoded.ids, encoded.attention_mask, labels, attack)
    embedding_seconds = time.monotonic() - started
    report = evaluation.to_dict()
    return {
        **report,
        "embedding": embedding.to_dict(),
        "seconds": {
            "discrete_attacks": round(discrete_seconds, 1),
            "embedding_attack": round(embedding_seconds, 1),
        },
    }


def _value(section: object, key: str = "robust_accuracy") -> float:
    assert isinstance(section, dict)
    accuracy = section[key]
    assert isinstance(accuracy, dict)
    return float(accuracy["value"])


def _attack(result: dict[str, object], name: str) -> dict[str, object]:
    attacks = result["attacks"]
    assert isinstance(attacks, list)
    return next(a for a in attacks if a["name"] == name)


def _print_row(recipe: str, result: dict[str, object]) -> None:
    clean = result["clean_accuracy"]
    assert isinstance(clean, dict)
    print(
        f"  clean {clean['value']:.3f}  word {_value(_attack(result, 'word')):.3f}"
        f"  char {_value(_attack(result, 'char')):.3f}"
        f"  worst {_value(result['worst_case']):.3f}"
        f"  embedding {_value(result['embedding']):.3f}  {result['seconds']}"
    )


def _print_table(results: dict[str, dict[str, object]]) -> None:
    print("\nrecipe        clean   word [95% CI]          char    worst   embedding")
    for recipe, result in results.items():
        clean = result["clean_accuracy"]
        assert isinstance(clean, dict)
        word = _attack(result, "word")["robust_accuracy"]
        assert isinstance(word, dict)
        print(
            f"{recipe:<12}  {clean['value']:.3f}   {word['value']:.3f}"
            f" [{word['low']:.3f}, {word['high']:.3f}]"
            f"   {_value(_attack(result, 'char')):.3f}   {_value(result['worst_case']):.3f}"
            f"   {_value(result['embedding']):.3f}"
        )


if __name__ == "__main__":
    main()
