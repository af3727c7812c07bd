"""Real processes for the fault tests: a private redis-server that can be restarted empty, the
gRPC server (``python -m service --no-worker``) and Celery workers (``python -m workers``),
each in its own process group so that a test can SIGKILL one with its children."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from tempering.v1 import hardening_pb2 as pb
from tempering.v1 import hardening_pb2_grpc as pb_grpc

from tests.shared_support import ROOT, base_env

LEASE_TIMEOUT = 6.0
HEARTBEAT = 1.0
RECONCILE = 1.0
"""The stack's short lease settings, in seconds (production: 30, 2 and 5)."""
T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(
    condition: Callable[[], T | None], timeout: float, what: str, interval: float = 0.2
) -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


# --- processes --------------------------------------------------------------------------------


@dataclass
class Proc:
    popen: subprocess.Popen[bytes]
    log_path: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log_tail(self, lines: int = 40) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def kill(self) -> None:
        """SIGKILL the whole process group: the process and every child it started."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGKILL)
        self.popen.wait()

    def stop(self, timeout: float = 20.0) -> None:
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(timeout)
        self.kill()


def spawn(command: list[str], env: Mapping[str, str], log_path: Path) -> Proc:
    with log_path.open("ab") as log:
        popen = subprocess.Popen(
            command,
            cwd=ROOT,
            env=dict(env),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return Proc(popen, log_path)


class RedisServer:
    """A private, memory-only redis-server (nothing saved, nothing appended) on a free port."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port = free_port()
        self.proc: Proc | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        command = [
            "redis-server",
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(self.folder),
        ]
        self.proc = spawn(command, os.environ, self.folder / "redis.log")
        wait_until(self.ping, 20, "redis-server to answer")
        return self

    def ping(self) -> bool:
        import redis

        try:
            return bool(redis.Redis(port=self.port, socket_connect_timeout=0.5).ping())
        except redis.RedisError:
            return False

    def restart_empty(self) -> None:
        """Kill it and start it again: everything it held is gone."""
        assert self.proc is not None
        self.proc.kill()
        self.start()

    def client(self):  # type: ignore[no-untyped-def]
        import redis

        return redis.Redis(port=self.port)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()


@dataclass
class FaultStack:
    """A server and workers sharing one broker, one job store and one artifact directory."""

    folder: Path
    env: dict[str, str]
    port: int
    server: Proc | None = None
    workers: list[Proc] = field(default_factory=list)
    _channel: grpc.Channel | None = None
    _stub: pb_grpc.HardeningServiceStub | None = None
    _worker_count: int = 0

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def artifact_dir(self) -> Path:
        return Path(self.env["TEMPERING_ARTIFACT_DIR"])

    @property
    def stub(self) -> pb_grpc.HardeningServiceStub:
        if self._stub is None:
            self._channel = grpc.insecure_channel(self.address)
            health = health_pb2_grpc.HealthStub(self._channel)
            health.Check(health_pb2.HealthCheckRequest(), wait_for_ready=True, timeout=60)
            self._stub = pb_grpc.HardeningServiceStub(self._channel)
        return self._stub

    def start_server(self) -> Proc:
        command = [sys.executable, "-m", "service", "--no-worker"]
        self.server = spawn(command, self.env, self.folder / "server.log")
        self._stub = None
        assert self.stub is not None
        return self.server

    def kill_server(self) -> None:
        assert self.server is not None
        self.server.kill()
        if self._channel is not None:
            self._channel.close()
        self._channel = self._stub = None

    def start_worker(self, env: Mapping[str, str] | None = None) -> Proc:
        """A worker with the stack's settings, ``env`` over them (another machine's state
        directory, say)."""
        self._worker_count += 1
        name = f"w{self._worker_count}-{uuid.uuid4().hex[:6]}@%h"
        command = [sys.executable, "-m", "workers", "--hostname", name]
        log_path = self.folder / f"worker{self._worker_count}.log"
        worker = spawn(command, {**self.env, **(env or {})}, log_path)
        self.workers.append(worker)
        return worker

    def live_workers(self) -> list[Proc]:
        return [w for w in self.workers if w.alive()]

    def ensure_one_worker(self) -> None:
        if not self.live_workers():
            self.start_worker()

    def logs(self) -> str:
        procs = [p for p in [self.server, *self.workers] if p is not None]
        return "\n".join(f"--- {p.log_path.name}\n{p.log_tail()}" for p in procs)

    def close(self) -> None:
        if self._channel is not None:
            self._channel.close()
        for proc in [*self.workers, self.server]:
            if proc is not None:
                proc.stop()


