"""``temper harden``: harden a model in this process (``--local``) or on a server."""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from typing import Any

from client import scores_table
from client.commands import ci_step
from client.commands.common import (
    SERVER_ENV,
    UsageError,
    add_connection_arguments,
    connect,
    float_list,
    info,
    label,
    labels_dict,
    non_negative_float,
    non_negative_int,
    positive_float,
    positive_int,
    print_json,
    server_address,
)
from client.domain import (
    DEFAULT_LOWER,
    DEFAULT_UPPER,
    EvaluationSuite,
    HardeningOutcome,
    HardeningParams,
    JobEvent,
    Method,
    MlflowTracking,
    ModelFormat,
    Norm,
    TextThreat,
    format_from_suffix,
)
from client.exit_codes import HELP as EXIT_CODES_HELP
from client.idempotency import derive_idempotency_key
from client.job_format import outcome_json
from client.local_run import LocalTracking, harden_locally
from client.progress_display import choose_display
from client.retry import Deadline
from client.sdk import EventCallback

TRUSTED_FORMATS_ENV = "TEMPERING_ALLOW_TRUSTED_FORMATS"

RECIPE_DEFAULT = "default: the recipe's choice"
ENGINE_DEFAULT = "default: the engine's"
"""Defaults that live in the engine, which the client does not import (it installs without
torch): help says who chooses; docs/recipe.md, "Where the defaults live", lists the values."""

DESCRIPTION = """\
Harden a classifier against adversarial examples and score the original and the hardened
model under the same attacks. Writes the hardened ONNX model at -o and, beside it, the report
(STEM.report.json), the model card (STEM.model_card.md) and the robustness curve
(STEM.robustness_curve.png), with --local and with --server alike. As a CI step, gates
(--min-robust-accuracy, --max-clean-drop, --fail-on-masking, --require-improvement) make it
exit 5 when the hardened model falls short, and add a JUnit report (STEM.junit.xml) and a
Markdown summary (STEM.summary.md)."""

EXAMPLES = """\
examples:
  temper harden model.onnx --data train.npz --method pgd --eps 0.1 --local -o hardened.onnx
  temper harden model.onnx --data train.npz --eval-data test.npz --method trades --eps 0.3 \\
      --epochs 20 --server localhost:50051 -o hardened.onnx
  temper harden model.onnx --data train.npz --method pgd --eps 0.1 --server "$TEMPERING_SERVER" \\
      --min-robust-accuracy 0.80 --max-clean-drop 0.02 --fail-on-masking --timeout 7200 \\
      --cancel-on-timeout -o hardened.onnx
  temper harden text.onnx --tokenizer tokenizer.json --data train.jsonl --eval-data test.jsonl \
      --server localhost:50051 -o hardened.onnx   # also writes hardened.tokenizer.json
"""


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "harden",
        help="harden a model and compare it with the original",
        description=DESCRIPTION,
        epilog=EXAMPLES + "\n" + EXIT_CODES_HELP,
    )
    parser.add_argument("model", type=Path, help="the model: .onnx, .safetensors, .pt, .pt2")
    parser.add_argument(
        "--data",
        type=Path,
        required=True,
        metavar="TRAIN.npz",
        help="training data: an .npz of x and y, or a text model's JSON Lines or CSV",
    )
    parser.add_argument(
        "--eval-data",
        type=Path,
        metavar="TEST.npz",
        help="held-out data to score on (default: a seeded hold-out of --data)",
    )
    parser.add_argument(
        "-o", "--output", type=Path, required=True, metavar="HARDENED.onnx", help="output model"
    )
    where = parser.add_argument_group(
        "where to run", "--local, or a server: --server HOST:PORT (or TEMPERING_SERVER)"
    )
    where.add_argument("--local", action="store_true", help="run the engine in this process")
    _add_threat_arguments(parser)
    _add_text_arguments(parser)
    _add_tabular_arguments(parser)
    _add_training_arguments(parser)
    _add_evaluation_arguments(parser)
    _add_model_arguments(parser)
    jobs = parser.add_argument_group("server jobs")
    jobs.add_argument(
        "--label", type=label, action="append", metavar="KEY=VALUE", help="label the job"
    )
    jobs.add_argument(
        "--idempotency-key",
        metavar="KEY",
        help="submit at most once per key (default: one derived from the inputs' SHA-256,"
        " the parameters and the labels)",
    )
    jobs.add_argument(
        "--webhook-url",
        metavar="URL",
        default="",
        help="POST a signed notification here when the job ends (a host the server allows;"
        " see docs/webhooks.md)",
    )
    _add_mlflow_arguments(parser)
    ci_step.add_arguments(parser)
    add_connection_arguments(parser, top_level=False)
    parser.set_defaults(handler=run)


