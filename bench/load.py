"""Load held: many concurrent clients against one service, for a bounded time.

Starts the single-machine stack itself (``python -m service`` on 127.0.0.1 port 0, with its
local worker, in a temporary state directory) or connects to ``--server``; submits one
long-ish job first so that the worker is busy training, then runs ``--clients`` client threads
for ``--duration`` seconds, each with one role:

- ``get``: GetJob on the jobs known so far, and every tenth call a ListJobs page;
- ``watch``: WatchJob on a known job, held for 3-10 s (a CLI's ``temper watch``), then closed;
- ``upload``: UploadDataset of a small fresh .npz (every fifth one repeats bytes already sent);
- ``submit``: SubmitJob of the long job, then a pause (``--submit-pause``).

Each client has its own connection, as separate programs would (``--shared-channel`` puts them
all on one). By default ``get`` and ``upload`` clients call back to back (a closed loop at
saturation: each call's latency is then about the clients in flight over the server's rate,
whatever the cost of one call); ``--think`` gives them a pause between calls, as a person or a
polling CLI has.

Prints calls per second, errors and latency percentiles per RPC (for WatchJob the time to its
first event). Loopback only; stops by itself after ``--duration`` or ``--max-calls`` calls,
then cancels the jobs it submitted and stops the stack it started.

    python bench/load.py                              # 50 clients, 60 s, own stack
    python bench/load.py --clients 100 --duration 30 --server-threads 64
    python bench/load.py --idle                       # no worker: the server's own latency
    python bench/load.py --idle --think 0.1           # clients pausing 100 ms between calls
    python bench/load.py --idle --server-processes 1  # one server process (default: per CPU)
    python bench/load.py --idle --reference-processes 1  # then the same load on one process
    python bench/load.py --server 127.0.0.1:50051 --api-key "$KEY"
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import hashlib
import io
import ipaddress
import itertools
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import numpy as np
import onnx
from grpc_health.v1 import health_pb2, health_pb2_grpc
from onnx import TensorProto, helper, numpy_helper

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT / "proto") not in sys.path:  # run from a source tree without installing
    sys.path.insert(0, str(ROOT / "proto"))

from tempering.v1 import hardening_pb2 as pb  # noqa: E402
from tempering.v1 import hardening_pb2_grpc as pb_grpc  # noqa: E402

MAX_CLIENTS = 1000
MAX_DURATION = 3600.0
UNARY_TIMEOUT = 30.0
FEATURES, CLASSES = 64, 10
DEFAULT_MIX = "get:4,watch:4,upload:1,submit:1"


# --- measurements -----------------------------------------------------------------------------


@dataclass
class Recorder:
    """Latencies of successful calls and error codes, per RPC; thread-safe, bounded by the
    callers' shared call budget."""

    max_calls: int
    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    errors: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    error_samples: dict[str, str] = field(default_factory=dict)
    calls: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def take_call(self) -> bool:
        with self._lock:
            if self.calls >= self.max_calls:
                return False
            self.calls += 1
            return True

    def ok(self, rpc: str, seconds: float) -> None:
        with self._lock:
            self.latencies[rpc].append(seconds)

    def error(self, rpc: str, error: grpc.RpcError) -> None:
        code = error.code().name if error.code() else "UNKNOWN"
        with self._lock:
            self.errors[rpc][code] += 1
            self.error_samples.setdefault(f"{rpc} {code}", (error.details() or "")[:200])


def percentile(values: Sequence[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) if values else float("nan")


# --- what the clients send --------------------------------------------------------------------


def mlp_onnx(hidden: int = 256, seed: int = 0) -> bytes:
    """An MLP 64-256-256-10 made with onnx.helper (no torch needed here)."""
    rng = np.random.default_rng(seed)
    sizes = [FEATURES, hidden, hidden, CLASSES]
    nodes: list[onnx.NodeProto] = []
    inits: list[onnx.TensorProto] = []
    current = "x"
    for i, (fan_in, fan_out) in enumerate(itertools.pairwise(sizes)):
        weight = rng.normal(0, (2 / fan_in) ** 0.5, (fan_in, fan_out)).astype(np.float32)
        inits.append(numpy_helper.from_array(weight, f"W{i}"))
        inits.append(numpy_helper.from_array(np.zeros(fan_out, np.float32), f"B{i}"))
        last = i == len(sizes) - 2
        output = "logits" if last else f"z{i}"
        nodes.append(helper.make_node("Gemm", [current, f"W{i}", f"B{i}"], [output]))
        if not last:
            nodes.append(helper.make_node("Relu", [output], [f"h{i}"]))
            current = f"h{i}"
    graph = helper.make_graph(
        nodes,
        "bench_mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", FEATURES])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", CLASSES])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()


