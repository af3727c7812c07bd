"""``temper demo``: the whole service on this machine, end to end, in about two minutes.

Starts ``python -m service`` (server plus local worker, SQLite job store and broker) in a
temporary state directory, hardens the bundled digits CNN through the real gRPC client (PGD
adversarial training, 2 epochs, eps 0.1 in L-inf, the fast evaluation suite on 200 test
digits), prints the before/after table, writes ``demo-output/hardened.onnx`` with its report and
model card, and stops the stack, also on failure or Ctrl-C.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from client.commands.common import info
from client.commands.harden import report_outcome
from client.domain import EvaluationSuite, HardeningParams, JobEvent, Method, Norm
from client.errors import ClientError, JobFailed
from client.exit_codes import HELP as EXIT_CODES_HELP
from client.exit_codes import ExitCode
from client.local_stack import LocalStack, terminate_as_interrupt
from client.progress_display import choose_display
from client.sdk import HardeningClient

DEMO_PARAMS = HardeningParams(
    method=Method.PGD,
    eps=0.1,
    norm=Norm.LINF,
    epochs=2,
    suite=EvaluationSuite.FAST,
    eval_samples=200,
    seed=0,
)
DEFAULT_OUTPUT = Path("demo-output")
MODEL_FILE = "hardened.onnx"
CALL_TIMEOUT_SECONDS = 30.0
THREADS_ENV = "OMP_NUM_THREADS"


@dataclass(frozen=True)
class DemoAssets:
    model: Path
    train: Path
    test: Path


@contextmanager
def demo_assets() -> Iterator[DemoAssets]:
    """The bundled digits CNN and data (made by scripts/make_demo_assets.py) as real files."""
    folder = resources.files("client") / "demo_assets"
    with ExitStack() as stack:
        paths = [
            stack.enter_context(resources.as_file(folder / name))
            for name in ("digits_cnn.onnx", "digits_train.npz", "digits_test.npz")
        ]
        yield DemoAssets(*paths)


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="run the whole service locally and harden a bundled digits model",
        description=__doc__,
        epilog=EXIT_CODES_HELP,
    )
    parser.add_argument(
        "-o",
        "--output",
        type=Path,
        default=DEFAULT_OUTPUT,
        metavar="DIR",
        help=f"where to write the hardened model, report and card ({DEFAULT_OUTPUT})",
    )
    parser.add_argument(
        "--json", action="store_true", default=argparse.SUPPRESS, help="machine-readable output"
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    output = args.output / MODEL_FILE
    info(
        "Tempering demo: hardening a small CNN for 8x8 digits with PGD adversarial training"
        " (eps 0.1, L-inf), through a server and worker started on this machine."
    )
    with terminate_as_interrupt(), tempfile.TemporaryDirectory(prefix="tempering-demo-") as state:
        stack = LocalStack(Path(state), extra_env=_thread_env())
        try:
            info("starting the server and a worker ...")
            stack.start()
            stack.wait_until_serving()
            info(f"serving on {stack.target}")
            outcome = _harden(stack.target, output, quiet=args.json)
        except ClientError as error:
            tail = stack.log_tail()
            if tail and tail not in error.message and not isinstance(error, JobFailed):
                error.message += "\n" + tail
            raise
        finally:
            info("stopping the server and worker ...")
            stack.stop()
    report_outcome(outcome, as_json=args.json)
    return ExitCode.OK


def _thread_env() -> dict[str, str]:
    """One intra-op thread for the worker unless the user chose otherwise: the demo model is so
    small that a second thread costs more in synchronisation than it computes, and on a busy
    machine spinning threads make the run several times slower."""
    return {} if os.environ.get(THREADS_ENV) else {THREADS_ENV: "1"}


def _harden(target: str, output: Path, *, quiet: bool) -> Any:
    display = choose_display(quiet=quiet)
    job_ids: list[str] = []

    def track(event: JobEvent) -> None:
        if not job_ids:
            job_ids.append(event.job_id)
        display.show(event)

    with HardeningClient(target, timeout=CALL_TIMEOUT_SECONDS) as api, demo_assets() as assets:
        try:
            return api.harden(
                assets.model,
                assets.train,
                DEMO_PARAMS,
                eval_data_path=assets.test,
                output=output,
                labels={"origin": "temper-demo"},
                on_event=track,
            )
        except KeyboardInterrupt:
            if job_ids:
                with contextlib.suppress(ClientError):
                    api.cancel(job_ids[0])
            raise
        finally:
            display.close()