def _add_mlflow_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "MLflow",
        "log the run to MLflow (docs/mlflow.md): on a server, to its operator's tracking"
        " server; with --local, to --mlflow-uri",
    )
    group.add_argument("--mlflow-experiment", metavar="NAME", help="the MLflow experiment")
    group.add_argument("--mlflow-run-name", metavar="NAME", default="", help="default: job id")
    group.add_argument("--mlflow-uri", metavar="URI", help="with --local: the tracking URI")


def mlflow_of(args: argparse.Namespace) -> MlflowTracking | None:
    if not args.mlflow_experiment:
        if args.mlflow_uri or args.mlflow_run_name:
            raise UsageError("--mlflow-uri and --mlflow-run-name need --mlflow-experiment")
        return None
    if args.local and not args.mlflow_uri:
        raise UsageError("--local logs to MLflow at the tracking URI given by --mlflow-uri")
    if not args.local and args.mlflow_uri:
        raise UsageError(
            "--mlflow-uri is for --local; a server logs to its operator's tracking server"
        )
    return MlflowTracking(args.mlflow_experiment, args.mlflow_run_name)


def _add_threat_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("threat model")
    group.add_argument(
        "--eps",
        type=positive_float,
        help="radius of the attacker's norm ball, as a number or a fraction (0.031, 8/255);"
        " required, except for a text model",
    )
    group.add_argument(
        "--norm", choices=[n.value for n in Norm], default=Norm.LINF.value, help="the norm"
    )
    group.add_argument(
        "--lower",
        type=float_list,
        default=(),
        metavar="V[,V...]",
        help="lowest valid input: one value or one per channel, negatives as they are"
        f" (--lower -4,-4 or --lower=-4,-4; default {DEFAULT_LOWER:g})",
    )
    group.add_argument(
        "--upper",
        type=float_list,
        default=(),
        metavar="V[,V...]",
        help=f"highest valid input: one value or one per channel (default {DEFAULT_UPPER:g})",
    )


def _add_text_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "text models (docs/text.md): an ONNX model whose input is int64 token ids, data as JSON"
        " Lines or CSV of text and label"
    )
    group.add_argument(
        "--tokenizer", type=Path, metavar="PATH", help="the model's Hugging Face tokenizer.json"
    )
    group.add_argument(
        "--word-share",
        type=positive_float,
        help=f"share of words the synonym attack may replace ({ENGINE_DEFAULT})",
    )
    group.add_argument(
        "--char-share",
        type=positive_float,
        help=f"share of words the character attack may edit ({ENGINE_DEFAULT})",
    )
    group.add_argument(
        "--embedding-eps",
        type=positive_float,
        help=f"per-token embedding radius, of the mean token-embedding norm ({ENGINE_DEFAULT})",
    )
    group.add_argument(
        "--max-length", type=positive_int, help="tokens kept per text (default: the model's)"
    )


def _add_tabular_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "tabular models (docs/tabular.md): rows of features described by a feature schema"
    )
    group.add_argument(
        "--schema",
        type=Path,
        metavar="PATH",
        help="the data's feature schema (JSON): kinds, ranges, immutable features and budgets;"
        " attacks and training then stay inside it, --eps is the budget of features that name"
        " none, in the schema's units, and the schema's ranges replace --lower/--upper",
    )