def npz_bytes(samples: int, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    centers = rng.uniform(0.2, 0.8, (CLASSES, FEATURES))
    y = rng.integers(0, CLASSES, samples)
    x = np.clip(centers[y] + rng.normal(0, 0.1, (samples, FEATURES)), 0, 1).astype(np.float32)
    buffer = io.BytesIO()
    np.savez(buffer, x=x, y=y)
    return buffer.getvalue()


def upload_messages(data: bytes, *, dataset: bool) -> Iterator[object]:
    digest = hashlib.sha256(data).hexdigest()
    if dataset:
        yield pb.UploadDatasetRequest(
            header=pb.DatasetUploadHeader(
                name="bench.npz", format=pb.DATASET_FORMAT_NPZ, size_bytes=len(data), sha256=digest
            )
        )
        chunk_type: Callable[..., object] = pb.UploadDatasetRequest
    else:
        yield pb.UploadModelRequest(
            header=pb.ModelUploadHeader(
                name="bench.onnx", format=pb.MODEL_FORMAT_ONNX, size_bytes=len(data), sha256=digest
            )
        )
        chunk_type = pb.UploadModelRequest
    for start in range(0, len(data), 1024 * 1024):
        yield chunk_type(chunk=data[start : start + 1024 * 1024])


def long_job(model_id: str, data_id: str, epochs: int, run_id: str) -> pb.SubmitJobRequest:
    return pb.SubmitJobRequest(
        spec=pb.JobSpec(
            model_id=model_id,
            train_dataset_id=data_id,
            training=pb.Training(epochs=epochs, batch_size=128, pgd=pb.Pgd(attack_steps=10)),
            threat_model=pb.ThreatModel(norm=pb.NORM_LINF, epsilon=0.1),
            evaluation=pb.Evaluation(suite=pb.EVALUATION_SUITE_FAST, samples=200),
            seed=1,
            time_limit_seconds=900,
        ),
        labels={"bench": run_id},
    )


# --- the clients ------------------------------------------------------------------------------


@dataclass
class Shared:
    stub: pb_grpc.HardeningServiceStub
    metadata: tuple[tuple[str, str], ...]
    recorder: Recorder
    deadline: float
    submit_request: pb.SubmitJobRequest
    submit_pause: float
    think: float
    job_ids: list[str]
    jobs_lock: threading.Lock = field(default_factory=threading.Lock)
    stop: threading.Event = field(default_factory=threading.Event)

    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    def running(self) -> bool:
        return not self.stop.is_set() and self.remaining() > 0

    def pause(self) -> None:
        if self.think > 0:
            self.stop.wait(min(self.think, max(self.remaining(), 0)))

    def some_job(self, rng: random.Random) -> str:
        with self.jobs_lock:
            return rng.choice(self.job_ids)

    def add_job(self, job_id: str) -> None:
        with self.jobs_lock:
            self.job_ids.append(job_id)


def timed(shared: Shared, rpc: str, method: Callable[..., object], request: object) -> object:
    """One unary (or client-streaming) call; None when it failed or the budget is spent."""
    if not shared.recorder.take_call():
        shared.stop.set()
        return None
    start = time.perf_counter()
    try:
        result = method(request, timeout=UNARY_TIMEOUT, metadata=shared.metadata)
    except grpc.RpcError as error:
        shared.recorder.error(rpc, error)
        return None
    shared.recorder.ok(rpc, time.perf_counter() - start)
    return result


def get_client(shared: Shared, rng: random.Random) -> None:
    stub = shared.stub
    count = 0
    while shared.running():
        count += 1
        if count % 10 == 0:
            timed(shared, "ListJobs", stub.ListJobs, pb.ListJobsRequest(page_size=50))
        else:
            timed(shared, "GetJob", stub.GetJob, pb.GetJobRequest(job_id=shared.some_job(rng)))
        shared.pause()


def watch_client(shared: Shared, rng: random.Random) -> None:
    while shared.running():
        if not shared.recorder.take_call():
            shared.stop.set()
            return
        hold = min(rng.uniform(3.0, 10.0), max(shared.remaining(), 0.5))
        request = pb.WatchJobRequest(job_id=shared.some_job(rng))
        start = time.perf_counter()
        first: float | None = None
        stream = shared.stub.WatchJob(request, timeout=hold, metadata=shared.metadata)
        try:
            for _ in stream:
                if first is None:
                    first = time.perf_counter() - start
                    shared.recorder.ok("WatchJob (first event)", first)
                if shared.stop.is_set():
                    stream.cancel()
        except grpc.RpcError as error:
            ended_normally = first is not None and error.code() in (
                grpc.StatusCode.DEADLINE_EXCEEDED,
                grpc.StatusCode.CANCELLED,
            )
            if not ended_normally:
                shared.recorder.error("WatchJob (first event)", error)
            if error.code() is grpc.StatusCode.RESOURCE_EXHAUSTED:  # the server's watch limit
                shared.stop.wait(1.0)


def upload_client(shared: Shared, rng: random.Random) -> None:
    stub = shared.stub
    last = npz_bytes(16, rng.randrange(2**32))
    count = 0
    while shared.running():
        count += 1
        data = last if count % 5 == 0 else npz_bytes(16, rng.randrange(2**32))
        last = data
        timed(shared, "UploadDataset", stub.UploadDataset, upload_messages(data, dataset=True))
        shared.pause()


def submit_client(shared: Shared, rng: random.Random) -> None:
    while shared.running():
        job = timed(shared, "SubmitJob", shared.stub.SubmitJob, shared.submit_request)
        if isinstance(job, pb.Job):
            shared.add_job(job.id)
        shared.stop.wait(min(shared.submit_pause, max(shared.remaining(), 0)))


ROLES: dict[str, Callable[[Shared, random.Random], None]] = {
    "get": get_client,
    "watch": watch_client,
    "upload": upload_client,
    "submit": submit_client,
}


def assign_roles(clients: int, mix: str) -> list[str]:
    """Split ``clients`` over the roles in proportion to the weights (largest remainder)."""
    weights: dict[str, float] = {}
    for part in mix.split(","):
        name, _, weight = part.partition(":")
        if name.strip() not in ROLES:
            raise SystemExit(f"load: unknown role {name!r} in --mix (roles: {sorted(ROLES)})")
        weights[name.strip()] = float(weight or 1)
    total = sum(weights.values())
    shares = {name: clients * w / total for name, w in weights.items()}
    counts = {name: int(share) for name, share in shares.items()}
    by_remainder = sorted(shares, key=lambda n: shares[n] - counts[n], reverse=True)
    for name in by_remainder[: clients - sum(counts.values())]:
        counts[name] += 1
    return [name for name, count in counts.items() for _ in range(count)]


# --- the stack --------------------------------------------------------------------------------


def check_loopback(address: str) -> None:
    host = address.rsplit(":", 1)[0].strip("[]")
    if host == "localhost":
        return
    try:
        if ipaddress.ip_address(host).is_loopback:
            return
    except ValueError:
        pass
    raise SystemExit(f"load: {address} is not a loopback address; this benchmark stays local")


@dataclass(frozen=True)
class OwnStack:
    address: str
    server_pid: int


@contextlib.contextmanager
def own_stack(
    threads: int | None, processes: int | None, log: Path, extra_args: Sequence[str] = ()
) -> Iterator[OwnStack]:
    """``python -m service`` (server and local worker) on 127.0.0.1 port 0 in a temporary state
    directory, with ``extra_args`` (``--no-worker``, say); stopped with SIGTERM (SIGKILL for it
    and its children after 60 s)."""
    with tempfile.TemporaryDirectory(prefix="tempering-load-") as state:
        port_file = Path(state) / "port"
        env = {k: v for k, v in os.environ.items() if not k.startswith("TEMPERING_")}
        env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(ROOT / "proto")])
        env["TEMPERING_LOG_LEVEL"] = "WARNING"
        if threads is not None:
            env["TEMPERING_GRPC_THREADS"] = str(threads)
        if processes is not None:
            env["TEMPERING_SERVER_PROCESSES"] = str(processes)
        command = [sys.executable, "-m", "service", "--state-dir", state]
        command += ["--grpc-address", "127.0.0.1:0", "--port-file", str(port_file)]
        command += extra_args
        with log.open("wb") as out:
            server = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=out)
        try:
            deadline = time.monotonic() + 120
            while not port_file.exists():
                if server.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"load: the service did not start; see {log}")
                time.sleep(0.1)
            yield OwnStack(f"127.0.0.1:{int(port_file.read_text())}", server.pid)
        finally:
            stop_stack(server)


