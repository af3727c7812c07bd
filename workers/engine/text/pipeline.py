"""One hardening job of a text classifier, from files to artifacts.

The image path's order, with text's own pieces: read the tokenizer and the labelled texts, check
them against the model, harden in embedding space (:mod:`workers.engine.text.training`), score
both models under the discrete attacks (:mod:`workers.engine.text.attacks`) and the white-box
embedding attack, write the ONNX model with its original inputs and outputs, and check it against
onnxruntime on token ids. The report has the image report's shape (so the model card, the HTML
report and the CI gates read it unchanged); its headline is the per-sample worst case over the
discrete attacks, and the embedding attack is listed beside them as an upper bound, outside the
headline.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime
import torch

from workers.engine.device import Device
from workers.engine.errors import ExportCheckFailed, InvalidData, InvalidParameter
from workers.engine.evaluation.stats import Accuracy
from workers.engine.export import PARITY_TOLERANCE, ParityResult, compare_outputs, onnx_opset
from workers.engine.files import sha256_file
from workers.engine.memory import phase
from workers.engine.models.onnx import OnnxClassifier, write_trained_onnx
from workers.engine.outputs import (
    MODEL_FILE,
    TOKENIZER_FILE,
    HardeningResult,
    input_sha256,
    write_outputs,
)
from workers.engine.progress import ProgressEvent, Reporter
from workers.engine.report import KIND, SCHEMA_VERSION
from workers.engine.spec import TEXT_EVAL_SAMPLES, HardeningRequest, Method, check_text_method
from workers.engine.text.attacks.budget import WordBudget
from workers.engine.text.attacks.char import CharAttack
from workers.engine.text.attacks.run import TextEvaluation, run_attacks
from workers.engine.text.attacks.word import WordAttack
from workers.engine.text.data import TextDataset, check_labels, load_text_dataset
from workers.engine.text.embedding_attack import (
    EmbeddingAttack,
    EmbeddingAttackResult,
    run_embedding_attack,
)
from workers.engine.text.recipe import TextRecipe, text_recipe
from workers.engine.text.synonyms import STOPWORDS, synonyms
from workers.engine.text.tokenizer import TextTokenizer, check_vocabulary, load_tokenizer
from workers.engine.text.training import (
    A2TAugmenter,
    A2TStep,
    EmbeddingPgdStep,
    EmbeddingTradesStep,
    Encoder,
    TextStep,
    TextTrainingData,
    TextTrainingOutcome,
    distill_text,
    split_validation,
    train_text,
)
from workers.engine.text.truncation import truncation_section
from workers.engine.text.victim import DEFAULT_MAX_LENGTH, TextVictim
from workers.engine.training.schedules import eps_warmup, one_cycle
from workers.engine.verdict import verdict

VALIDATION_SHARE = 0.1
PARITY_TEXTS = 128
HEADLINE = (
    "per-sample worst case over the discrete attacks (character edits and synonym"
    " substitution): a text counts as robust only if neither flipped it; the embedding attack is"
    " an upper bound of vulnerability, not a text attack, and stays out of the headline"
)


@dataclass(frozen=True)
class _Texts:
    train: TextDataset
    evaluation: TextDataset
    eval_source: str


def harden_text(
    request: HardeningRequest,
    model: OnnxClassifier,
    output_dir: Path,
    reporter: Reporter,
    device: Device,
    recipe: TextRecipe | None = None,
) -> HardeningResult:
    """Harden and score the text classifier ``model`` (read from ``request.model``), with the
    recipe resolved from the request unless a benchmark passes its own variant."""
    token = model.token_input
    if token is None:
        raise InvalidParameter("a tokenizer was given for a model that does not read token ids")
    if request.tokenizer is None:
        raise InvalidParameter(
            f"the model reads token ids (input '{token.ids_name}'): send its tokenizer.json"
            " (--tokenizer) so that texts can be encoded and attacked as texts"
        )
    check_text_method(request.training.method)
    tokenizer = load_tokenizer(request.tokenizer)
    check_vocabulary(tokenizer, token.vocab_size)
    texts = _read_texts(request, model.num_classes)
    max_length = _max_length(request, tokenizer, token.max_length)
    encoder = Encoder(tokenizer, max_length, pad_to_max_length=token.max_length is not None)
    truncated, truncation_notes = truncation_section(
        encoder, texts.train.texts, texts.evaluation.texts
    )
    model.to(device.torch_device)
    reporter.check()

    original = _scores(
        model, tokenizer, max_length, texts.evaluation, request, reporter, "original"
    )
    training = split_validation(
        texts.train.texts, texts.train.labels, encoder, share=VALIDATION_SHARE, seed=request.seed
    )
    recipe = recipe or text_recipe(request)
    with phase("training", recipe.batch_size):
        trained = _train(model, training, encoder, recipe, reporter, request.seed)
    hardened = _scores(
        model, tokenizer, max_length, texts.evaluation, request, reporter, "hardened"
    )

    reporter.emit(ProgressEvent(stage="exporting", message="writing and checking the ONNX file"))
    output_dir.mkdir(parents=True, exist_ok=True)
    model_path = output_dir / MODEL_FILE
    write_trained_onnx(model, model_path, inline_limit=request.inline_weight_limit)
    parity = _check_parity(model_path, model, encoder, texts.evaluation.texts[:PARITY_TEXTS])
    tokenizer_path = output_dir / TOKENIZER_FILE
    tokenizer_path.write_bytes(request.tokenizer.read_bytes())

    report = {
        "schema_version": SCHEMA_VERSION,
        "kind": KIND,
        "modality": "text",
        "request": request.to_dict(),
        "inputs": {**_inputs(request, texts, training, model), "notes": truncation_notes},
        "threat_model": {**asdict(request.text_threat), "max_length": max_length},
        "evaluation": {
            "suite": request.evaluation.suite.value,
            "samples": len(texts.evaluation),
            "seed": request.seed,
            "attacks": [a["name"] for a in original.section["attacks"]],
            "headline": HEADLINE,
            "cascade": [a["name"] for a in original.section["attacks"] if a["in_cascade"]],
            "per_attack_samples": len(texts.evaluation),
            "interval": "95% Wilson score",
        },
        "model_notes": list(model.notes),
        "original": original.section,
        "hardened": hardened.section,
        "verdict": verdict(original.section, hardened.section),
        "training": _training_section(trained, recipe),
        "export": {
            "format": "onnx",
            "opset": onnx_opset(model_path),
            "max_abs_diff": parity.max_abs_diff,
            "tolerance": PARITY_TOLERANCE,
            "output_scale": parity.output_scale,
            "allowed_diff": parity.allowed_diff,
            "samples": parity.samples,
            "passed": parity.passed,
        },
        "text": {
            "tokenizer_sha256": sha256_file(request.tokenizer),
            "max_length": max_length,
            "truncated": truncated,
            "original": original.details,
            "hardened": hardened.details,
        },
        "environment": {
            "torch": torch.__version__,
            "onnxruntime": onnxruntime.__version__,
            "device": device.name,
        },
    }
    if not parity.passed:
        raise ExportCheckFailed(
            f"the exported ONNX model differs from the PyTorch model by {parity.max_abs_diff:.3g}"
            f" (allowed {parity.allowed_diff:.3g}) on held-out texts"
        )
    result = write_outputs(output_dir, model_path, report, tokenizer_path)
    reporter.emit(ProgressEvent(stage="done", message="artifacts written"))
    return result


# --- data ---------------------------------------------------------------------------------------


def _read_texts(request: HardeningRequest, num_classes: int) -> _Texts:
    train = load_text_dataset(request.train_data)
    check_labels(train, num_classes)
    wanted = request.evaluation.samples_or(TEXT_EVAL_SAMPLES)
    if request.eval_data is not None:
        evaluation = load_text_dataset(request.eval_data)
        check_labels(evaluation, num_classes)
        return _Texts(train, _first(evaluation, wanted, request.seed), "eval_data")
    if len(train) < 4:
        raise InvalidData("too few texts to hold some out for scoring: send --eval-data")
    held = min(wanted, len(train) // 5)
    order = np.random.default_rng(request.seed).permutation(len(train))
    return _Texts(train.take(order[held:]), train.take(np.sort(order[:held])), "holdout_split")


def _first(dataset: TextDataset, wanted: int, seed: int) -> TextDataset:
    if len(dataset) <= wanted:
        return dataset
    order = np.random.default_rng(seed).permutation(len(dataset))
    return dataset.take(np.sort(order[:wanted]))


def _max_length(request: HardeningRequest, tokenizer: TextTokenizer, fixed: int | None) -> int:
    asked = request.text_threat.max_length
    if fixed is not None:
        if asked is not None and asked != fixed:
            raise InvalidParameter(
                f"the model takes exactly {fixed} tokens; max_length {asked} cannot be used"
            )
        return fixed
    return asked or tokenizer.truncation_length or DEFAULT_MAX_LENGTH


# --- training -----------------------------------------------------------------------------------


def _train(
    model: OnnxClassifier,
    data: TextTrainingData,
    encoder: Encoder,
    recipe: TextRecipe,
    reporter: Reporter,
    seed: int,
) -> TextTrainingOutcome:
    """A2T synonym augmentation around an embedding-space PGD or TRADES step (or distillation),
    Adam on a one-cycle schedule, the ball's radius ramped up over the first epoch."""
    generator = torch.Generator().manual_seed(seed)

    def optimiser_for(module: torch.nn.Module) -> torch.optim.Optimizer:
        return torch.optim.Adam(module.parameters(), lr=recipe.learning_rate)

    if recipe.method is Method.DISTILLATION:
        student, _ = distill_text(
            model,
            data,
            optimiser_for,
            recipe.epochs,
            temperature=recipe.temperature,
            batch_size=recipe.batch_size,
            generator=generator,
            reporter=reporter,
        )
        return student
    inner: TextStep
    if recipe.method is Method.TRADES:
        inner = EmbeddingTradesStep(generator, beta=recipe.trades_beta, steps=recipe.attack_steps)
    else:
        inner = EmbeddingPgdStep(generator, steps=recipe.attack_steps)
    augmenter = A2TAugmenter(encoder, share_of_words=recipe.a2t_share_of_words)
    step = A2TStep(inner, augmenter, generator, share=recipe.a2t_share_of_batch)
    return train_text(
        model,
        data,
        step,
        optimiser_for(model),
        recipe.epochs,
        batch_size=recipe.batch_size,
        eps=eps_warmup(recipe.embedding_eps, recipe.eps_warmup_epochs),
        lr=one_cycle(recipe.learning_rate, recipe.epochs),
        generator=generator,
        reporter=reporter,
        keep_last=True,
    )


