"""The child side of :mod:`service.jobs.validation_pool`:
``python -m service.jobs.validation_checker READ_FD WRITE_FD MEMORY_LIMIT`` caps its own address
space, warms up and says :data:`READY`, then runs one :class:`CheckRequest` (a job's inputs) or
:class:`TokenizerCheckRequest` (an uploaded tokenizer) after another from the pipe and answers
each with a :class:`CheckOutcome`, until the pipe closes."""

from __future__ import annotations

import resource
import sys
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path

from service.jobs.graph_cost import CostLimits
from service.jobs.validation import TextInputs
from workers.engine.errors import TemperingError
from workers.engine.spec import ModelFormat, ThreatModel

READY = "ready"
"""The first message of a checker: imported and warmed up, its checks' clock may start."""


@dataclass(frozen=True)
class CheckRequest:
    model_format: ModelFormat
    model_path: Path
    dataset_paths: tuple[Path, ...]
    threat: ThreatModel
    limits: CostLimits
    text: TextInputs | None = None
    schema: Path | None = None

    @property
    def paths(self) -> tuple[Path, ...]:
        tokenizer = (
            () if self.text is None or self.text.tokenizer is None else (self.text.tokenizer,)
        )
        schema = () if self.schema is None else (self.schema,)
        return (self.model_path, *self.dataset_paths, *tokenizer, *schema)


@dataclass(frozen=True)
class TokenizerCheckRequest:
    """Read an uploaded ``tokenizer.json`` as the engine will (size, JSON, a tokenizer the
    library can read, with a padding and an unknown token it knows)."""

    path: Path

    @property
    def paths(self) -> tuple[Path, ...]:
        return (self.path,)


@dataclass(frozen=True)
class SchemaCheckRequest:
    """Read an uploaded feature schema as the engine will (size, JSON, known keys, bounds that
    agree, budgets that make sense), each problem named by its feature."""

    path: Path

    @property
    def paths(self) -> tuple[Path, ...]:
        return (self.path,)


@dataclass(frozen=True)
class CheckOutcome:
    error: BaseException | None = None
    out_of_memory: bool = False


def main() -> None:
    reader, writer, memory_limit = (int(arg) for arg in sys.argv[1:4])
    resource.setrlimit(resource.RLIMIT_AS, (memory_limit, memory_limit))
    serve(Connection(reader, writable=False), Connection(writer, readable=False))


def serve(requests: Connection, outcomes: Connection) -> None:
    from service.jobs.validation import check_job_inputs
    from workers.engine.tabular.schema import load_schema
    from workers.engine.text.tokenizer import load_tokenizer

    _warm_up()
    outcomes.send(READY)
    while True:
        try:
            request: CheckRequest | TokenizerCheckRequest | SchemaCheckRequest = requests.recv()
        except EOFError:
            return
        try:
            if isinstance(request, TokenizerCheckRequest):
                load_tokenizer(request.path)
            elif isinstance(request, SchemaCheckRequest):
                load_schema(request.path)
            else:
                check_job_inputs(
                    request.model_format,
                    request.model_path,
                    request.dataset_paths,
                    request.threat,
                    limits=request.limits,
                    text=request.text,
                    schema=request.schema,
                )
            outcome = CheckOutcome()
        except MemoryError:
            outcome = CheckOutcome(out_of_memory=True)
        except TemperingError as error:
            out_of_memory = isinstance(error.__cause__, MemoryError)
            outcome = CheckOutcome(error=error, out_of_memory=out_of_memory)
        except Exception as error:
            # A plain copy: the server logs it as an internal error; the original may not pickle.
            outcome = CheckOutcome(error=RuntimeError(f"{type(error).__name__}: {error}"))
        outcomes.send(outcome)


def _warm_up() -> None:
    """A process's first onnxruntime session costs tens of milliseconds; pay it here, before a
    submission waits on it."""
    import onnxruntime as ort
    from onnx import TensorProto, helper

    value = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "warm-up", [value], [])
    graph.output.append(helper.make_tensor_value_info("y", TensorProto.FLOAT, [1]))
    model = helper.make_model(graph, ir_version=8, opset_imports=[helper.make_opsetid("", 13)])
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


if __name__ == "__main__":
    # Through the module's real name, so that the outcomes pickle as
    # service.jobs.validation_checker.CheckOutcome, which the server can load, not as
    # __main__.CheckOutcome.
    from service.jobs.validation_checker import main as run

    run()