def stop_stack(server: subprocess.Popen[bytes]) -> None:
    children = child_pids(server.pid)
    server.send_signal(signal.SIGTERM)
    try:
        server.wait(60)
        return
    except subprocess.TimeoutExpired:
        pass
    for pid in children:  # the local worker runs in its own process group
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)
    server.kill()
    server.wait()


def child_pids(pid: int) -> list[int]:
    found: list[int] = []
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            found += [int(p) for p in (task / "children").read_text().split()]
    return found


def server_processes(pid: int) -> tuple[list[int], list[int]]:
    """The server processes of the stack whose first process is ``pid`` (it and its siblings,
    :mod:`service.ops.server_processes`), and every other process below them (checkers, the
    local worker)."""
    servers: list[int] = [pid]
    others: list[int] = []
    pending = child_pids(pid)
    while pending:
        child = pending.pop()
        with contextlib.suppress(OSError):
            command = Path(f"/proc/{child}/cmdline").read_bytes()
            (servers if b"service.ops.sibling_server" in command else others).append(child)
        pending += child_pids(child)
    return servers, others


# --- the run ----------------------------------------------------------------------------------


def run(address: str, args: argparse.Namespace) -> dict[str, object]:
    metadata: tuple[tuple[str, str], ...] = ()
    if args.api_key:
        metadata = (("authorization", f"Bearer {args.api_key}"),)
    options = [("grpc.max_send_message_length", 8 * 1024 * 1024)]
    with grpc.insecure_channel(address, options=options) as channel:
        health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(), wait_for_ready=True, timeout=60
        )
        stub = pb_grpc.HardeningServiceStub(channel)
        run_id = uuid.uuid4().hex[:12]
        model_id = stub.UploadModel(
            upload_messages(mlp_onnx(), dataset=False), timeout=60, metadata=metadata
        ).artifact_id
        data_id = stub.UploadDataset(
            upload_messages(npz_bytes(args.train_samples, 0), dataset=True),
            timeout=60,
            metadata=metadata,
        ).artifact_id
        request = long_job(model_id, data_id, args.job_epochs, run_id)
        first = stub.SubmitJob(request, timeout=60, metadata=metadata)
        busy = False if args.idle else wait_running(stub, first.id, metadata, timeout=60)

        roles = assign_roles(args.clients, args.mix)
        recorder = Recorder(max_calls=args.max_calls)
        shared = Shared(
            stub=stub,
            metadata=metadata,
            recorder=recorder,
            deadline=time.monotonic() + args.duration,
            submit_request=request,
            submit_pause=args.submit_pause,
            think=args.think,
            job_ids=[first.id],
        )
        with contextlib.ExitStack() as channels:
            threads = [
                threading.Thread(
                    target=ROLES[role],
                    args=(
                        shared
                        if args.shared_channel
                        else own_connection(shared, channels, address, options),
                    ),
                    kwargs={"rng": random.Random(i)},
                    name=f"{role}-{i}",
                    daemon=True,
                )
                for i, role in enumerate(roles)
            ]
            started = time.monotonic()
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(max(shared.deadline - time.monotonic(), 0) + 15)
            shared.stop.set()
            elapsed = time.monotonic() - started
        final_state = pb.JobState.Name(
            stub.GetJob(pb.GetJobRequest(job_id=first.id), timeout=60, metadata=metadata).state
        )
        cancelled = cancel_jobs(stub, list(shared.job_ids), metadata, budget=60)
    return {
        "address": address,
        "think": args.think,
        "clients": Counter(roles),
        "elapsed": elapsed,
        "recorder": recorder,
        "worker_busy": busy,
        "first_job_final_state": final_state,
        "jobs_submitted": len(shared.job_ids),
        "jobs_cancelled": cancelled,
        "stuck_threads": sum(t.is_alive() for t in threads),
    }