def text_threat_of(args: argparse.Namespace) -> TextThreat | None:
    if args.tokenizer is None:
        return None
    return TextThreat(args.word_share, args.char_share, args.embedding_eps, args.max_length)


def _add_training_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "hardening (a flag left out is the engine's choice: its recipe derives training from"
        " the data, the report says what ran, docs/recipe.md lists the defaults; a value given"
        " is checked, 0 epochs refused)"
    )
    group.add_argument(
        "--method",
        choices=[m.value for m in Method],
        default=Method.PGD.value,
        help="the hardening method",
    )
    group.add_argument(
        "--epochs",
        type=non_negative_int,
        help=f"{RECIPE_DEFAULT}: from the data size, with early stopping",
    )
    group.add_argument(
        "--batch-size", type=non_negative_int, help=f"{RECIPE_DEFAULT}: smaller on small data"
    )
    group.add_argument(
        "--learning-rate",
        type=non_negative_float,
        help=f"peak of the one-cycle rate ({RECIPE_DEFAULT})",
    )
    group.add_argument(
        "--validation-size",
        type=non_negative_int,
        metavar="ROWS",
        help=f"training rows held out to select the best epoch; 0 = none ({RECIPE_DEFAULT}:"
        " a share of the rows, none on small data)",
    )
    group.add_argument(
        "--from-scratch", action="store_true", help="train fresh weights instead of fine-tuning"
    )
    group.add_argument(
        "--attack-steps",
        type=non_negative_int,
        help=f"pgd, trades: attack steps ({RECIPE_DEFAULT}: fewer for pgd on large data)",
    )
    group.add_argument(
        "--step-size",
        type=non_negative_float,
        help="pgd, fgsm, trades: step size (default: the engine's share of the epsilon in force,"
        " which the warm-up ramps)",
    )
    group.add_argument(
        "--eps-warmup-epochs",
        type=non_negative_float,
        help=f"pgd, fgsm, trades: epochs to ramp eps up from 0; 0 = none ({RECIPE_DEFAULT})",
    )
    group.add_argument(
        "--trades-beta", type=non_negative_float, help=f"trades: beta ({ENGINE_DEFAULT})"
    )
    group.add_argument(
        "--temperature",
        type=non_negative_float,
        help=f"distillation: temperature ({ENGINE_DEFAULT})",
    )
    group.add_argument(
        "--seed", type=non_negative_int, default=0, help="seed of the data split and training"
    )
    group.add_argument(
        "--time-limit",
        type=non_negative_float,
        default=0.0,
        metavar="SECONDS",
        help="stop training after this long (default: %(default)g, no limit)",
    )


def _add_evaluation_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("evaluation")
    group.add_argument(
        "--suite",
        choices=[s.value for s in EvaluationSuite],
        default=EvaluationSuite.STANDARD.value,
        help="standard, or fast (fewer iterations, for previews)",
    )
    group.add_argument(
        "--eval-samples", type=non_negative_int, help=f"samples scored ({ENGINE_DEFAULT})"
    )


def _add_model_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("model")
    group.add_argument(
        "--format",
        choices=[f.value for f in ModelFormat],
        help="model format (default: from the file's suffix)",
    )
    group.add_argument(
        "--architecture", metavar="NAME", default="", help="built-in architecture of .safetensors"
    )
    group.add_argument(
        "--num-classes",
        type=non_negative_int,
        default=0,
        help="classes of a built-in architecture (default: %(default)s, read from the data)",
    )
    group.add_argument(
        "--allow-trusted-formats",
        action="store_true",
        default=os.environ.get(TRUSTED_FORMATS_ENV, "").lower() in ("1", "true", "yes", "on"),
        help="with --local: load TorchScript/torch.export files, which are programs"
        f" [{TRUSTED_FORMATS_ENV}]",
    )


