"""Starting real server and worker processes for the end-to-end tests, and talking to them
with the raw generated stubs."""

from __future__ import annotations

import contextlib
import io
import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from tempering.v1 import hardening_pb2 as pb
from tempering.v1 import hardening_pb2_grpc as pb_grpc

from client.cli import main
from tests.shared_support import ROOT, base_env, digits_arrays, export_digits_mlp, npz_bytes

JOB_TIMEOUT = 240.0
QUICK_EVAL_SAMPLES = 20
"""Samples :func:`harden_quickly` scores."""


@dataclass
class Process:
    popen: subprocess.Popen[bytes]
    log_path: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def log_tail(self, lines: int = 60) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, timeout: float = 30.0) -> int:
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        return self.popen.returncode


def spawn(args: list[str], env: Mapping[str, str], log_path: Path) -> Process:
    with log_path.open("wb") as log:
        popen = subprocess.Popen(
            [sys.executable, *args], cwd=ROOT, env=dict(env), stdout=log, stderr=subprocess.STDOUT
        )
    return Process(popen, log_path)


def wait_for_port(port_file: Path, process: Process, timeout: float = 60.0) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if port_file.exists():
            return int(port_file.read_text())
        if process.popen.poll() is not None:
            raise RuntimeError(f"the server exited early:\n{process.log_tail()}")
        time.sleep(0.1)
    raise TimeoutError(f"the server did not start:\n{process.log_tail()}")


def wait_serving(channel: grpc.Channel, timeout: float = 30.0) -> None:
    health = health_pb2_grpc.HealthStub(channel)
    health.Check(health_pb2.HealthCheckRequest(), wait_for_ready=True, timeout=timeout)


@dataclass
class Stack:
    stub: pb_grpc.HardeningServiceStub
    server: Process
    workers: list[Process] = field(default_factory=list)
    address: str = ""
    """Where the server answers, ``127.0.0.1:PORT``."""

    def logs(self) -> str:
        return "\n".join(
            f"--- {p.log_path.name}\n{p.log_tail()}" for p in [self.server, *self.workers]
        )


@contextlib.contextmanager
def running_stack(
    server_args: list[str],
    env: Mapping[str, str],
    folder: Path,
    worker_args: list[str] | None = None,
) -> Iterator[Stack]:
    port_file = folder / "port"
    server = spawn(
        ["-m", "service", *server_args, "--port-file", str(port_file)], env, folder / "server.log"
    )
    workers = []
    try:
        if worker_args is not None:
            workers.append(spawn(["-m", "workers", *worker_args], env, folder / "worker.log"))
        port = wait_for_port(port_file, server)
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            wait_serving(channel)
            yield Stack(pb_grpc.HardeningServiceStub(channel), server, workers, f"127.0.0.1:{port}")
    finally:
        for process in [server, *workers]:
            process.stop()


@contextlib.contextmanager
def single_machine_stack(folder: Path, **settings: str) -> Iterator[Stack]:
    """``python -m service`` with its own worker (the single-machine default) on port 0, one
    thread each; ``settings`` are more TEMPERING_ variables."""
    env = base_env({"TEMPERING_GRPC_ADDRESS": "127.0.0.1:0", "OMP_NUM_THREADS": "1", **settings})
    with running_stack(["--state-dir", str(folder / "state")], env, folder) as running:
        yield running


@dataclass(frozen=True)
class CliRun:
    code: int
    out: str
    err: str


def run_cli(*args: object) -> CliRun:
    """``temper ARGS`` run in this process, its exit code and what it printed."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in args])
    return CliRun(code, out.getvalue(), err.getvalue())


@dataclass(frozen=True)
class Hardened:
    """What one ``temper harden`` left: its exit code, what it printed, where it wrote."""

    code: int
    out: str
    err: str
    output: Path

    @property
    def job_id(self) -> str:
        """The job's id from ``--json`` output; empty when the run failed."""
        return str(json.loads(self.out)["job_id"]) if self.code == 0 else ""


def run_harden(output: Path, *args: object) -> Hardened:
    """``temper harden ARGS -o OUTPUT`` run in this process."""
    run = run_cli("harden", *args, "-o", output)
    return Hardened(run.code, run.out, run.err, output)


def harden_quickly(
    model: Path, data: Path, address: str, output: Path, *extra: object, eps: str = "0.1"
) -> Hardened:
    """``temper harden`` of the cheapest job there is (one epoch of FGSM, the fast suite on 20
    samples) against the server at ``address``; ``extra`` are more arguments."""
    return run_harden(
        output, model, "--data", data, "--eps", eps, "--method", "fgsm", "--epochs", "1",
        "--suite", "fast", "--eval-samples", QUICK_EVAL_SAMPLES,
        "--server", address, "--timeout", "300", *extra,
    )  # fmt: skip


def write_digits_inputs(
    folder: Path, *, hidden: int = 32, train_steps: int = 60
) -> tuple[Path, Path]:
    """The digits MLP exported by dynamo with its weights in an external file, and 300 training
    samples: ``(folder/mlp.onnx, folder/train.npz)``."""
    model, data = folder / "mlp.onnx", folder / "train.npz"
    export_digits_mlp(model, external_data=True, hidden=hidden, train_steps=train_steps)
    x, y = digits_arrays()
    data.write_bytes(npz_bytes(x[:300], y[:300]))
    return model, data


# --- watching ---------------------------------------------------------------------------------


def watch_to_end(
    stub: pb_grpc.HardeningServiceStub, job_id: str, timeout: float = JOB_TIMEOUT
) -> list[pb.JobEvent]:
    return list(stub.WatchJob(pb.WatchJobRequest(job_id=job_id), timeout=timeout))


def state_changes(events: list[pb.JobEvent]) -> list[int]:
    return [e.state for e in events if e.WhichOneof("event") == "state_changed"]


class RssSampler:
    """Samples a process's resident memory from /proc while a block runs."""

    def __init__(self, pid: int, interval: float = 0.02) -> None:
        self._pid = pid
        self._interval = interval
        self._stop = threading.Event()
        self.samples: list[int] = []
        self._thread = threading.Thread(target=self._run, daemon=True)

    def rss_bytes(self) -> int:
        for line in Path(f"/proc/{self._pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise RuntimeError("no VmRSS line")

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append(self.rss_bytes())
            time.sleep(self._interval)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()