def _training_section(outcome: TextTrainingOutcome, recipe: TextRecipe) -> dict[str, Any]:
    return {
        "method": recipe.method.value,
        "epochs": recipe.epochs,
        "selected_epoch": outcome.selected_epoch,
        "selection": "best clean accuracy on the validation split",
        "resumed_from_epoch": None,
        "recipe": [],
        "config": recipe.to_dict(),
        "notes": list(outcome.notes),
        "history": [
            {
                "stage": "training",
                "epoch": record.epoch,
                "loss": round(record.loss, 6),
                "train_accuracy": round(record.train_accuracy, 6),
                "val_clean_accuracy": round(record.val_accuracy, 6),
                "val_robust_accuracy": None,
            }
            for record in outcome.history
        ],
    }


# --- scoring ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Scores:
    section: dict[str, Any]
    """The image report's shape: clean, headline robust accuracy, attacks, curve."""
    details: dict[str, Any]
    """Everything the text attacks measured, for the report's ``text`` section."""


def _scores(
    model: OnnxClassifier,
    tokenizer: TextTokenizer,
    max_length: int,
    evaluation: TextDataset,
    request: HardeningRequest,
    reporter: Reporter,
    which: str,
) -> _Scores:
    reporter.emit(ProgressEvent(stage="evaluating", message=f"attacking the {which} model's texts"))
    threat = request.text_threat
    victim = TextVictim(model, tokenizer, max_length=max_length)
    attacks = (
        CharAttack(budget=WordBudget(threat.char_share)),
        WordAttack(synonyms, STOPWORDS, budget=WordBudget(threat.word_share)),
    )
    with phase(f"scoring the {which} model", victim.batch_size):
        discrete = run_attacks(
            evaluation.texts, evaluation.labels.tolist(), victim, attacks, seed=request.seed
        )
        encoded = victim.encoder.encode(evaluation.texts)
        embedding = run_embedding_attack(
            model,
            encoded[0],
            encoded[1],
            evaluation.labels,
            EmbeddingAttack(eps=threat.embedding_eps),
            seed=request.seed,
        )
    reporter.check()
    section = {
        "clean_accuracy": discrete.clean.to_dict(),
        "robust_accuracy": discrete.worst_case.robust.to_dict(),
        "attacks": [
            *(_attack_entry(summary.to_dict(), in_cascade=True) for summary in discrete.attacks),
            _embedding_entry(embedding),
        ],
        "curve": _word_budget_curve(discrete, threat.word_share),
        "masking": [],
        "gradient_masking_suspected": False,
    }
    details = {
        **discrete.to_dict(),
        "embedding_upper_bound": embedding.to_dict(),
        "truncated_texts": victim.truncated,
    }
    return _Scores(section, details)