def bounds(args: argparse.Namespace) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """``--lower``/``--upper``; one given alone gets the default other side at its length."""
    lower, upper = args.lower, args.upper
    if lower and not upper:
        upper = (DEFAULT_UPPER,) * len(lower)
    elif upper and not lower:
        lower = (DEFAULT_LOWER,) * len(upper)
    return lower, upper


def params_from(args: argparse.Namespace) -> HardeningParams:
    lower, upper = bounds(args)
    return HardeningParams(
        method=Method(args.method),
        eps=args.eps or 0.0,
        norm=Norm(args.norm),
        lower=lower,
        upper=upper,
        epochs=args.epochs,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        from_scratch=args.from_scratch,
        attack_steps=args.attack_steps,
        step_size=args.step_size,
        eps_warmup_epochs=args.eps_warmup_epochs,
        validation_size=args.validation_size,
        trades_beta=args.trades_beta,
        temperature=args.temperature,
        suite=EvaluationSuite(args.suite),
        eval_samples=args.eval_samples,
        seed=args.seed,
        time_limit_seconds=args.time_limit,
        architecture=args.architecture,
        num_classes=args.num_classes,
        text=text_threat_of(args),
    )


def model_format_of(args: argparse.Namespace) -> ModelFormat:
    if args.format:
        return ModelFormat(args.format)
    guessed = format_from_suffix(args.model)
    if guessed is None:
        raise UsageError(
            f"cannot tell the format of {args.model.name} from its suffix;"
            f" pass --format ({', '.join(f.value for f in ModelFormat)})"
        )
    return guessed


def check_inputs(args: argparse.Namespace) -> None:
    if args.local and args.server:
        raise UsageError("choose one of --local and --server")
    if args.local and args.webhook_url:
        raise UsageError("--webhook-url is for server jobs; a --local run calls no webhook")
    mlflow_of(args)
    if not args.local and not server_address(args):
        raise UsageError(
            f"choose where to run: --local, or --server HOST:PORT (or set {SERVER_ENV})"
        )
    for name, path in (
        ("model", args.model),
        ("--data", args.data),
        ("--eval-data", args.eval_data),
        ("--tokenizer", args.tokenizer),
        ("--schema", args.schema),
    ):
        if path is not None and not path.is_file():
            raise UsageError(f"{name}: no such file: {path}")
    if args.tokenizer is not None:
        check_text_inputs(args)
        return
    if args.eps is None:
        raise UsageError(
            "--eps is required: the radius of the attacker's norm ball (a text model takes"
            " --tokenizer instead)"
        )
    if args.schema is not None:
        check_schema_inputs(args)
        return
    if len(args.lower) != len(args.upper) and args.lower and args.upper:
        raise UsageError("--lower and --upper need the same number of values")
    check_eps_fits_the_domain(args.eps, Norm(args.norm), *bounds(args))


def check_text_inputs(args: argparse.Namespace) -> None:
    if args.eps is not None or args.lower or args.upper:
        raise UsageError(
            "--eps, --lower and --upper bound an image or tabular model's inputs; a text"
            " model's attacks are bounded by --word-share and --char-share"
        )


def check_schema_inputs(args: argparse.Namespace) -> None:
    if args.lower or args.upper:
        raise UsageError(
            "--lower and --upper are given by the schema's ranges: leave them out with --schema"
        )


def check_eps_fits_the_domain(
    eps: float, norm: Norm, lower: tuple[float, ...], upper: tuple[float, ...]
) -> None:
    """An L-inf ball as wide as the valid range reaches every input: the attacks would win on
    everything and the report would say 0% robust, which measures nothing."""
    if norm is not Norm.LINF:
        return
    lower, upper = lower or (DEFAULT_LOWER,), upper or (DEFAULT_UPPER,)
    widest = max(high - low for low, high in zip(lower, upper, strict=True))
    if widest > 0 and eps >= widest:
        low, high = min(lower), max(upper)
        raise UsageError(
            f"--eps {eps:g} covers the whole input range [{low:g}, {high:g}]: every input is"
            f" within reach, so nothing can be robust. For a budget in pixel levels of 0..255"
            f" on inputs in [0, 1], write a fraction: --eps {eps:g}/255"
        )


