"""One tenant attacks what tenants share while another works: the figures of issue 15.

Starts the service (``python -m service --no-worker``, two tenants with API keys, everything else
at its defaults) on 127.0.0.1 port 0 and, for ``--duration`` seconds:

- **mallory** holds ``--stalled-uploads`` UploadDataset streams that send a header and 10 bytes,
  then nothing, each reopened a second after the server ends it; holds ``--watches`` WatchJob
  streams on her own queued job, each reopened a second after it ends; and submits a model that
  is costly to check (a 2048x2048 ConstantOfShape, then 400 chained MatMuls: 3.4 TFLOP for one
  sample) back to back;
- **alice** calls GetJob on her own job back to back, and submits an ordinary job (an MLP on
  64 features) every ``--submit-every`` seconds.

Mallory runs in a process of her own, so that her 700 client threads do not take the GIL from
alice's: what alice measures is the server. Alice starts ``--warm-up`` seconds after mallory.
Prints alice's GetJob and SubmitJob latency percentiles and errors, the status codes mallory's
calls got, and the server's resident memory (start, peak, end; its processes together, alone
and with their checker processes). Exit status 1 when alice saw an error. Run it alone on the
machine: on two cores, anything else running shows in alice's tail latency.

    python bench/tenant_isolation.py                       # 500 uploads, 200 watches, 60 s
    python bench/tenant_isolation.py --duration 120 --json /tmp/isolation.json
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import multiprocessing
import secrets
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import numpy as np
from grpc_health.v1 import health_pb2, health_pb2_grpc
from load import (
    ROOT,
    mlp_onnx,
    npz_bytes,
    own_stack,
    percentile,
    server_processes,
    upload_messages,
)
from onnx import TensorProto, helper, numpy_helper

if str(ROOT / "proto") not in sys.path:  # run from a source tree without installing
    sys.path.insert(0, str(ROOT / "proto"))

from tempering.v1 import hardening_pb2 as pb
from tempering.v1 import hardening_pb2_grpc as pb_grpc

REOPEN_PAUSE = 1.0
"""Seconds mallory waits before reopening a stream the server ended or refused."""
STREAMS_PER_CHANNEL = 100
COSTLY_SIDE = 2048
COSTLY_MATMULS = 400


@dataclass
class Tally:
    """Latencies and status codes, shared by the threads of one role."""

    latencies: list[float] = field(default_factory=list)
    codes: Counter[str] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, code: str, seconds: float | None = None) -> None:
        with self.lock:
            self.codes[code] += 1
            if seconds is not None:
                self.latencies.append(seconds)

    def summary(self) -> dict[str, object]:
        with self.lock:
            values = sorted(self.latencies)
            codes = dict(self.codes)
        figures: dict[str, object] = {"calls": sum(codes.values()), "codes": codes}
        if values:
            figures.update(
                p50_ms=1000 * percentile(values, 50),
                p90_ms=1000 * percentile(values, 90),
                p99_ms=1000 * percentile(values, 99),
                max_ms=1000 * values[-1],
            )
        return figures


# --- what the tenants send --------------------------------------------------------------------


def costly_model() -> bytes:
    """Logits of a 4-feature linear model plus the sum of a 2048x2048 matrix raised to the 401st
    power by chained MatMuls: 3 KB on the wire, minutes of work for one sample."""
    side = np.array([COSTLY_SIDE, COSTLY_SIDE], dtype=np.int64)
    nodes = [
        helper.make_node("Gemm", ["x", "w"], ["scores"]),
        helper.make_node(
            "ConstantOfShape",
            ["side"],
            ["m0"],
            value=numpy_helper.from_array(np.array([1e-3], dtype=np.float32)),
        ),
    ]
    for i in range(COSTLY_MATMULS):
        nodes.append(helper.make_node("MatMul", [f"m{i}", "m0"], [f"m{i + 1}"]))
    nodes += [
        helper.make_node("ReduceSum", [f"m{COSTLY_MATMULS}"], ["total"], keepdims=0),
        helper.make_node("Add", ["scores", "total"], ["logits"]),
    ]
    graph = helper.make_graph(
        nodes,
        "costly_to_check",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 2])],
        [
            numpy_helper.from_array(np.full((4, 2), 0.1, dtype=np.float32), "w"),
            numpy_helper.from_array(side, "side"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model.SerializeToString()


def costly_data() -> bytes:
    rng = np.random.default_rng(0)
    buffer = io.BytesIO()
    np.savez(buffer, x=rng.uniform(0, 1, (64, 4)).astype(np.float32), y=rng.integers(0, 2, 64))
    return buffer.getvalue()


def job_request(model_id: str, data_id: str) -> pb.SubmitJobRequest:
    return pb.SubmitJobRequest(
        spec=pb.JobSpec(
            model_id=model_id,
            train_dataset_id=data_id,
            training=pb.Training(epochs=1, fgsm=pb.Fgsm()),
            threat_model=pb.ThreatModel(norm=pb.NORM_LINF, epsilon=0.1, lower=[0.0], upper=[1.0]),
            seed=1,
        )
    )


@dataclass(frozen=True)
class Tenant:
    name: str
    key: str

    @property
    def metadata(self) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {self.key}"),)


# --- the roles --------------------------------------------------------------------------------


@dataclass
class Run:
    stop: threading.Event
    deadline: float

    def remaining(self) -> float:
        return max(self.deadline - time.monotonic(), 0.0)


def stalled_messages(run: Run, ended: threading.Event) -> Iterator[pb.UploadDatasetRequest]:
    """A header declaring 1 MiB, 10 bytes, then silence until the call or the run ends."""
    yield pb.UploadDatasetRequest(
        header=pb.DatasetUploadHeader(
            name="stalled.npz",
            format=pb.DATASET_FORMAT_NPZ,
            size_bytes=1 << 20,
            sha256=hashlib.sha256(secrets.token_bytes(16)).hexdigest(),
        )
    )
    yield pb.UploadDatasetRequest(chunk=b"0123456789")
    while not (run.stop.is_set() or ended.is_set()):
        run.stop.wait(0.5)


def stalled_upload(stub: pb_grpc.HardeningServiceStub, who: Tenant, run: Run, tally: Tally) -> None:
    while not run.stop.is_set():
        ended = threading.Event()
        future = stub.UploadDataset.future(
            stalled_messages(run, ended), metadata=who.metadata, timeout=run.remaining() + 30
        )
        future.add_done_callback(lambda _, ended=ended: ended.set())
        try:
            future.result()
            tally.record("OK")
        except grpc.RpcError as error:
            tally.record(error.code().name)
        run.stop.wait(REOPEN_PAUSE)


def held_watch(
    stub: pb_grpc.HardeningServiceStub, who: Tenant, job_id: str, run: Run, tally: Tally
) -> None:
    while not run.stop.is_set():
        stream = stub.WatchJob(
            pb.WatchJobRequest(job_id=job_id), metadata=who.metadata, timeout=run.remaining() + 1
        )
        try:
            for _ in stream:
                if run.stop.is_set():
                    stream.cancel()
            tally.record("OK")
        except grpc.RpcError as error:
            tally.record(error.code().name)
        run.stop.wait(REOPEN_PAUSE)


def repeated_call(call: Callable[[], object], run: Run, tally: Tally, pause: float = 0.0) -> None:
    while not run.stop.is_set():
        started = time.perf_counter()
        try:
            call()
            tally.record("OK", time.perf_counter() - started)
        except grpc.RpcError as error:
            tally.record(error.code().name, time.perf_counter() - started)
        if pause:
            run.stop.wait(pause)


def resident_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def sample_memory(server_pid: int, run: Run, samples: list[tuple[int, int]]) -> None:
    """Resident KiB of the server processes together, and of them with their checkers."""
    while not run.stop.is_set():
        servers, others = server_processes(server_pid)
        own = sum(resident_kib(pid) for pid in servers)
        samples.append((own, own + sum(resident_kib(pid) for pid in others)))
        run.stop.wait(0.5)


# --- the run ----------------------------------------------------------------------------------


def upload(stub: pb_grpc.HardeningServiceStub, who: Tenant, data: bytes, *, dataset: bool) -> str:
    method = stub.UploadDataset if dataset else stub.UploadModel
    reply = method(upload_messages(data, dataset=dataset), metadata=who.metadata, timeout=60)
    return str(reply.artifact_id)


@dataclass(frozen=True)
class Attack:
    """What mallory's process needs: all picklable, for a process started fresh."""

    address: str
    tenant: Tenant
    watched_job: str
    costly_job: bytes
    stalled_uploads: int
    watches: int
    duration: float