_DESCRIPTIONS = {
    "char": "character edits (swap, delete, insert, neighbouring key) of the most important words",
    "word": "greedy WordNet synonym substitution of the most important words",
}


def _attack_entry(summary: dict[str, Any], *, in_cascade: bool) -> dict[str, Any]:
    name = str(summary["name"])
    return {
        "name": name,
        "description": _DESCRIPTIONS.get(name, name),
        "white_box": False,
        "samples": summary["robust_accuracy"]["total"],
        "in_cascade": in_cascade,
        "robust_accuracy": summary["robust_accuracy"],
    }


def _embedding_entry(result: EmbeddingAttackResult) -> dict[str, Any]:
    robust = result.robust_accuracy
    return {
        "name": "embedding-pgd",
        "description": (
            "white-box PGD on the word embeddings, per-token ball: an upper bound of"
            " vulnerability, not a realistic text attack"
        ),
        "white_box": True,
        "samples": robust.total,
        "in_cascade": False,
        "robust_accuracy": robust.to_dict(),
    }


def _word_budget_curve(evaluation: TextEvaluation, word_share: float) -> list[dict[str, Any]]:
    """Accuracy under the synonym attack at smaller budgets, read off the one run: the greedy
    search changes words in the same order whatever its budget, so a text it flipped after
    changing a share ``s`` of its words falls at every budget of at least ``s``."""
    results = evaluation.results["word"]
    correct = [r for r in results if r.originally_correct]
    points = []
    for share in np.linspace(0.0, word_share, 5):
        flipped = sum(1 for r in correct if r.success and r.share_changed <= share + 1e-9)
        robust = Accuracy(len(correct) - flipped, len(results))
        points.append({"eps": round(float(share), 6), "robust_accuracy": robust.to_dict()})
    return points