def own_connection(
    shared: Shared, channels: contextlib.ExitStack, address: str, options: list[tuple[str, int]]
) -> Shared:
    """``shared`` with a stub on a connection of its own (a local subchannel pool: gRPC would
    otherwise reuse one connection for every channel to the same address)."""
    channel = channels.enter_context(
        grpc.insecure_channel(address, options=[*options, ("grpc.use_local_subchannel_pool", 1)])
    )
    return dataclasses.replace(shared, stub=pb_grpc.HardeningServiceStub(channel))


def wait_running(
    stub: pb_grpc.HardeningServiceStub,
    job_id: str,
    metadata: Sequence[tuple[str, str]],
    timeout: float,
) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = stub.GetJob(pb.GetJobRequest(job_id=job_id), timeout=10, metadata=metadata)
        if job.state == pb.JOB_STATE_RUNNING:
            return True
        if job.state not in (pb.JOB_STATE_QUEUED, pb.JOB_STATE_UNSPECIFIED):
            return False
        time.sleep(0.5)
    return False


def cancel_jobs(
    stub: pb_grpc.HardeningServiceStub,
    job_ids: list[str],
    metadata: Sequence[tuple[str, str]],
    budget: float,
) -> int:
    deadline, done = time.monotonic() + budget, 0
    for job_id in job_ids:
        if time.monotonic() > deadline:
            break
        with contextlib.suppress(grpc.RpcError):
            stub.CancelJob(pb.CancelJobRequest(job_id=job_id), timeout=10, metadata=metadata)
            done += 1
    return done