def attack(plan: Attack, results: multiprocessing.Queue[dict[str, object]]) -> None:
    """Mallory, in her own process so that her 700 threads do not take the GIL from alice's
    client: the latencies measured are the server's, not this script's."""
    streams = plan.stalled_uploads + plan.watches
    channels = [  # each a connection of its own, so that she reaches every server process
        grpc.insecure_channel(plan.address, [("grpc.use_local_subchannel_pool", 1)])
        for _ in range(max(1, -(-streams // STREAMS_PER_CHANNEL)))
    ]
    stubs = [pb_grpc.HardeningServiceStub(c) for c in channels]
    costly = pb.SubmitJobRequest.FromString(plan.costly_job)
    run = Run(threading.Event(), time.monotonic() + plan.duration)
    tallies = {name: Tally() for name in ("upload", "watch", "costly")}
    threads = [
        threading.Thread(
            target=stalled_upload,
            args=(stubs[i % len(stubs)], plan.tenant, run, tallies["upload"]),
            daemon=True,
        )
        for i in range(plan.stalled_uploads)
    ]
    threads += [
        threading.Thread(
            target=held_watch,
            args=(stubs[-1 - i % len(stubs)], plan.tenant, plan.watched_job, run, tallies["watch"]),
            daemon=True,
        )
        for i in range(plan.watches)
    ]
    threads.append(
        threading.Thread(
            target=repeated_call,
            args=(
                lambda: stubs[0].SubmitJob(costly, metadata=plan.tenant.metadata, timeout=300),
                run,
                tallies["costly"],
            ),
            daemon=True,
        )
    )
    for thread in threads:
        thread.start()
    run.stop.wait(plan.duration)
    run.stop.set()
    for thread in threads:
        thread.join(60)
    for channel in channels:
        channel.close()
    results.put(
        {
            "upload_calls": tallies["upload"].summary(),
            "watch_calls": tallies["watch"].summary(),
            "costly_submits": tallies["costly"].summary(),
            "threads_left": sum(t.is_alive() for t in threads),
        }
    )


def measure(
    address: str, server_pid: int, alice: Tenant, mallory: Tenant, args: argparse.Namespace
) -> dict[str, object]:
    channel = grpc.insecure_channel(address)
    health_pb2_grpc.HealthStub(channel).Check(
        health_pb2.HealthCheckRequest(), wait_for_ready=True, timeout=60
    )
    stub = pb_grpc.HardeningServiceStub(channel)
    data = npz_bytes(400, 0)
    alice_job = job_request(
        upload(stub, alice, mlp_onnx(), dataset=False), upload(stub, alice, data, dataset=True)
    )
    alice_first = stub.SubmitJob(alice_job, metadata=alice.metadata, timeout=60).id
    mallory_job = job_request(
        upload(stub, mallory, mlp_onnx(seed=1), dataset=False),
        upload(stub, mallory, data, dataset=True),
    )
    costly = job_request(
        upload(stub, mallory, costly_model(), dataset=False),
        upload(stub, mallory, costly_data(), dataset=True),
    )
    plan = Attack(
        address=address,
        tenant=mallory,
        watched_job=stub.SubmitJob(mallory_job, metadata=mallory.metadata, timeout=60).id,
        costly_job=costly.SerializeToString(),
        stalled_uploads=args.stalled_uploads,
        watches=args.watches,
        duration=args.duration,
    )
    spawn = multiprocessing.get_context("spawn")
    results: multiprocessing.Queue[dict[str, object]] = spawn.Queue()
    mallory_process = spawn.Process(target=attack, args=(plan, results), daemon=True)
    baseline = sum(resident_kib(pid) for pid in server_processes(server_pid)[0])
    mallory_process.start()
    time.sleep(args.warm_up)  # mallory's streams open before alice starts measuring

    run = Run(threading.Event(), time.monotonic() + args.duration)
    tallies = {name: Tally() for name in ("get", "submit")}
    memory: list[tuple[int, int]] = []
    get = pb.GetJobRequest(job_id=alice_first)
    threads = [
        threading.Thread(target=sample_memory, args=(server_pid, run, memory), daemon=True),
        threading.Thread(
            target=repeated_call,
            args=(
                lambda: stub.GetJob(get, metadata=alice.metadata, timeout=30),
                run,
                tallies["get"],
            ),
            daemon=True,
        ),
        threading.Thread(
            target=repeated_call,
            args=(
                lambda: stub.SubmitJob(alice_job, metadata=alice.metadata, timeout=300),
                run,
                tallies["submit"],
                args.submit_every,
            ),
            daemon=True,
        ),
    ]
    for thread in threads:
        thread.start()
    run.stop.wait(args.duration - args.warm_up)
    run.stop.set()
    for thread in threads:
        thread.join(60)
    mallory_figures = results.get(timeout=120)
    mallory_process.join(30)
    channel.close()
    servers_at_end, _ = server_processes(server_pid)
    return {
        "duration_s": args.duration,
        "mallory": {
            "stalled_uploads": args.stalled_uploads,
            "watches": args.watches,
            **mallory_figures,
        },
        "alice": {"get_job": tallies["get"].summary(), "submit_job": tallies["submit"].summary()},
        "server_rss_mib": {
            "start": baseline / 1024,
            "peak": max((own for own, _ in memory), default=0) / 1024,
            "peak_with_checkers": max((total for _, total in memory), default=0) / 1024,
            "end": sum(resident_kib(pid) for pid in servers_at_end) / 1024,
            "server_processes": len(servers_at_end),
        },
    }


def report(result: dict[str, object]) -> str:
    return json.dumps(result, indent=2, default=str)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of attack")
    parser.add_argument("--stalled-uploads", type=int, default=500)
    parser.add_argument("--watches", type=int, default=200)
    parser.add_argument("--submit-every", type=float, default=5.0, help="alice's pause, seconds")
    parser.add_argument(
        "--warm-up", type=float, default=5.0, help="seconds mallory attacks before alice measures"
    )
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--log", type=Path, default=Path(tempfile.gettempdir()) / "isolation.log")
    args = parser.parse_args(argv)

    alice = Tenant("alice", secrets.token_urlsafe(24))
    mallory = Tenant("mallory", secrets.token_urlsafe(24))
    with tempfile.TemporaryDirectory(prefix="tempering-isolation-") as folder:
        keys = Path(folder) / "api-keys"
        keys.write_text(
            "".join(
                f"{t.name}:{hashlib.sha256(t.key.encode()).hexdigest()}\n" for t in (alice, mallory)
            )
        )
        extra = ["--no-worker", "--api-keys-file", str(keys)]
        with own_stack(None, None, args.log, extra) as stack:
            result = measure(stack.address, stack.server_pid, alice, mallory, args)
    print(report(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2, default=str))
    alice_codes = [result["alice"][k]["codes"] for k in ("get_job", "submit_job")]  # type: ignore[index]
    return 1 if any(code != "OK" for codes in alice_codes for code in codes) else 0


if __name__ == "__main__":
    sys.exit(main())