@contextlib.contextmanager
def fault_stack(folder: Path, settings: Mapping[str, str]) -> Iterator[FaultStack]:
    port = free_port()
    env = base_env(
        {
            "TEMPERING_STATE_DIR": str(folder / "state"),
            "TEMPERING_ARTIFACT_DIR": str(folder / "artifacts"),
            "TEMPERING_GRPC_ADDRESS": f"127.0.0.1:{port}",
            # one thread per process: the server, workers and tests share two cores
            "OMP_NUM_THREADS": "1",
            **settings,
        }
    )
    stack = FaultStack(folder, env, port)
    try:
        stack.start_server()
        yield stack
    finally:
        stack.close()


# --- jobs -------------------------------------------------------------------------------------


def spec(
    model_id: str, data_id: str, method: str = "fgsm", time_limit: float = 0.0, **training: object
) -> pb.JobSpec:
    """A small job on digits; ``training`` overrides fields of ``pb.Training``."""
    methods = {
        "fgsm": {"fgsm": pb.Fgsm()},
        "pgd": {"pgd": pb.Pgd(attack_steps=3)},
        "trades": {"trades": pb.Trades(attack_steps=2)},
    }
    values: dict[str, object] = {"epochs": 1, "batch_size": 64, "validation_size": 100}
    values.update(training)
    return pb.JobSpec(
        model_id=model_id,
        train_dataset_id=data_id,
        training=pb.Training(**values, **methods[method]),  # type: ignore[arg-type]
        threat_model=pb.ThreatModel(norm=pb.NORM_LINF, epsilon=0.1, lower=[0.0], upper=[1.0]),
        evaluation=pb.Evaluation(suite=pb.EVALUATION_SUITE_FAST, samples=32),
        seed=3,
        time_limit_seconds=time_limit,
    )


def submit(stack: FaultStack, job_spec: pb.JobSpec) -> str:
    return str(stack.stub.SubmitJob(pb.SubmitJobRequest(spec=job_spec), timeout=60).id)


def get(stack: FaultStack, job_id: str) -> pb.Job:
    return stack.stub.GetJob(pb.GetJobRequest(job_id=job_id), timeout=30)


def wait_state(stack: FaultStack, job_id: str, states: set[int], timeout: float = 120.0) -> pb.Job:
    def reached() -> pb.Job | None:
        try:
            job = get(stack, job_id)
        except grpc.RpcError:
            return None
        return job if job.state in states else None

    try:
        return wait_until(reached, timeout, f"job {job_id} to reach {sorted(states)}", 0.25)
    except TimeoutError as exc:
        raise AssertionError(f"{exc}\n{stack.logs()}") from None


def wait_progress(
    stack: FaultStack, job_id: str, predicate: Callable[[pb.Progress], bool], timeout: float = 90
) -> pb.Progress:
    """Follow WatchJob until a progress event satisfies ``predicate``."""
    stream = stack.stub.WatchJob(pb.WatchJobRequest(job_id=job_id), timeout=timeout)
    try:
        for event in stream:
            if event.WhichOneof("event") == "progress" and predicate(event.progress):
                return event.progress
            if event.WhichOneof("event") == "state_changed" and event.state in TERMINAL:
                break
    finally:
        stream.cancel()
    raise AssertionError(f"job {job_id} ended before the awaited progress\n{stack.logs()}")


TERMINAL = {pb.JOB_STATE_SUCCEEDED, pb.JOB_STATE_FAILED, pb.JOB_STATE_CANCELLED}


def download(stack: FaultStack, job_id: str, kind: int) -> tuple[pb.OutputArtifact, bytes]:
    stream = stack.stub.DownloadArtifact(
        pb.DownloadArtifactRequest(job_id=job_id, kind=kind), timeout=60
    )
    header = next(stream)
    return header.header, b"".join(message.chunk for message in stream)