def run(args: argparse.Namespace) -> int:
    check_inputs(args)
    params = params_from(args)
    model_format = model_format_of(args)
    gates = ci_step.gate_config(args)
    started = time.monotonic()
    display = choose_display(quiet=args.json)
    try:
        if args.local:
            deadline = ci_step.deadline_of(args)
            outcome = _run_locally(args, params, model_format, display.show, deadline)
        else:
            outcome = _run_on_server(args, params, model_format, display.show)
    finally:
        display.close()
    verdict = ci_step.conclude(args, outcome, gates, time.monotonic() - started)
    report_outcome(outcome, as_json=args.json, verdict=verdict)
    return ci_step.announce(verdict)


def _run_locally(
    args: argparse.Namespace,
    params: HardeningParams,
    model_format: ModelFormat,
    on_event: EventCallback,
    deadline: Deadline | None = None,
) -> HardeningOutcome:
    return harden_locally(
        args.model,
        model_format,
        args.data,
        params,
        args.output,
        eval_data_path=args.eval_data,
        tokenizer_path=args.tokenizer,
        schema_path=args.schema,
        allow_trusted_formats=args.allow_trusted_formats,
        on_event=on_event,
        deadline=deadline,
        mlflow=_local_tracking(args),
    )


def _local_tracking(args: argparse.Namespace) -> LocalTracking | None:
    tracking = mlflow_of(args)
    return None if tracking is None else LocalTracking(args.mlflow_uri, tracking)


def _run_on_server(
    args: argparse.Namespace,
    params: HardeningParams,
    model_format: ModelFormat,
    on_event: EventCallback,
) -> HardeningOutcome:
    submitted: list[str] = []

    def track(event: JobEvent) -> None:
        if not submitted:
            submitted.append(event.job_id)
        on_event(event)

    labels = labels_dict(args.label)
    key = args.idempotency_key or derive_idempotency_key(
        args.model,
        model_format,
        args.data,
        args.eval_data,
        params,
        labels,
        args.webhook_url,
        mlflow_of(args),
        tokenizer_path=args.tokenizer,
        schema_path=args.schema,
    )
    with connect(args) as api:
        try:
            with ci_step.server_deadline(api, args, submitted):
                return api.harden(
                    args.model,
                    args.data,
                    params,
                    output=args.output,
                    eval_data_path=args.eval_data,
                    tokenizer_path=args.tokenizer,
                    schema_path=args.schema,
                    model_format=model_format,
                    labels=labels,
                    idempotency_key=key,
                    webhook_url=args.webhook_url,
                    mlflow=mlflow_of(args),
                    on_event=track,
                    resubmit_if_failed=not args.idempotency_key,
                )
        except KeyboardInterrupt:
            if submitted:
                info(
                    f"\nstopped watching; job {submitted[0]} goes on on the server."
                    f" Follow it with `temper watch {submitted[0]}`,"
                    f" stop it with `temper cancel {submitted[0]}`."
                )
            raise


def report_outcome(
    outcome: HardeningOutcome, *, as_json: bool, verdict: ci_step.Verdict | None = None
) -> None:
    if as_json:
        document = outcome_json(outcome)
        document["verdict"] = outcome.report.get("verdict")
        if verdict is not None:
            document.update(verdict.to_json())
        print_json(document)
        return
    print(scores_table.render(outcome.report))
    print()
    print(f"hardened model: {outcome.model_path}")
    print(f"report:         {outcome.report_path}")
    print(f"model card:     {outcome.card_path}")
    if outcome.plot_path:
        print(f"curve:          {outcome.plot_path}")
    if outcome.tokenizer_path:
        print(f"tokenizer:      {outcome.tokenizer_path}")
    if outcome.schema_path:
        print(f"feature schema: {outcome.schema_path}")
    if verdict is not None and verdict.outputs is not None:
        print(f"junit:          {verdict.outputs.junit}")
        print(f"summary:        {verdict.outputs.summary}")