# --- export -------------------------------------------------------------------------------------


def _check_parity(
    path: Path, model: OnnxClassifier, encoder: Encoder, texts: Sequence[str]
) -> ParityResult:
    """onnxruntime against the torch module on ``texts``, fed as token ids (and mask)."""
    token = model.token_input
    assert token is not None
    ids, mask = encoder.encode(texts)
    feeds = {token.ids_name: ids}
    if token.mask_name is not None:
        feeds[token.mask_name] = mask
    model.eval()
    with torch.no_grad():
        device = next(model.parameters()).device
        expected = model(
            torch.from_numpy(ids).to(device),
            torch.from_numpy(mask).to(device) if token.mask_name else None,
        )
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return compare_outputs(session, feeds, expected.cpu().numpy())


def _inputs(
    request: HardeningRequest, texts: _Texts, training: TextTrainingData, model: OnnxClassifier
) -> dict[str, Any]:
    token = model.token_input
    assert token is not None
    return {
        "model_sha256": _sha256(request, request.model.path),
        "model_format": request.model.format.value,
        "train_data_sha256": _sha256(request, request.train_data),
        "eval_data_sha256": _sha256(request, request.eval_data) if request.eval_data else None,
        "eval_source": texts.eval_source,
        "train_samples": len(training.train),
        "validation_samples": len(training.validation),
        "num_classes": model.num_classes,
        "input_shape": [token.max_length] if token.max_length else [],
        "modality": "text",
        "notes": [],
    }


def _sha256(request: HardeningRequest, path: Path) -> str:
    return input_sha256(request.verified_sha256, path)