def report(result: dict[str, object], threads_note: str) -> str:
    recorder = result["recorder"]
    assert isinstance(recorder, Recorder)
    elapsed = float(result["elapsed"])  # type: ignore[arg-type]
    roles = result["clients"]
    assert isinstance(roles, Counter)
    think_ms = float(result["think"]) * 1000  # type: ignore[arg-type]
    lines = [
        f"load: {sum(roles.values())} clients ({', '.join(f'{n} {r}' for r, n in roles.items())})"
        f" for {elapsed:.1f} s against {result['address']} ({threads_note});"
        f" {os.cpu_count()} CPU(s) on this machine, shared with the worker's training;"
        f" get and upload clients pause {think_ms:.0f} ms between calls",
        f"worker busy training during the run: {result['worker_busy']}"
        f" (first job ended the run {result['first_job_final_state']});"
        f" jobs submitted {result['jobs_submitted']}, cancelled afterwards"
        f" {result['jobs_cancelled']}",
        "",
        f"{'rpc':<24}{'calls':>8}{'calls/s':>10}{'errors':>8}"
        f"{'p50 ms':>10}{'p90 ms':>10}{'p99 ms':>10}{'max ms':>10}",
    ]
    names = sorted(set(recorder.latencies) | set(recorder.errors))
    total_errors = 0
    for name in names:
        values = recorder.latencies.get(name, [])
        errors = sum(recorder.errors.get(name, Counter()).values())
        total_errors += errors
        lines.append(
            f"{name:<24}{len(values) + errors:>8}{(len(values) + errors) / elapsed:>10.1f}"
            f"{errors:>8}{percentile(values, 50) * 1e3:>10.1f}{percentile(values, 90) * 1e3:>10.1f}"
            f"{percentile(values, 99) * 1e3:>10.1f}"
            f"{(max(values) if values else float('nan')) * 1e3:>10.1f}"
        )
    lines.append("")
    lines.append(f"errors: {total_errors}")
    for name, codes in recorder.errors.items():
        for code, count in codes.items():
            sample = recorder.error_samples.get(f"{name} {code}", "")
            lines.append(f"  {name}: {code} x{count}: {sample}")
    if result["stuck_threads"]:
        lines.append(f"client threads still blocked at the end: {result['stuck_threads']}")
    return "\n".join(lines)


def to_json(result: dict[str, object]) -> dict[str, object]:
    recorder = result["recorder"]
    assert isinstance(recorder, Recorder)
    elapsed = float(result["elapsed"])  # type: ignore[arg-type]
    return {
        **{k: v for k, v in result.items() if k != "recorder"},
        "rpcs": {
            name: {
                "calls": len(values) + sum(recorder.errors.get(name, Counter()).values()),
                "calls_per_second": len(values) / elapsed,
                "errors": dict(recorder.errors.get(name, Counter())),
                **{f"p{q}_ms": percentile(values, q) * 1e3 for q in (50, 90, 99)},
            }
            for name, values in recorder.latencies.items()
        },
    }


def run_own_stack(args: argparse.Namespace, processes: int | None) -> tuple[dict[str, object], str]:
    extra = ["--no-worker"] if args.idle else []
    with own_stack(args.server_threads, processes, args.log, extra) as stack:
        result = run(stack.address, args)
    note = (
        f"server threads {args.server_threads or 'default'}, processes"
        f" {processes or 'default'}; log {args.log}"
    )
    return result, note


def compare(result: dict[str, object], reference: dict[str, object]) -> str:
    """GetJob's calls a second and p99 of the run and of its reference, one line each."""
    lines = ["GetJob, run against reference (same clients, same duration, one after the other):"]
    for name, each in (("run", result), ("reference", reference)):
        recorder = each["recorder"]
        assert isinstance(recorder, Recorder)
        values = recorder.latencies.get("GetJob", [])
        rate = len(values) / float(each["elapsed"])  # type: ignore[arg-type]
        lines.append(
            f"  {name:<10} {rate:>8.1f} calls/s   p99 {percentile(values, 99) * 1e3:>6.1f} ms"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--server", help="host:port of a running service (loopback only)")
    parser.add_argument("--api-key", default=os.environ.get("TEMPERING_API_KEY"))
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of load")
    parser.add_argument("--max-calls", type=int, default=2_000_000, help="stop after this many")
    parser.add_argument("--mix", default=DEFAULT_MIX, help=f"role weights [{DEFAULT_MIX}]")
    parser.add_argument("--submit-pause", type=float, default=1.0, help="seconds between submits")
    parser.add_argument("--job-epochs", type=int, default=300, help="epochs of the long job")
    parser.add_argument("--train-samples", type=int, default=4000)
    parser.add_argument(
        "--think", type=float, default=0.0, help="seconds get and upload clients pause [0]"
    )
    parser.add_argument(
        "--server-threads", type=int, help="TEMPERING_GRPC_THREADS of the stack started here"
    )
    parser.add_argument(
        "--server-processes",
        type=int,
        help="TEMPERING_SERVER_PROCESSES of the stack started here [the server's default]",
    )
    parser.add_argument(
        "--reference-processes",
        type=int,
        help="after the run, the same load on a stack with this many server processes, and"
        " GetJob's p99 of both side by side",
    )
    parser.add_argument(
        "--shared-channel",
        action="store_true",
        help="every client on one connection (by default each has its own, as programs do)",
    )
    parser.add_argument(
        "--idle",
        action="store_true",
        help="own stack without a worker: jobs stay queued, nothing trains beside the server",
    )
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--log", type=Path, default=Path(tempfile.gettempdir()) / "load-server.log")
    args = parser.parse_args(argv)
    if not 1 <= args.clients <= MAX_CLIENTS:
        parser.error(f"--clients must be between 1 and {MAX_CLIENTS}")
    if not 0 < args.duration <= MAX_DURATION:
        parser.error(f"--duration must be in (0, {MAX_DURATION:.0f}] seconds")
    if args.max_calls < 1:
        parser.error("--max-calls must be positive")
    if args.server and args.reference_processes:
        parser.error("--reference-processes needs the stack started here (no --server)")
    if args.server:
        check_loopback(args.server)
        result = run(args.server, args)
        note = "server started elsewhere"
    else:
        result, note = run_own_stack(args, args.server_processes)
    print(report(result, note))
    runs = [result]
    if args.reference_processes:
        reference, reference_note = run_own_stack(args, args.reference_processes)
        print("\nreference:\n" + report(reference, reference_note))
        print("\n" + compare(result, reference))
        result["reference"] = to_json(reference)
        runs.append(reference)
    if args.json:
        args.json.write_text(json.dumps(to_json(result), indent=2, default=str))
    recorders = [each["recorder"] for each in runs]
    return 1 if any(isinstance(r, Recorder) and any(r.errors.values()) for r in recorders) else 0


if __name__ == "__main__":
    sys.exit(main())
